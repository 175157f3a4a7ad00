/* Fillers: values and statistics per type, determinism, error messages. */
#include "filler.h"
#include "layer_fixture.h"

typedef struct ff {
  Caffe__FillerParameter *fp;
  nr_blob *b;
  nr_rng rng;
  nr_error err;
} ff;

static void ff_free(ff *f) {
  if (!f) return;
  nr_blob_destroy(f->b);
  nr_text_free((ProtobufCMessage *)f->fp);
  free(f);
}

/* A FillerParameter parsed from prototxt and a blob of the given shape. */
static ff *ff_new(const char *proto, int n, const int64_t *dims) {
  ff *f = calloc(1, sizeof *f);
  ProtobufCMessage *m = NULL;
  if (nr_text_parse(proto, strlen(proto), "<test>", &caffe__filler_parameter__descriptor, &m,
                    &f->err) != NR_OK ||
      nr_blob_create("b", NULL, &f->b, &f->err) != NR_OK ||
      nr_blob_reshape(f->b, n, dims, &f->err) != NR_OK) {
    fprintf(stderr, "ff_new: %s\n", f->err.msg);
    nr_text_free(m);
    ff_free(f);
    return NULL;
  }
  f->fp = (Caffe__FillerParameter *)m;
  nr_rng_seed(&f->rng, 1701);
  return f;
}
#define FF_NEW(proto, ...) \
  ff_new((proto), (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
         (const int64_t[]){__VA_ARGS__})

static void stats(const nr_blob *b, double *mean, double *var, float *mn, float *mx) {
  double s = 0, s2 = 0;
  *mn = INFINITY, *mx = -INFINITY;
  for (int64_t i = 0; i < b->count; i++) {
    s += b->data[i];
    s2 += (double)b->data[i] * b->data[i];
    if (b->data[i] < *mn) *mn = b->data[i];
    if (b->data[i] > *mx) *mx = b->data[i];
  }
  *mean = s / (double)b->count;
  *var = s2 / (double)b->count - *mean * *mean;
}

static void test_constant(void) {
  ff *f = FF_NEW("type: 'constant' value: 3.5", 2, 3, 4);
  CHECK(f);
  CHECK_OK(nr_fill(f->b, f->fp, &f->rng, &f->err), &f->err);
  for (int64_t i = 0; i < f->b->count; i++) CHECK_NEAR(f->b->data[i], 3.5, 0);
  /* NULL parameter = constant 0; no rng needed. */
  CHECK_OK(nr_fill(f->b, NULL, NULL, &f->err), &f->err);
  for (int64_t i = 0; i < f->b->count; i++) CHECK_NEAR(f->b->data[i], 0, 0);
  ff_free(f);
}

static void test_uniform_gaussian(void) {
  double mean, var;
  float mn, mx;
  ff *f = FF_NEW("type: 'uniform' min: -2 max: 3", 100, 100);
  CHECK(f);
  CHECK_OK(nr_fill(f->b, f->fp, &f->rng, &f->err), &f->err);
  stats(f->b, &mean, &var, &mn, &mx);
  CHECK(mn >= -2 && mx <= 3);
  CHECK_NEAR(mean, 0.5, 0.05);
  CHECK_NEAR(var, 25.0 / 12, 0.1);
  ff_free(f);

  f = FF_NEW("type: 'gaussian' mean: 1 std: 0.5", 100, 100);
  CHECK(f);
  CHECK_OK(nr_fill(f->b, f->fp, &f->rng, &f->err), &f->err);
  stats(f->b, &mean, &var, &mn, &mx);
  CHECK_NEAR(mean, 1, 0.02);
  CHECK_NEAR(sqrt(var), 0.5, 0.02);
  ff_free(f);
}

static void test_sparse_gaussian(void) {
  ff *f = FF_NEW("type: 'gaussian' sparse: 10", 100, 200);
  CHECK(f);
  CHECK_OK(nr_fill(f->b, f->fp, &f->rng, &f->err), &f->err);
  int64_t nz = 0;
  for (int64_t i = 0; i < f->b->count; i++) nz += f->b->data[i] != 0;
  /* keep probability 10 / 100 over 20000 elements: 2000 +- 42 (sd). */
  CHECK(nz > 2000 - 250 && nz < 2000 + 250);
  ff_free(f);

  f = FF_NEW("type: 'gaussian' sparse: 10", 5, 4);
  CHECK(f);
  CHECK_INT_EQ(nr_fill(f->b, f->fp, &f->rng, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "exceeds the number of outputs");
  ff_free(f);

  f = FF_NEW("type: 'uniform' sparse: 2", 5, 4);
  CHECK(f);
  CHECK_INT_EQ(nr_fill(f->b, f->fp, &f->rng, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "does not support sparse");
  ff_free(f);
}

static void test_positive_unitball(void) {
  ff *f = FF_NEW("type: 'positive_unitball'", 7, 3, 5);
  CHECK(f);
  CHECK_OK(nr_fill(f->b, f->fp, &f->rng, &f->err), &f->err);
  for (int r = 0; r < 7; r++) {
    double s = 0;
    for (int j = 0; j < 15; j++) {
      const float v = f->b->data[r * 15 + j];
      CHECK(v >= 0 && v <= 1);
      s += v;
    }
    CHECK_NEAR(s, 1, 1e-5);
  }
  ff_free(f);
}

static void test_xavier_msra(void) {
  /* (200, 10, 5): fan_in = 50, fan_out = 200 * 5 = 1000, average 525. */
  const char *norms[] = {"", "variance_norm: FAN_OUT", "variance_norm: AVERAGE"};
  const double ns[] = {50, 1000, 525};
  for (int k = 0; k < 3; k++) {
    char proto[128];
    double mean, var;
    float mn, mx;
    snprintf(proto, sizeof proto, "type: 'xavier' %s", norms[k]);
    ff *f = FF_NEW(proto, 200, 10, 5);
    CHECK(f);
    CHECK_OK(nr_fill(f->b, f->fp, &f->rng, &f->err), &f->err);
    stats(f->b, &mean, &var, &mn, &mx);
    const double bound = sqrt(3.0 / ns[k]);
    CHECK(mn >= -bound && mx <= bound);
    CHECK_NEAR(mean, 0, 0.05 * bound);
    CHECK_NEAR(var, 1.0 / ns[k], 0.05 / ns[k]);
    ff_free(f);

    snprintf(proto, sizeof proto, "type: 'msra' %s", norms[k]);
    f = FF_NEW(proto, 200, 10, 5);
    CHECK(f);
    CHECK_OK(nr_fill(f->b, f->fp, &f->rng, &f->err), &f->err);
    stats(f->b, &mean, &var, &mn, &mx);
    CHECK_NEAR(var, 2.0 / ns[k], 0.1 / ns[k]);
    ff_free(f);
  }
}

static void test_bilinear(void) {
  ff *f = FF_NEW("type: 'bilinear'", 2, 1, 4, 4);
  CHECK(f);
  CHECK_OK(nr_fill(f->b, f->fp, NULL, &f->err), &f->err);
  /* k = 4: f = 2, c = 0.75; 1-D weights 0.25 0.75 0.75 0.25, the kernel their product. */
  const float w[4] = {0.25f, 0.75f, 0.75f, 0.25f};
  for (int n = 0; n < 2; n++)
    for (int y = 0; y < 4; y++)
      for (int x = 0; x < 4; x++) CHECK_NEAR(f->b->data[n * 16 + y * 4 + x], w[y] * w[x], 1e-7);
  ff_free(f);

  f = FF_NEW("type: 'bilinear'", 1, 1, 3, 3);
  CHECK(f);
  CHECK_OK(nr_fill(f->b, f->fp, NULL, &f->err), &f->err);
  /* k = 3: f = 2, c = 0.5; weights 0.5 1 0.5. */
  CHECK_NEAR(f->b->data[4], 1, 1e-7);
  CHECK_NEAR(f->b->data[0], 0.25, 1e-7);
  ff_free(f);

  f = FF_NEW("type: 'bilinear'", 1, 3, 3);
  CHECK(f);
  CHECK_INT_EQ(nr_fill(f->b, f->fp, NULL, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "4-D");
  ff_free(f);
  f = FF_NEW("type: 'bilinear'", 1, 1, 3, 4);
  CHECK(f);
  CHECK_INT_EQ(nr_fill(f->b, f->fp, NULL, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "square");
  ff_free(f);
}

static void test_unknown_and_determinism(void) {
  ff *f = FF_NEW("type: 'foo'", 3);
  CHECK(f);
  CHECK_INT_EQ(nr_fill(f->b, f->fp, &f->rng, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "unknown filler type 'foo' (known: constant, gaussian");
  ff_free(f);

  ff *a = FF_NEW("type: 'gaussian'", 50), *b = FF_NEW("type: 'gaussian'", 50);
  CHECK(a && b);
  CHECK_OK(nr_fill(a->b, a->fp, &a->rng, &a->err), &a->err);
  CHECK_OK(nr_fill(b->b, b->fp, &b->rng, &b->err), &b->err);
  CHECK(memcmp(a->b->data, b->b->data, 50 * sizeof(float)) == 0);
  CHECK_OK(nr_fill(b->b, b->fp, &b->rng, &b->err), &b->err);
  CHECK(memcmp(a->b->data, b->b->data, 50 * sizeof(float)) != 0);
  ff_free(a);
  ff_free(b);
}

int main(void) {
  NR_RUN(test_constant);
  NR_RUN(test_uniform_gaussian);
  NR_RUN(test_sparse_gaussian);
  NR_RUN(test_positive_unitball);
  NR_RUN(test_xavier_msra);
  NR_RUN(test_bilinear);
  NR_RUN(test_unknown_and_determinism);
  return NR_TEST_EXIT();
}
