/* Swish: y = x · σ(β·x), β = swish_param.beta (default 1).
 * Backward: dx = dy · (β·y + σ(β·x)·(1 − β·y)), recomputing σ(β·x) from x; not in place
 * (x is needed). */
#include <math.h>

#include "layer.h"

static const Caffe__SwishParameter swish_default = CAFFE__SWISH_PARAMETER__INIT;

static float beta_of(const nr_layer *l) {
  return (l->param->swish_param ? l->param->swish_param : &swish_default)->beta;
}

static float sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

static nr_status swish_setup(nr_layer *l, nr_error *err) {
  if (l->top[0] == l->bottom[0])
    return nr_err_set(err, NR_ERR_INPUT, "cannot run in place (its backward reads the input)");
  return NR_OK;
}

static nr_status swish_reshape(nr_layer *l, nr_error *err) {
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status swish_forward(nr_layer *l, nr_error *err) {
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  const float beta = beta_of(l);
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(beta * x[i]);
  return NR_OK;
}

static nr_status swish_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const float *x = l->bottom[0]->data, *y = l->top[0]->data, *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  const float beta = beta_of(l);
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) {
    const float by = beta * y[i];
    dx[i] = dy[i] * (by + sigmoidf(beta * x[i]) * (1.0f - by));
  }
  return NR_OK;
}

const nr_layer_type nr_layer_swish = {
    .name = "Swish", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = swish_setup, .reshape = swish_reshape, .forward = swish_forward,
    .backward = swish_backward};
