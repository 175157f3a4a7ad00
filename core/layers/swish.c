/* Swish: y = x · σ(β·x), β = swish_param.beta (default 1).
 * Backward: dx = dy · (β·y + σ(β·x)·(1 − β·y)). Forward keeps σ(β·x) (a private buffer,
 * as Caffe keeps its inner sigmoid's output), so backward needs only y: runs in place.
 */
#include <math.h>
#include <stdlib.h>

#include "layer.h"

static const Caffe__SwishParameter swish_default = CAFFE__SWISH_PARAMETER__INIT;

typedef struct swish_priv {
  float *sig; /* σ(β·x) of the last forward */
  int64_t cap;
} swish_priv;

static float beta_of(const nr_layer *l) {
  return (l->param->swish_param ? l->param->swish_param : &swish_default)->beta;
}

static nr_status swish_setup(nr_layer *l, nr_error *err) {
  if (!(l->priv = calloc(1, sizeof(swish_priv))))
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  return NR_OK;
}

static nr_status swish_reshape(nr_layer *l, nr_error *err) {
  swish_priv *q = l->priv;
  const int64_t n = l->bottom[0]->count;
  if (n > q->cap) {
    float *s = realloc(q->sig, (size_t)n * sizeof *s);
    if (!s) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    q->sig = s;
    q->cap = n;
  }
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status swish_forward(nr_layer *l, nr_error *err) {
  swish_priv *q = l->priv;
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data; /* may be x: element i reads only x[i] */
  const float beta = beta_of(l);
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) {
    const float s = 1.0f / (1.0f + expf(-beta * x[i]));
    q->sig[i] = s;
    y[i] = x[i] * s;
  }
  return NR_OK;
}

static nr_status swish_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const swish_priv *q = l->priv;
  const float *y = l->top[0]->data, *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  const float beta = beta_of(l);
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) {
    const float by = beta * y[i];
    dx[i] = dy[i] * (by + q->sig[i] * (1.0f - by));
  }
  return NR_OK;
}

static void swish_destroy(nr_layer *l) {
  swish_priv *q = l->priv;
  if (!q) return;
  free(q->sig);
  free(q);
}

const nr_layer_type nr_layer_swish = {
    .name = "Swish", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = swish_setup, .reshape = swish_reshape, .forward = swish_forward,
    .backward = swish_backward, .destroy = swish_destroy};
