/* Normalization layers: LRN, BatchNorm, Softmax, MVN: values against direct formulas, BatchNorm's
 * running statistics (train) and stored ones (global), gradient checks. */
#include "layer_fixture.h"

/* Direct LRN formulas. */
static float lrn_across_ref(const float *x, int C, int S, int n, int c, int s, int size,
                            float alpha, float beta, float k) {
  int pre = (size - 1) / 2;
  double sum = 0;
  for (int cc = c - pre; cc <= c + pre; cc++)
    if (cc >= 0 && cc < C) sum += (double)x[(n * C + cc) * S + s] * x[(n * C + cc) * S + s];
  return (float)(x[(n * C + c) * S + s] * pow(k + alpha / size * sum, -beta));
}

static void test_lrn_values(void) {
  lf *f = lf_new("name: 'n' type: 'LRN' lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 }",
                 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 5, 2, 3);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 21);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  for (int n = 0; n < 2; n++)
    for (int c = 0; c < 5; c++)
      for (int s = 0; s < 6; s++)
        CHECK_NEAR(f->top[0]->data[(n * 5 + c) * 6 + s],
                   lrn_across_ref(f->bottom[0]->data, 5, 6, n, c, s, 3, 0.5f, 0.75f, 2), 1e-5);
  lf_free(f);

  /* WITHIN_CHANNEL: 1 + α · (Σ window x²) / (window area counting padding) */
  f = lf_new("name: 'n' type: 'LRN' lrn_param { local_size: 3 alpha: 0.9 beta: 0.5 "
             "norm_region: WITHIN_CHANNEL }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 1, 3, 3);
  for (int i = 0; i < 9; i++) f->bottom[0]->data[i] = (float)(i + 1) * 0.1f;
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  const float *x = f->bottom[0]->data;
  double corner = (x[0] * x[0] + x[1] * x[1] + x[3] * x[3] + x[4] * x[4]) / 9.0;
  CHECK_NEAR(f->top[0]->data[0], x[0] * pow(1 + 0.9 * corner, -0.5), 1e-6);
  double all = 0;
  for (int i = 0; i < 9; i++) all += x[i] * x[i];
  CHECK_NEAR(f->top[0]->data[4], x[4] * pow(1 + 0.9 * all / 9.0, -0.5), 1e-6);
  lf_free(f);

  f = lf_new("name: 'n' type: 'LRN' lrn_param { local_size: 4 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 1, 3, 3);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "local_size must be odd");
  lf_free(f);
}

static void test_lrn_gradient(void) {
  const char *protos[] = {
      "name: 'n' type: 'LRN' lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 1.5 }",
      "name: 'n' type: 'LRN' lrn_param { local_size: 5 alpha: 1 beta: 0.75 }",
      "name: 'n' type: 'LRN' lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 "
      "norm_region: WITHIN_CHANNEL }",
  };
  for (size_t i = 0; i < sizeof protos / sizeof protos[0]; i++) {
    lf *f = lf_new(protos[i], 1, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 2, 7, 3, 3);
    nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 22);
    CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
    LF_GRAD(f, 1e-2f, 1e-2f, -1, NR_GC_EXHAUSTIVE);
    lf_free(f);
  }
}

static void test_batch_norm_train(void) {
  lf *f = lf_new("name: 'bn' type: 'BatchNorm' batch_norm_param { moving_average_fraction: 0.5 "
                 "eps: 0.001 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 3, 2, 2, 2);
  nr_gradcheck_fill_gaussian(f->bottom[0], 1, 2, 31);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->l->nblobs, 3);
  CHECK_INT_EQ(f->l->blobs[0]->shape[0], 2);
  CHECK_INT_EQ(f->l->blobs[2]->count, 1);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  const float *x = f->bottom[0]->data, *y = f->top[0]->data;
  for (int c = 0; c < 2; c++) {
    double mu = 0, var = 0;
    for (int n = 0; n < 3; n++)
      for (int s = 0; s < 4; s++) mu += x[(n * 2 + c) * 4 + s];
    mu /= 12;
    for (int n = 0; n < 3; n++)
      for (int s = 0; s < 4; s++) var += pow(x[(n * 2 + c) * 4 + s] - mu, 2);
    var /= 12;
    for (int n = 0; n < 3; n++)
      for (int s = 0; s < 4; s++)
        CHECK_NEAR(y[(n * 2 + c) * 4 + s], (x[(n * 2 + c) * 4 + s] - mu) / sqrt(var + 0.001), 1e-4);
    CHECK_NEAR(f->l->blobs[0]->data[c], mu, 1e-5);            /* 0·0.5 + μ */
    CHECK_NEAR(f->l->blobs[1]->data[c], var * 12 / 11, 1e-4); /* unbiased */
  }
  CHECK_NEAR(f->l->blobs[2]->data[0], 1, 0);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  CHECK_NEAR(f->l->blobs[2]->data[0], 1.5, 0);
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_EXHAUSTIVE);
  lf_free(f);
}

static void test_batch_norm_global(void) {
  /* phase TEST defaults to the stored statistics */
  lf *f = lf_new("name: 'bn' type: 'BatchNorm' phase: TEST", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 32);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  for (int c = 0; c < 3; c++) {
    f->l->blobs[0]->data[c] = 2.0f * (float)c;  /* stored sums, normaliser 2 */
    f->l->blobs[1]->data[c] = 2.0f * (float)(c + 1);
  }
  f->l->blobs[2]->data[0] = 2;
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  for (int n = 0; n < 2; n++)
    for (int c = 0; c < 3; c++)
      CHECK_NEAR(f->top[0]->data[n * 3 + c],
                 (f->bottom[0]->data[n * 3 + c] - c) / sqrt(c + 1 + 1e-5), 1e-5);
  CHECK_NEAR(f->l->blobs[2]->data[0], 2, 0); /* not updated */
  int nb = f->l->nblobs;
  f->l->nblobs = 0; /* the stored statistics have no gradient: check the bottom only */
  nr_gradcheck_config c = nr_gradcheck_defaults(1e-2f, 1e-3f);
  nr_status s = nr_gradcheck_layer(f->l, &c, 0, NR_GC_EXHAUSTIVE, &f->err);
  f->l->nblobs = nb;
  CHECK_OK(s, &f->err);
  lf_free(f);
}

