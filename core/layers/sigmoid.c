/* Sigmoid: y = 1 / (1 + exp(-x)). Backward uses y only, so in place is fine. */
#include <math.h>

#include "layer.h"

static nr_status sigmoid_reshape(nr_layer *l, nr_error *err) {
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status sigmoid_forward(nr_layer *l, nr_error *err) {
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  const int64_t n = l->bottom[0]->count;
  /* 0.5 tanh(x/2) + 0.5: as Caffe, and never overflows. */
  for (int64_t i = 0; i < n; i++) y[i] = 0.5f * tanhf(0.5f * x[i]) + 0.5f;
  return NR_OK;
}

static nr_status sigmoid_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const float *y = l->top[0]->data;
  const float *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
  return NR_OK;
}

const nr_layer_type nr_layer_sigmoid = {
    .name = "Sigmoid", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .reshape = sigmoid_reshape, .forward = sigmoid_forward, .backward = sigmoid_backward};
