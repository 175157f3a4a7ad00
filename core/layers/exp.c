/* Exp: y = base^(shift + scale x) (base -1 = e), computed as outer * exp(inner x) with
 * inner = scale ln(base) and outer = base^shift. dy/dx = inner y: backward reads y only,
 * so the layer runs in place. */
#include <math.h>
#include <stdlib.h>

#include "layer.h"

static const Caffe__ExpParameter exp_default = CAFFE__EXP_PARAMETER__INIT;

typedef struct exp_priv {
  float inner, outer;
} exp_priv;

static nr_status exp_setup(nr_layer *l, nr_error *err) {
  const Caffe__ExpParameter *p = l->param->exp_param ? l->param->exp_param : &exp_default;
  if (p->base_ != -1.0f && !(p->base_ > 0.0f))
    return nr_err_set(err, NR_ERR_INPUT,
                      "exp_param.base must be strictly positive (or -1 for e), got %g",
                      (double)p->base_);
  exp_priv *st = malloc(sizeof *st);
  if (!st) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  const double log_base = p->base_ == -1.0f ? 1.0 : log((double)p->base_);
  st->inner = (float)(log_base * p->scale);
  st->outer = p->shift == 0.0f ? 1.0f : (float)exp(log_base * p->shift);
  l->priv = st;
  return NR_OK;
}

static void exp_destroy(nr_layer *l) { free(l->priv); }

static nr_status exp_reshape(nr_layer *l, nr_error *err) {
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status exp_forward(nr_layer *l, nr_error *err) {
  const exp_priv *st = l->priv;
  const float inner = st->inner, outer = st->outer;
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) y[i] = outer * expf(inner * x[i]);
  return NR_OK;
}

static nr_status exp_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const float inner = ((const exp_priv *)l->priv)->inner;
  const float *y = l->top[0]->data;
  const float *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * inner;
  return NR_OK;
}

const nr_layer_type nr_layer_exp = {
    .name = "Exp", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = exp_setup, .reshape = exp_reshape, .forward = exp_forward,
    .backward = exp_backward, .destroy = exp_destroy};
