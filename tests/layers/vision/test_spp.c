/* SPP: the pyramid's bins by hand (MAX and AVE, 1 to 3 levels), the top's layout, a
 * bottom reshaped between forwards, Caffe's errors, gradient checks. */
#include "layer_fixture.h"

static lf *spp_layer(const char *params, int64_t n, int64_t c, int64_t h, int64_t w) {
  char proto[300];
  snprintf(proto, sizeof proto, "name: 's' type: 'SPP' spp_param { %s }", params);
  lf *f = lf_new(proto, 1, 1);
  if (f) LF_SHAPE(f->bottom[0], n, c, h, w);
  return f;
}

/* Distinct values 0.05 apart in a scrambled order, so no MAX window holds a near tie
 * that a finite difference would cross. */
static void fill_distinct(nr_blob *b, int64_t mult) {
  for (int64_t i = 0; i < b->count; i++)
    b->data[i] = (float)((i * mult) % b->count) * 0.05f - 1.0f;
}

static void test_spp_values(void) {
  /* 4x4 image 0..15: level 0 the max (15), level 1 the 2x2 blocks' maxima, level 2 the
   * image itself (1x1 bins) */
  lf *f = spp_layer("pyramid_height: 3", 1, 1, 4, 4);
  CHECK(f);
  for (int i = 0; i < 16; i++) f->bottom[0]->data[i] = (float)i;
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 1, 21);
  LF_FORWARD(f);
  CHECK_NEAR(f->top[0]->data[0], 15, 0);
  const float l1[4] = {5, 7, 13, 15};
  for (int i = 0; i < 4; i++) CHECK_NEAR(f->top[0]->data[1 + i], l1[i], 0);
  for (int i = 0; i < 16; i++) CHECK_NEAR(f->top[0]->data[5 + i], (float)i, 0);
  /* backward: each level's gradient summed: pixel 15 gets all three */
  for (int i = 0; i < 21; i++) f->top[0]->diff[i] = 1;
  f->l->prop_down[0] = true;
  LF_BACKWARD(f);
  CHECK_NEAR(f->bottom[0]->diff[15], 3, 0);
  CHECK_NEAR(f->bottom[0]->diff[5], 2, 0);
  CHECK_NEAR(f->bottom[0]->diff[0], 1, 0);
  lf_free(f);

  /* AVE, 2 channels: per item, channel-major within each level */
  f = spp_layer("pyramid_height: 2 pool: AVE", 1, 2, 4, 4);
  CHECK(f);
  for (int i = 0; i < 32; i++) f->bottom[0]->data[i] = (float)(i % 16) * (i < 16 ? 1 : -1);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 1, 10);
  LF_FORWARD(f);
  const float want[10] = {7.5f, -7.5f, 2.5f, 4.5f, 10.5f, 12.5f, -2.5f, -4.5f, -10.5f, -12.5f};
  for (int i = 0; i < 10; i++) CHECK_NEAR(f->top[0]->data[i], want[i], 1e-6);
  lf_free(f);

  /* height 1: the pooled (N, C, 1, 1) blob itself */
  f = spp_layer("pyramid_height: 1", 2, 3, 5, 3);
  CHECK(f);
  fill_distinct(f->bottom[0], 37);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 2, 3, 1, 1);
  LF_FORWARD(f);
  float mx = -INFINITY;
  for (int i = 0; i < 15; i++) mx = fmaxf(mx, f->bottom[0]->data[i]);
  CHECK_NEAR(f->top[0]->data[0], mx, 0);
  LF_GRAD(f, 1e-2f, 1e-2f, -1, NR_GC_EXHAUSTIVE);
  lf_free(f);
}

static void test_spp_reshape_and_grad(void) {
  /* 5x3: level 1 uses kernel 3x2 with pad 1x1, giving 2x2 bins */
  lf *f = spp_layer("pyramid_height: 2", 2, 3, 5, 3);
  CHECK(f);
  fill_distinct(f->bottom[0], 37);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 2, 3 * (1 + 4));
  LF_GRAD(f, 1e-2f, 1e-2f, -1, NR_GC_EXHAUSTIVE);
  /* a new image size rebuilds the levels */
  LF_SHAPE(f->bottom[0], 1, 3, 8, 8);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 83);
  CHECK_OK(f->l->type->reshape(f->l, &f->err), &f->err);
  CHECK_SHAPE(f->top[0], 1, 15);
  LF_FORWARD(f);
  float mx = -INFINITY;
  for (int y = 0; y < 4; y++)
    for (int x = 4; x < 8; x++) mx = fmaxf(mx, f->bottom[0]->data[y * 8 + x]);
  CHECK_NEAR(f->top[0]->data[3 + 1], mx, 0); /* channel 0, bin (0, 1) */
  lf_free(f);
  f = spp_layer("pyramid_height: 3 pool: AVE", 1, 2, 6, 7);
  CHECK(f);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 84);
  LF_SETUP(f);
  LF_GRAD(f, 1e-2f, 1e-2f, -1, NR_GC_EXHAUSTIVE);
  lf_free(f);
}

static void test_spp_errors(void) {
  lf *f = spp_layer("pool: MAX", 1, 1, 4, 4);
  CHECK(f);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "pyramid_height must be given");
  lf_free(f);
  f = spp_layer("pyramid_height: 2 pool: STOCHASTIC", 1, 1, 4, 4);
  CHECK(f);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "only MAX and AVE");
  lf_free(f);
  /* 5 rows in 4 bins need kernel 2 with pad 2: Pooling's pad < kernel rule */
  f = spp_layer("pyramid_height: 3", 1, 1, 5, 5);
  CHECK(f);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "pyramid level 2");
  CHECK_CONTAINS(f->err.msg, "smaller than the kernel");
  lf_free(f);
  f = lf_new("type: 'SPP' spp_param { pyramid_height: 2 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "bottom has 3 axes, expected 4");
  lf_free(f);
}

int main(void) {
  NR_RUN(test_spp_values);
  NR_RUN(test_spp_reshape_and_grad);
  NR_RUN(test_spp_errors);
  return NR_TEST_EXIT();
}
