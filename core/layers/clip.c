/* Clip: y = max(min, min(x, max)) with clip_param.min and .max (both required, as in
 * Caffe's schema, and min <= max). Backward: dy where min <= x <= max, 0 elsewhere (the
 * bounds themselves pass the gradient, as Caffe). In place, x is gone by the backward:
 * the gradient then passes where min < y < max (an input exactly on a bound gets 0;
 * Caffe in place would pass every gradient, clipped or not). */
#include "layer.h"

static nr_status clip_setup(nr_layer *l, nr_error *err) {
  const Caffe__ClipParameter *p = l->param->clip_param;
  if (!p || !p->has_min || !p->has_max)
    return nr_err_set(err, NR_ERR_INPUT,
                      "clip_param { min: .. max: .. } is required (both bounds)");
  if (!(p->min <= p->max))
    return nr_err_set(err, NR_ERR_INPUT, "clip_param min %g is greater than max %g",
                      (double)p->min, (double)p->max);
  return NR_OK;
}

static nr_status clip_reshape(nr_layer *l, nr_error *err) {
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status clip_forward(nr_layer *l, nr_error *err) {
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  const float lo = l->param->clip_param->min, hi = l->param->clip_param->max;
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i] < hi ? x[i] : hi;
    y[i] = v > lo ? v : lo;
  }
  return NR_OK;
}

static nr_status clip_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const float *x = l->bottom[0]->data, *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  const float lo = l->param->clip_param->min, hi = l->param->clip_param->max;
  const int64_t n = l->bottom[0]->count;
  if (l->top[0] == l->bottom[0]) /* in place: x holds y */
    for (int64_t i = 0; i < n; i++) dx[i] = (x[i] > lo && x[i] < hi) ? dy[i] : 0.0f;
  else
    for (int64_t i = 0; i < n; i++) dx[i] = (x[i] >= lo && x[i] <= hi) ? dy[i] : 0.0f;
  return NR_OK;
}

const nr_layer_type nr_layer_clip = {
    .name = "Clip", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = clip_setup, .reshape = clip_reshape, .forward = clip_forward,
    .backward = clip_backward};
