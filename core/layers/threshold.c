/* Threshold: y = 1 if x > threshold_param.threshold (default 0), else 0. Runs in place.
 * The step has no gradient: like Caffe's layer, a backward that must reach the bottom is
 * an error (rather than leaving a stale diff there). */
#include "layer.h"

static const Caffe__ThresholdParameter threshold_default = CAFFE__THRESHOLD_PARAMETER__INIT;

static nr_status threshold_reshape(nr_layer *l, nr_error *err) {
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status threshold_forward(nr_layer *l, nr_error *err) {
  const Caffe__ThresholdParameter *p =
      l->param->threshold_param ? l->param->threshold_param : &threshold_default;
  const float t = p->threshold;
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) y[i] = x[i] > t ? 1.0f : 0.0f;
  return NR_OK;
}

static nr_status threshold_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  return nr_err_set(err, NR_ERR_INPUT,
                    "cannot backpropagate to bottom[0]: a threshold has no gradient");
}

const nr_layer_type nr_layer_threshold = {
    .name = "Threshold", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .reshape = threshold_reshape, .forward = threshold_forward,
    .backward = threshold_backward};
