/* MVN: Caffe's MVNLayer, mean-variance normalization of each row, where a row is one
 * (n, c) plane of a (N, C, H, W) bottom, or with mvn_param.across_channels one whole item
 * n. y = x − mean(row); with normalize_variance (default true) then y /= σ + eps, σ the
 * row's standard deviation (biased) and eps mvn_param.eps (default 1e-9, added to σ, not
 * to the variance, as Caffe). Like Caffe, the layer reads the bottom through the legacy
 * num/channels/height/width view: at most 4 axes, and the top is 4-D (a (N, C) bottom
 * gives a (N, C, 1, 1) top).
 * Backward, per row of n values: dx = dy − mean(dy) without variance normalization, else
 * dx = (dy − mean(dy) − y·mean(y·dy)) / (σ + eps), Caffe's formula. Runs in place.
 */
#include <math.h>
#include <stdlib.h>

#include "layer.h"
#include "nr_math.h"

static const Caffe__MVNParameter mvn_default = CAFFE__MVNPARAMETER__INIT;

typedef struct mvn_priv {
  bool norm_var;
  int64_t rows, dim;
  float eps;
  float *sd; /* σ + eps per row */
  int64_t cap;
} mvn_priv;

static nr_status mvn_setup(nr_layer *l, nr_error *err) {
  const Caffe__MVNParameter *p = l->param->mvn_param ? l->param->mvn_param : &mvn_default;
  mvn_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  q->norm_var = p->normalize_variance;
  q->eps = p->eps;
  return NR_OK;
}

static nr_status mvn_reshape(nr_layer *l, nr_error *err) {
  const Caffe__MVNParameter *p = l->param->mvn_param ? l->param->mvn_param : &mvn_default;
  mvn_priv *q = l->priv;
  const nr_blob *b = l->bottom[0];
  if (b->num_axes > 4)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom has %d axes; MVN reads (num, channels, height, width): at most 4",
                      b->num_axes);
  const int64_t num = nr_blob_legacy_dim(b, 0), ch = nr_blob_legacy_dim(b, 1);
  q->rows = p->across_channels ? num : num * ch;
  q->dim = q->rows ? b->count / q->rows : 0;
  if (q->rows > q->cap) {
    float *s = realloc(q->sd, (size_t)q->rows * sizeof *s);
    if (!s) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    q->sd = s;
    q->cap = q->rows;
  }
  return nr_blob_reshape4(l->top[0], num, ch, nr_blob_legacy_dim(b, 2), nr_blob_legacy_dim(b, 3),
                          err);
}

static nr_status mvn_forward(nr_layer *l, nr_error *err) {
  mvn_priv *q = l->priv;
  const int64_t d = q->dim;
  for (int64_t r = 0; r < q->rows; r++) {
    const float *x = l->bottom[0]->data + r * d;
    float *y = l->top[0]->data + r * d;
    double s = 0;
    for (int64_t j = 0; j < d; j++) s += x[j];
    const float mean = (float)(s / (double)d);
    double ss = 0;
    for (int64_t j = 0; j < d; j++) {
      y[j] = x[j] - mean;
      ss += (double)y[j] * y[j];
    }
    if (!q->norm_var) continue;
    q->sd[r] = (float)sqrt(ss / (double)d) + q->eps;
    const float inv = 1.0f / q->sd[r];
    for (int64_t j = 0; j < d; j++) y[j] *= inv;
  }
  return NR_OK;
}

static nr_status mvn_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const mvn_priv *q = l->priv;
  const int64_t d = q->dim;
  for (int64_t r = 0; r < q->rows; r++) {
    const float *y = l->top[0]->data + r * d, *dy = l->top[0]->diff + r * d;
    float *dx = l->bottom[0]->diff + r * d;
    double sdy = 0, sydy = 0;
    for (int64_t j = 0; j < d; j++) {
      sdy += dy[j];
      sydy += (double)y[j] * dy[j];
    }
    const float mdy = (float)(sdy / (double)d);
    if (!q->norm_var) {
      for (int64_t j = 0; j < d; j++) dx[j] = dy[j] - mdy;
      continue;
    }
    const float mydy = (float)(sydy / (double)d), inv = 1.0f / q->sd[r];
    for (int64_t j = 0; j < d; j++) dx[j] = (dy[j] - mdy - y[j] * mydy) * inv;
  }
  return NR_OK;
}

static void mvn_destroy(nr_layer *l) {
  mvn_priv *q = l->priv;
  if (!q) return;
  free(q->sd);
  free(q);
}

const nr_layer_type nr_layer_mvn = {
    .name = "MVN", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = mvn_setup, .reshape = mvn_reshape, .forward = mvn_forward,
    .backward = mvn_backward, .destroy = mvn_destroy};