static void test_softmax(void) {
  lf *f = lf_new("name: 's' type: 'Softmax' softmax_param { axis: 1 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 4, 3);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 3, 33);
  f->bottom[0]->data[0] = 80; /* large values stay finite */
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  const float *x = f->bottom[0]->data, *y = f->top[0]->data;
  for (int n = 0; n < 2; n++)
    for (int s = 0; s < 3; s++) {
      double mx = -1e30, z = 0;
      for (int c = 0; c < 4; c++) mx = fmax(mx, x[(n * 4 + c) * 3 + s]);
      for (int c = 0; c < 4; c++) z += exp(x[(n * 4 + c) * 3 + s] - mx);
      for (int c = 0; c < 4; c++)
        CHECK_NEAR(y[(n * 4 + c) * 3 + s], exp(x[(n * 4 + c) * 3 + s] - mx) / z, 1e-6);
    }
  f->bottom[0]->data[0] = 0.5f;
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_EXHAUSTIVE);
  lf_free(f);
}

/* ---- MVN ---- */

static void test_mvn_values(void) {
  /* one (1, 2, 1, 2) bottom by hand: planes {1, 3} and {2, 6}: means 2 and 4, σ 1 and 2 */
  lf *f = lf_new("type: 'MVN' mvn_param { eps: 0 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 2, 1, 2);
  lf_set(f->bottom[0], (const float[]){1, 3, 2, 6});
  LF_SETUP(f);
  LF_FORWARD(f);
  const float want[] = {-1, 1, -1, 1};
  for (int i = 0; i < 4; i++) CHECK_NEAR(f->top[0]->data[i], want[i], 1e-6);
  lf_free(f);
  /* across channels, mean only: one mean (3) over the item */
  f = lf_new("type: 'MVN' mvn_param { normalize_variance: false across_channels: true }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 2, 1, 2);
  lf_set(f->bottom[0], (const float[]){1, 3, 2, 6});
  LF_SETUP(f);
  LF_FORWARD(f);
  const float want2[] = {-2, 0, -1, 3};
  for (int i = 0; i < 4; i++) CHECK_NEAR(f->top[0]->data[i], want2[i], 1e-6);
  lf_free(f);
  /* a 2-axis bottom gives a 4-axis top, as Caffe; each (n, c) value is its own plane */
  f = lf_new("type: 'MVN' mvn_param { across_channels: true }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  lf_set(f->bottom[0], (const float[]){1, 2, 3, 0, 0, 3});
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 2, 3, 1, 1);
  LF_FORWARD(f);
  const double s0 = sqrt(2.0 / 3), s1 = sqrt(2.0);
  const double want3[] = {-1 / s0, 0, 1 / s0, -1 / s1, -1 / s1, 2 / s1};
  for (int i = 0; i < 6; i++) CHECK_NEAR(f->top[0]->data[i], want3[i], 1e-5);
  lf_free(f);
  f = lf_new("type: 'MVN'", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 2, 1, 2, 1);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "at most 4");
  lf_free(f);
}

static void test_mvn_gradient(void) {
  const char *protos[] = {
      "type: 'MVN'",
      "type: 'MVN' mvn_param { normalize_variance: false }",
      "type: 'MVN' mvn_param { across_channels: true }",
      "type: 'MVN' mvn_param { normalize_variance: false across_channels: true }",
  };
  for (int k = 0; k < 4; k++) {
    lf *f = lf_new(protos[k], 1, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 2, 3, 2, 3);
    nr_gradcheck_fill_gaussian(f->bottom[0], 0.5f, 1, 41 + (uint64_t)k);
    LF_SETUP(f);
    LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_EXHAUSTIVE);
    /* in place gives the same top and bottom diff */
    lf *g = lf_make(protos[k], 1, 1, 1);
    CHECK(g);
    LF_SHAPE(g->bottom[0], 2, 3, 2, 3);
    nr_gradcheck_fill_gaussian(g->bottom[0], 0.5f, 1, 41 + (uint64_t)k);
    LF_SETUP(g);
    LF_FORWARD(f);
    LF_FORWARD(g);
    CHECK(lf_maxdiff(f->top[0]->data, g->top[0]->data, 36) == 0);
    nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 5); /* reuse as random top diffs */
    memcpy(f->top[0]->diff, f->bottom[0]->data, 36 * sizeof(float));
    memcpy(g->top[0]->diff, f->bottom[0]->data, 36 * sizeof(float));
    f->l->prop_down[0] = g->l->prop_down[0] = true;
    LF_BACKWARD(f);
    LF_BACKWARD(g);
    CHECK(lf_maxdiff(f->bottom[0]->diff, g->bottom[0]->diff, 36) < 1e-6);
    lf_free(f);
    lf_free(g);
  }
}

int main(void) {
  NR_RUN(test_lrn_values);
  NR_RUN(test_lrn_gradient);
  NR_RUN(test_batch_norm_train);
  NR_RUN(test_batch_norm_global);
  NR_RUN(test_softmax);
  NR_RUN(test_mvn_values);
  NR_RUN(test_mvn_gradient);
  return NR_TEST_EXIT();
}
