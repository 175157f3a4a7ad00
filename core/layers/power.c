/* Power: y = (shift + scale x)^power.
 * dy/dx = power scale (shift + scale x)^(power - 1). Backward needs x; when the layer runs
 * in place (top == bottom) forward keeps a copy of x in priv (a private blob). */
#include <math.h>

#include "layer.h"
#include "nr_math.h"

static const Caffe__PowerParameter power_default = CAFFE__POWER_PARAMETER__INIT;

static const Caffe__PowerParameter *params(const nr_layer *l) {
  return l->param->power_param ? l->param->power_param : &power_default;
}

/* Whether backward reads x (and so needs a copy when in place). */
static bool needs_x(const Caffe__PowerParameter *p) {
  return p->power * p->scale != 0.0f && p->power != 1.0f;
}

static nr_status power_setup(nr_layer *l, nr_error *err) {
  if (l->top[0] == l->bottom[0] && needs_x(params(l))) {
    nr_blob *saved = NULL;
    NR_TRY(nr_blob_create("power_saved_x", NULL, &saved, err));
    l->priv = saved;
  }
  return NR_OK;
}

static void power_destroy(nr_layer *l) { nr_blob_destroy(l->priv); }

static nr_status power_reshape(nr_layer *l, nr_error *err) {
  if (l->priv) NR_TRY(nr_blob_reshape_like(l->priv, l->bottom[0], err));
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status power_forward(nr_layer *l, nr_error *err) {
  const Caffe__PowerParameter *p = params(l);
  const float power = p->power, scale = p->scale, shift = p->shift;
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  const int64_t n = l->bottom[0]->count;
  if (l->priv) nr_copy(n, x, ((nr_blob *)l->priv)->data);
  if (power * scale == 0.0f) {
    /* y does not depend on x. */
    const float v = power == 0.0f ? 1.0f : powf(shift, power);
    for (int64_t i = 0; i < n; i++) y[i] = v;
  } else if (power == 1.0f) {
    for (int64_t i = 0; i < n; i++) y[i] = shift + scale * x[i];
  } else if (power == 2.0f) {
    for (int64_t i = 0; i < n; i++) {
      const float t = shift + scale * x[i];
      y[i] = t * t;
    }
  } else {
    for (int64_t i = 0; i < n; i++) y[i] = powf(shift + scale * x[i], power);
  }
  return NR_OK;
}

static nr_status power_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const Caffe__PowerParameter *p = params(l);
  const float power = p->power, scale = p->scale, shift = p->shift;
  const float diff_scale = power * scale;
  const float *x = l->priv ? ((nr_blob *)l->priv)->data : l->bottom[0]->data;
  const float *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  const int64_t n = l->bottom[0]->count;
  if (diff_scale == 0.0f) {
    nr_set(n, 0.0f, dx);
  } else if (power == 1.0f) {
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * diff_scale;
  } else if (power == 2.0f) {
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * diff_scale * (shift + scale * x[i]);
  } else {
    const float pm1 = power - 1.0f;
    for (int64_t i = 0; i < n; i++)
      dx[i] = dy[i] * diff_scale * powf(shift + scale * x[i], pm1);
  }
  return NR_OK;
}

const nr_layer_type nr_layer_power = {
    .name = "Power", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = power_setup, .reshape = power_reshape, .forward = power_forward,
    .backward = power_backward, .destroy = power_destroy};
