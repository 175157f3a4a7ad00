/* ELU: y = x for x > 0, alpha (exp(x) - 1) otherwise.
 * Backward: dy for x > 0, dy (y + alpha) otherwise. For alpha > 0 the sign of y equals
 * the sign of x, so the layer reads only y and runs in place. */
#include <math.h>

#include "layer.h"

static const Caffe__ELUParameter elu_default = CAFFE__ELUPARAMETER__INIT;

static float alpha_of(const nr_layer *l) {
  return (l->param->elu_param ? l->param->elu_param : &elu_default)->alpha;
}

static nr_status elu_reshape(nr_layer *l, nr_error *err) {
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status elu_forward(nr_layer *l, nr_error *err) {
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  const float alpha = alpha_of(l);
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i];
    y[i] = v > 0.0f ? v : alpha * expm1f(v);
  }
  return NR_OK;
}

static nr_status elu_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const float *x = l->bottom[0]->data; /* == y when in place */
  const float *y = l->top[0]->data;
  const float *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  const float alpha = alpha_of(l);
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (x[i] > 0.0f ? 1.0f : y[i] + alpha);
  return NR_OK;
}

const nr_layer_type nr_layer_elu = {
    .name = "ELU", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .reshape = elu_reshape, .forward = elu_forward, .backward = elu_backward};
