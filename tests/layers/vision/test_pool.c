/* Pooling: Caffe's output-size formula (ceil, pad corner case, floor, global), MAX/AVE
 * values and masks, errors, gradient checks. */
#include "layer_fixture.h"

static lf *pool_layer(const char *params, int nt, int64_t n, int64_t c, int64_t h, int64_t w) {
  char proto[400];
  snprintf(proto, sizeof proto, "name: 'p' type: 'Pooling' pooling_param { %s }", params);
  lf *f = lf_new(proto, 1, nt);
  if (f) LF_SHAPE(f->bottom[0], n, c, h, w);
  return f;
}

static void check_pool_shape(const char *params, int64_t h, int64_t w, int64_t oh, int64_t ow) {
  lf *f = pool_layer(params, 1, 2, 3, h, w);
  CHECK(f);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[0], 2);
  CHECK_INT_EQ(f->top[0]->shape[1], 3);
  CHECK_INT_EQ(f->top[0]->shape[2], oh);
  CHECK_INT_EQ(f->top[0]->shape[3], ow);
  lf_free(f);
}

static void test_pool_shapes(void) {
  check_pool_shape("kernel_size: 2 stride: 2", 4, 5, 2, 3);          /* ceil: 5 -> 3 */
  check_pool_shape("kernel_size: 3 stride: 2", 6, 7, 3, 3);          /* ceil(3/2)+1, 2+1 */
  check_pool_shape("kernel_size: 3 stride: 2 pad: 1", 7, 7, 4, 4);   /* ceil(6/2)+1 */
  /* ceil gives 4, but window 3 would start at 6 >= 5+1 (in the padding): 3 */
  check_pool_shape("kernel_size: 2 stride: 2 pad: 1", 5, 5, 3, 3);
  check_pool_shape("kernel_size: 2 stride: 2 pad: 1", 4, 4, 3, 3);   /* ceil(4/2)+1 = 3 */
  check_pool_shape("kernel_size: 3 stride: 2 round_mode: FLOOR", 6, 6, 2, 2);
  check_pool_shape("kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 pad_h: 1", 5, 6, 5, 3);
  check_pool_shape("global_pooling: true pool: AVE", 7, 5, 1, 1);
}

static void test_pool_max_values(void) {
  lf *f = pool_layer("pool: MAX kernel_size: 2 stride: 2", 2, 1, 1, 3, 4);
  CHECK(f);
  const float x[12] = {1, 5, 2, 0, 3, 4, 8, 8, 9, -1, -2, -3};
  memcpy(f->bottom[0]->data, x, sizeof x);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  /* output 2x2: windows rows {0,1} and {2} (ceil) */
  const float want[4] = {5, 8, 9, -2}, wmask[4] = {1, 6, 8, 10};
  for (int i = 0; i < 4; i++) {
    CHECK_NEAR(f->top[0]->data[i], want[i], 0);
    CHECK_NEAR(f->top[1]->data[i], wmask[i], 0); /* first maximum wins on the tie 8,8 */
  }
  /* backward routes the diff to the argmax */
  for (int i = 0; i < 4; i++) f->top[0]->diff[i] = (float)(i + 1);
  f->l->prop_down[0] = true;
  CHECK_OK(f->l->type->backward(f->l, &f->err), &f->err);
  const float wd[12] = {0, 1, 0, 0, 0, 0, 2, 0, 3, 0, 4, 0};
  for (int i = 0; i < 12; i++) CHECK_NEAR(f->bottom[0]->diff[i], wd[i], 0);
  lf_free(f);
}

static void test_pool_ave_values(void) {
  lf *f = pool_layer("pool: AVE kernel_size: 3 stride: 1 pad: 1", 1, 1, 1, 3, 3);
  CHECK(f);
  for (int i = 0; i < 9; i++) f->bottom[0]->data[i] = 1;
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  /* Caffe's divisor counts the padding: corners 4/9, edges 6/9, centre 1 */
  const float want[9] = {4 / 9.f, 6 / 9.f, 4 / 9.f, 6 / 9.f, 1, 6 / 9.f, 4 / 9.f, 6 / 9.f, 4 / 9.f};
  for (int i = 0; i < 9; i++) CHECK_NEAR(f->top[0]->data[i], want[i], 1e-6);
  lf_free(f);

  /* Window clipped at in + pad: H=4, k=3, s=2, p=1 -> 3 outputs; the last window
   * [3, 6) is clipped to [3, 5): divisor 2 rows, and sums only row 3. */
  f = pool_layer("pool: AVE kernel_size: 3 stride: 2 pad: 1", 1, 1, 1, 4, 4);
  CHECK(f);
  for (int i = 0; i < 16; i++) f->bottom[0]->data[i] = (float)i;
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[2], 3);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  /* top (2,2): rows 3, cols 3: one element 15 over a 2x2 divisor */
  CHECK_NEAR(f->top[0]->data[8], 15 / 4.0, 1e-6);
  /* top (0,0): rows 0..1, cols 0..1, divisor 3x3 */
  CHECK_NEAR(f->top[0]->data[0], (0 + 1 + 4 + 5) / 9.0, 1e-6);
  lf_free(f);

  f = pool_layer("pool: AVE global_pooling: true", 1, 2, 2, 2, 3);
  CHECK(f);
  for (int i = 0; i < 24; i++) f->bottom[0]->data[i] = (float)i;
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  for (int i = 0; i < 4; i++) CHECK_NEAR(f->top[0]->data[i], 6 * i + 2.5, 1e-5);
  lf_free(f);
}

static void test_pool_errors(void) {
  lf *f = pool_layer("pool: STOCHASTIC kernel_size: 2", 1, 1, 1, 4, 4);
  CHECK(f);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "STOCHASTIC is not supported");
  lf_free(f);
  f = pool_layer("kernel_size: 5", 1, 1, 1, 3, 3);
  CHECK(f);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "kernel 5x5 larger than padded input 3x3");
  lf_free(f);
  f = pool_layer("stride: 2", 1, 1, 1, 3, 3);
  CHECK(f);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "kernel_size");
  lf_free(f);
  f = pool_layer("kernel_size: 2 pad: 2", 1, 1, 1, 3, 3);
  CHECK(f);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "pad");
  lf_free(f);
  f = lf_new("name: 'p' type: 'Pooling' pooling_param { kernel_size: 2 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "bottom[0] has 3 axes, expected 4");
  lf_free(f);
}

static void test_pool_gradient(void) {
  const char *params[] = {
      "pool: MAX kernel_size: 3 stride: 2",
      "pool: MAX kernel_h: 3 kernel_w: 2 stride: 2 pad: 1",
      "pool: AVE kernel_size: 3 stride: 2 pad: 1",
      "pool: AVE kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_w: 1",
      "pool: AVE global_pooling: true",
  };
  for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
    lf *f = pool_layer(params[i], 1, 2, 2, 6, 5);
    CHECK(f);
    /* distinct values far apart compared to the step: the argmax never flips */
    for (int64_t j = 0; j < f->bottom[0]->count; j++)
      f->bottom[0]->data[j] = (float)((j * 37) % 60) * 0.1f - 3.0f;
    CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
    LF_GRAD(f, 1e-2f, 1e-2f, -1, NR_GC_EXHAUSTIVE);
    lf_free(f);
  }
}

int main(void) {
  NR_RUN(test_pool_shapes);
  NR_RUN(test_pool_max_values);
  NR_RUN(test_pool_ave_values);
  NR_RUN(test_pool_errors);
  NR_RUN(test_pool_gradient);
  return NR_TEST_EXIT();
}
