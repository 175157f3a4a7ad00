/* Im2col: the columns against a direct loop (2-D with pad, stride and dilation, the N-D
 * path, force_nd_im2col equal to the 2-D path, a channel axis other than 1), errors,
 * gradient checks of the adjoint. */
#include "layer_fixture.h"

/* Column value of a 2-D unrolling, straight from the definition. */
static float col_ref(const float *x, int64_t C, int64_t H, int64_t W, int kh, int kw, int p,
                     int s, int d, int64_t c, int i, int j, int64_t oh, int64_t ow) {
  const int64_t y = oh * s - p + i * d, xx = ow * s - p + j * d;
  if (y < 0 || y >= H || xx < 0 || xx >= W) return 0;
  (void)C;
  return x[(c * H + y) * W + xx];
}

static void check_2d(const char *params, int64_t N, int64_t C, int64_t H, int64_t W, int kh,
                     int kw, int p, int s, int d) {
  char proto[300];
  snprintf(proto, sizeof proto, "type: 'Im2col' convolution_param { %s }", params);
  lf *f = lf_new(proto, 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], N, C, H, W);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 91);
  LF_SETUP(f);
  const int64_t OH = (H + 2 * p - (d * (kh - 1) + 1)) / s + 1;
  const int64_t OW = (W + 2 * p - (d * (kw - 1) + 1)) / s + 1;
  CHECK_SHAPE(f->top[0], N, C * kh * kw, OH, OW);
  LF_FORWARD(f);
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++)
      for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++)
          for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
              const int64_t row = (c * kh + i) * kw + j;
              const float got = f->top[0]->data[((n * C * kh * kw + row) * OH + oh) * OW + ow];
              CHECK_NEAR(got, col_ref(f->bottom[0]->data + n * C * H * W, C, H, W, kh, kw, p, s,
                                      d, c, i, j, oh, ow), 0);
            }
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_ALL);
  lf_free(f);
}

static void test_im2col_2d(void) {
  check_2d("kernel_size: 2", 2, 2, 3, 3, 2, 2, 0, 1, 1);
  check_2d("kernel_size: 3 pad: 1 stride: 2", 2, 3, 5, 6, 3, 3, 1, 2, 1);
  check_2d("kernel_h: 2 kernel_w: 3 pad: 1", 1, 2, 4, 5, 2, 3, 1, 1, 1);
  check_2d("kernel_size: 2 dilation: 2 pad: 1", 1, 2, 5, 5, 2, 2, 1, 1, 2);
  /* by hand: one 1x1x2x2 image, kernel 2, pad 1: 9 outputs; output (0, 0) sees only x[0]
   * (its tap (1, 1)) */
  lf *f = lf_new("type: 'Im2col' convolution_param { kernel_size: 2 pad: 1 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 1, 2, 2);
  lf_set(f->bottom[0], (const float[]){1, 2, 3, 4});
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 1, 4, 3, 3);
  LF_FORWARD(f);
  const float tap11[9] = {1, 2, 0, 3, 4, 0, 0, 0, 0};
  for (int i = 0; i < 9; i++) CHECK_NEAR(f->top[0]->data[27 + i], tap11[i], 0);
  /* backward: every pixel is seen by all 4 taps once */
  for (int i = 0; i < 36; i++) f->top[0]->diff[i] = 1;
  f->l->prop_down[0] = true;
  LF_BACKWARD(f);
  for (int i = 0; i < 4; i++) CHECK_NEAR(f->bottom[0]->diff[i], 4, 0);
  lf_free(f);
}

static void test_im2col_nd(void) {
  /* force_nd_im2col on 2-D equals the 2-D path */
  lf *a = lf_new("type: 'Im2col' convolution_param { kernel_size: 3 stride: 2 pad: 1 }", 1, 1);
  lf *b = lf_new("type: 'Im2col' convolution_param { kernel_size: 3 stride: 2 pad: 1 "
                 "force_nd_im2col: true }", 1, 1);
  CHECK(a && b);
  LF_SHAPE(a->bottom[0], 2, 2, 5, 4);
  LF_SHAPE(b->bottom[0], 2, 2, 5, 4);
  nr_gradcheck_fill_uniform(a->bottom[0], -1, 1, 92);
  nr_gradcheck_fill_uniform(b->bottom[0], -1, 1, 92);
  LF_SETUP(a);
  LF_SETUP(b);
  LF_FORWARD(a);
  LF_FORWARD(b);
  CHECK(nr_blob_same_shape(a->top[0], b->top[0]));
  CHECK(lf_maxdiff(a->top[0]->data, b->top[0]->data, a->top[0]->count) == 0);
  LF_GRAD(b, 1e-2f, 1e-3f, -1, NR_GC_ALL);
  lf_free(a);
  lf_free(b);
  /* 3 spatial axes: (1, 2, 3, 4, 3), kernel 2 → (1, 16, 2, 3, 2); tap (1, 0, 1) of channel 1
   * at output (1, 2, 0) reads x[1][2][2][1] */
  lf *f = lf_new("type: 'Im2col' convolution_param { kernel_size: 2 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 2, 3, 4, 3);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 93);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 1, 16, 2, 3, 2);
  LF_FORWARD(f);
  const int64_t row = 1 * 8 + (1 * 2 + 0) * 2 + 1;
  CHECK_NEAR(f->top[0]->data[row * 12 + (1 * 3 + 2) * 2 + 0],
             f->bottom[0]->data[((1 * 3 + 2) * 4 + 2) * 3 + 1], 0);
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_ALL);
  lf_free(f);
  /* channel axis 2 of (2, 3, 2, 4): one spatial axis, 6 images */
  f = lf_new("type: 'Im2col' convolution_param { kernel_size: 3 axis: 2 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 2, 4);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 94);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 2, 3, 6, 2);
  LF_FORWARD(f);
  /* image (1, 2), channel 1, tap 2, output 1 = x[1][2][1][3] */
  CHECK_NEAR(f->top[0]->data[((1 * 3 + 2) * 6 + 1 * 3 + 2) * 2 + 1],
             f->bottom[0]->data[((1 * 3 + 2) * 2 + 1) * 4 + 3], 0);
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_ALL);
  lf_free(f);
}

static void test_im2col_errors(void) {
  lf *f = lf_new("type: 'Im2col' convolution_param { stride: 2 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 1, 3, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "kernel_size");
  lf_free(f);
  f = lf_new("type: 'Im2col' convolution_param { kernel_size: 4 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 1, 3, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "larger than the padded input");
  lf_free(f);
  f = lf_new("type: 'Im2col' convolution_param { kernel_size: 2 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 1, 3, 3);
  LF_SETUP(f);
  LF_SHAPE(f->bottom[0], 1, 3, 3);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "may not change");
  lf_free(f);
}

int main(void) {
  NR_RUN(test_im2col_2d);
  NR_RUN(test_im2col_nd);
  NR_RUN(test_im2col_errors);
  return NR_TEST_EXIT();
}
