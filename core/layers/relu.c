/* ReLU: y = max(x, 0) + negative_slope * min(x, 0) (leaky when negative_slope != 0).
 * May run in place: backward reads the sign of x, which y keeps (slope >= 0). */
#include "layer.h"

/* The loops below may run in place (y = x, dx = dy); element i reads only index i, so
 * telling the compiler to vectorize without an overlap check is safe. */
#if defined(__clang__)
#define NR_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define NR_IVDEP _Pragma("GCC ivdep")
#else
#define NR_IVDEP
#endif

static const Caffe__ReLUParameter relu_default = CAFFE__RE_LUPARAMETER__INIT;

static float slope_of(const nr_layer *l) {
  const Caffe__ReLUParameter *p = l->param->relu_param ? l->param->relu_param : &relu_default;
  return p->negative_slope;
}

static nr_status relu_reshape(nr_layer *l, nr_error *err) {
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status relu_forward(nr_layer *l, nr_error *err) {
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data; /* may alias x (in place): element-wise, so fine */
  const float ns = slope_of(l);
  const int64_t n = l->bottom[0]->count;
  NR_IVDEP
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i];
    y[i] = (v > 0.0f ? v : 0.0f) + ns * (v < 0.0f ? v : 0.0f);
  }
  return NR_OK;
}

static nr_status relu_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const float *x = l->bottom[0]->data;
  const float *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  const float ns = slope_of(l);
  const int64_t n = l->bottom[0]->count;
  NR_IVDEP
  for (int64_t i = 0; i < n; i++) {
    const float scale = x[i] > 0.0f ? 1.0f : ns, g = dy[i]; /* (this form vectorizes) */
    dx[i] = g * scale;
  }
  return NR_OK;
}

const nr_layer_type nr_layer_relu = {
    .name = "ReLU", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .reshape = relu_reshape, .forward = relu_forward, .backward = relu_backward};
