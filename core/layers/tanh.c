/* TanH: y = tanh(x). Backward uses y only, so in place is fine. */
#include <math.h>

#include "layer.h"

static nr_status tanh_reshape(nr_layer *l, nr_error *err) {
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status tanh_forward(nr_layer *l, nr_error *err) {
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
  return NR_OK;
}

static nr_status tanh_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const float *y = l->top[0]->data;
  const float *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
  return NR_OK;
}

const nr_layer_type nr_layer_tanh = {
    .name = "TanH", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .reshape = tanh_reshape, .forward = tanh_forward, .backward = tanh_backward};
