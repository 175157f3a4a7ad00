/* Log: y = log_base(shift + scale x) (base -1 = natural log).
 * dy/dx = scale / (ln(base) (shift + scale x)). Backward needs x; when the layer runs in
 * place forward keeps a copy of x in priv (a private blob). */
#include <math.h>

#include "layer.h"
#include "nr_math.h"

static const Caffe__LogParameter log_default = CAFFE__LOG_PARAMETER__INIT;

static const Caffe__LogParameter *params(const nr_layer *l) {
  return l->param->log_param ? l->param->log_param : &log_default;
}

static nr_status log_setup(nr_layer *l, nr_error *err) {
  const Caffe__LogParameter *p = params(l);
  if (p->base_ != -1.0f && !(p->base_ > 0.0f))
    return nr_err_set(err, NR_ERR_INPUT,
                      "log_param.base must be strictly positive (or -1 for e), got %g",
                      (double)p->base_);
  if (l->top[0] == l->bottom[0]) {
    nr_blob *saved = NULL;
    NR_TRY(nr_blob_create("log_saved_x", NULL, &saved, err));
    l->priv = saved;
  }
  return NR_OK;
}

static void log_destroy(nr_layer *l) { nr_blob_destroy(l->priv); }

static float base_scale(const Caffe__LogParameter *p) {
  return p->base_ == -1.0f ? 1.0f : (float)(1.0 / log((double)p->base_));
}

static nr_status log_reshape(nr_layer *l, nr_error *err) {
  if (l->priv) NR_TRY(nr_blob_reshape_like(l->priv, l->bottom[0], err));
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status log_forward(nr_layer *l, nr_error *err) {
  const Caffe__LogParameter *p = params(l);
  const float scale = p->scale, shift = p->shift, bs = base_scale(p);
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  const int64_t n = l->bottom[0]->count;
  if (l->priv) nr_copy(n, x, ((nr_blob *)l->priv)->data);
  for (int64_t i = 0; i < n; i++) y[i] = bs * logf(shift + scale * x[i]);
  return NR_OK;
}

static nr_status log_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const Caffe__LogParameter *p = params(l);
  const float scale = p->scale, shift = p->shift, num = scale * base_scale(p);
  const float *x = l->priv ? ((nr_blob *)l->priv)->data : l->bottom[0]->data;
  const float *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * num / (shift + scale * x[i]);
  return NR_OK;
}

const nr_layer_type nr_layer_log = {
    .name = "Log", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = log_setup, .reshape = log_reshape, .forward = log_forward,
    .backward = log_backward, .destroy = log_destroy};
