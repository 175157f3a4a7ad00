/* AbsVal: y = |x|. Backward needs the sign of x, which y loses, so (as in Caffe) the
 * layer refuses to run in place. */
#include "layer.h"

static nr_status absval_setup(nr_layer *l, nr_error *err) {
  if (l->top[0] == l->bottom[0])
    return nr_err_set(err, NR_ERR_INPUT, "AbsVal cannot run in place (top == bottom)");
  return NR_OK;
}

static nr_status absval_reshape(nr_layer *l, nr_error *err) {
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status absval_forward(nr_layer *l, nr_error *err) {
  const float *restrict x = l->bottom[0]->data;
  float *restrict y = l->top[0]->data;
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? -x[i] : x[i];
  return NR_OK;
}

static nr_status absval_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const float *restrict x = l->bottom[0]->data;
  const float *restrict dy = l->top[0]->diff;
  float *restrict dx = l->bottom[0]->diff;
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) {
    const float s = (float)(x[i] > 0.0f) - (float)(x[i] < 0.0f);
    dx[i] = dy[i] * s;
  }
  return NR_OK;
}

const nr_layer_type nr_layer_absval = {
    .name = "AbsVal", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = absval_setup, .reshape = absval_reshape, .forward = absval_forward,
    .backward = absval_backward};
