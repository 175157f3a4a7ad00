/* BNLL (softplus): y = log(1 + exp(x)), computed without overflow.
 * dy/dx = sigmoid(x) = 1 - exp(-y), so backward reads y only and the layer runs in place
 * (Caffe reads x; same values). */
#include <math.h>

#include "layer.h"

static nr_status bnll_reshape(nr_layer *l, nr_error *err) {
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status bnll_forward(nr_layer *l, nr_error *err) {
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i];
    y[i] = v > 0.0f ? v + log1pf(expf(-v)) : log1pf(expf(v));
  }
  return NR_OK;
}

static nr_status bnll_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const float *y = l->top[0]->data;
  const float *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * -expm1f(-y[i]);
  return NR_OK;
}

const nr_layer_type nr_layer_bnll = {
    .name = "BNLL", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .reshape = bnll_reshape, .forward = bnll_forward, .backward = bnll_backward};
