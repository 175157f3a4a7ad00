/* Self-test of the gradient checker: a correct layer passes, a wrong backward is caught
 * with a message naming the element, kinks are skipped, and the rng is reseeded before
 * every forward (a random-mask layer passes). */
#include "gradcheck.h"

#include <stdbool.h>

#include "nr_test.h"

/* top = w · bottom² · mask, mask ∈ {0,1} from the ctx rng; "wrong" flips the bottom diff
 * of element 2; "absval" computes top = |bottom| (kink at 0). */
static bool g_wrong, g_abs;

static nr_status sq_setup(nr_layer *l, nr_error *err) {
  int64_t one = 1;
  nr_blob *w;
  NR_TRY(nr_layer_add_param(l, 1, &one, &w, err));
  w->data[0] = 1.5f;
  return NR_OK;
}
static nr_status sq_reshape(nr_layer *l, nr_error *err) {
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}
static float mask_at(nr_layer *l, int64_t i) {
  (void)i;
  return nr_rng_bernoulli(l->ctx->rng, 0.7) ? 1.0f : 0.0f;
}
static nr_status sq_forward(nr_layer *l, nr_error *err) {
  const float *x = l->bottom[0]->data;
  float w = l->blobs[0]->data[0];
  for (int64_t i = 0; i < l->bottom[0]->count; i++)
    l->top[0]->data[i] = g_abs ? fabsf(x[i]) : w * x[i] * x[i] * mask_at(l, i);
  return NR_OK;
}
static nr_status sq_backward(nr_layer *l, nr_error *err) {
  const float *x = l->bottom[0]->data, *dy = l->top[0]->diff;
  float w = l->blobs[0]->data[0];
  nr_rng_seed(l->ctx->rng, 1701); /* same masks as the forward the checker just ran */
  for (int64_t i = 0; i < l->bottom[0]->count; i++) {
    if (g_abs) {
      l->bottom[0]->diff[i] = dy[i] * (x[i] > 0 ? 1.0f : -1.0f);
      continue;
    }
    float m = mask_at(l, i);
    l->blobs[0]->diff[0] += dy[i] * x[i] * x[i] * m;
    if (l->prop_down[0])
      l->bottom[0]->diff[i] = dy[i] * 2 * w * x[i] * m * (g_wrong && i == 2 ? -1 : 1);
  }
  return NR_OK;
}
static const nr_layer_type sq_type = {
    .name = "GcSquare", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = sq_setup, .reshape = sq_reshape, .forward = sq_forward, .backward = sq_backward};

static nr_blob *g_bottom, *g_top;
static nr_rng g_rng;
static nr_layer_ctx g_ctx = {.rng = &g_rng};

static nr_layer *make_layer(nr_error *err) {
  nr_layer *l = calloc(1, sizeof *l);
  l->type = &sq_type;
  l->ctx = &g_ctx;
  l->nbottom = l->ntop = 1;
  l->bottom = &g_bottom;
  l->top = &g_top;
  l->prop_down = calloc(1, sizeof(bool));
  if (nr_layer_setup(l, err) != NR_OK) return NULL;
  return l;
}
static void free_layer(nr_layer *l) {
  for (int i = 0; i < l->nblobs; i++) nr_blob_destroy(l->blobs[i]);
  free(l->blobs);
  free(l->prop_down);
  free(l);
}

static void test_correct_passes(void) {
  nr_error err = {0};
  g_wrong = g_abs = false;
  nr_gradcheck_fill_uniform(g_bottom, -1, 1, 3);
  nr_layer *l = make_layer(&err);
  CHECK(l);
  nr_gradcheck_config c = nr_gradcheck_defaults(1e-2f, 1e-3f);
  nr_status s1 = nr_gradcheck_layer(l, &c, -1, NR_GC_ALL, &err);
  nr_status s2 = s1 == NR_OK ? nr_gradcheck_layer(l, &c, -1, NR_GC_EXHAUSTIVE, &err) : s1;
  nr_status s3 = s2 == NR_OK ? nr_gradcheck_layer(l, &c, -2, NR_GC_ALL, &err) : s2;
  free_layer(l);
  CHECK_OK(s3, &err);
}

static void test_wrong_caught(void) {
  nr_error err = {0};
  g_wrong = true;
  g_abs = false;
  nr_gradcheck_fill_uniform(g_bottom, 0.5f, 1, 4);
  nr_layer *l = make_layer(&err);
  CHECK(l);
  nr_gradcheck_config c = nr_gradcheck_defaults(1e-2f, 1e-3f);
  nr_status s = nr_gradcheck_layer(l, &c, 0, NR_GC_ALL, &err);
  nr_status se = nr_gradcheck_layer(l, &c, 0, NR_GC_ELTWISE, &err);
  /* params only: the wrong bottom diff is not looked at */
  nr_error err2 = {0};
  nr_status sp = nr_gradcheck_layer(l, &c, -2, NR_GC_ALL, &err2);
  free_layer(l);
  g_wrong = false;
  CHECK_INT_EQ(s, NR_ERR_INPUT);
  CHECK_INT_EQ(se, NR_ERR_INPUT); /* params present: eltwise refuses */
  CHECK_OK(sp, &err2);
}

static void test_wrong_message(void) {
  nr_error err = {0};
  g_wrong = true;
  g_abs = false;
  nr_gradcheck_fill_uniform(g_bottom, 0.5f, 1, 4);
  nr_layer *l = make_layer(&err);
  CHECK(l);
  nr_gradcheck_config c = nr_gradcheck_defaults(1e-2f, 1e-3f);
  nr_status s = nr_gradcheck_layer(l, &c, 0, NR_GC_EXHAUSTIVE, &err);
  free_layer(l);
  g_wrong = false;
  CHECK_INT_EQ(s, NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "bottom 0 element 2");
  CHECK_CONTAINS(err.msg, "top 0 element 2");
}

static void test_kink_skipped(void) {
  nr_error err = {0};
  g_abs = true;
  nr_gradcheck_fill_uniform(g_bottom, -1, 1, 5);
  g_bottom->data[1] = 0.001f; /* within the step: the central difference is wrong here */
  nr_layer *l = make_layer(&err);
  CHECK(l);
  nr_blob *w = l->blobs[0];
  l->nblobs = 0; /* eltwise needs no params */
  nr_gradcheck_config c = nr_gradcheck_defaults(1e-2f, 1e-3f);
  nr_status bad = nr_gradcheck_layer(l, &c, -1, NR_GC_ELTWISE, &err);
  c.kink_range = 0.02f;
  nr_error err2 = {0};
  nr_status good = nr_gradcheck_layer(l, &c, -1, NR_GC_ELTWISE, &err2);
  l->nblobs = 1;
  l->blobs[0] = w;
  free_layer(l);
  g_abs = false;
  CHECK_INT_EQ(bad, NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "element 1");
  CHECK_OK(good, &err2);
}

int main(void) {
  nr_error err = {0};
  int64_t dims[2] = {2, 3};
  if (nr_blob_create("x", NULL, &g_bottom, &err) || nr_blob_create("y", NULL, &g_top, &err) ||
      nr_blob_reshape(g_bottom, 2, dims, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  NR_RUN(test_correct_passes);
  NR_RUN(test_wrong_caught);
  NR_RUN(test_wrong_message);
  NR_RUN(test_kink_skipped);
  nr_blob_destroy(g_bottom);
  nr_blob_destroy(g_top);
  return NR_TEST_EXIT();
}
