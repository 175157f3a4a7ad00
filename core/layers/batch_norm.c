/* BatchNorm: Caffe's BatchNormLayer, per-channel normalization without scale/shift (a
 * following Scale layer with bias_term adds those).
 *
 * Blobs (all (C) except the last, zero at start): running mean sum, running variance sum,
 * and a [1] moving-average normaliser; the stored statistics are sum-weighted, so the
 * estimates are blobs[0..1] / blobs[2]. Caffe forces these blobs' lr_mult to 0; here that
 * is the net's job (it must not let a solver update them).
 * use_global_stats (default: phase == TEST) normalizes with the stored statistics;
 * otherwise with the batch's (mean and biased variance over N and the spatial axes) and
 * the running sums are updated: s = s·f + 1, mean = mean·f + μ, var = var·f + m/(m−1)·σ²
 * with f = moving_average_fraction and m = N·spatial. y = (x − μ) / sqrt(σ² + eps).
 * Backward, batch statistics:
 *   dx = (dy − mean(dy) − mean(dy·y)·y) / sqrt(σ² + eps), means per channel;
 * global statistics: dx = dy / sqrt(var + eps). Works in place (top == bottom).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "parallel.h"
#include "nr_math.h"

static const Caffe__BatchNormParameter default_param = CAFFE__BATCH_NORM_PARAMETER__INIT;

typedef struct bn_priv {
  bool global;
  float maf, eps;
  int64_t C;
  float *mean, *inv_std; /* (C) of the last forward */
  float *y;              /* normalized output saved for backward (count) */
  int64_t cap;
} bn_priv;

static nr_status bn_setup(nr_layer *l, nr_error *err) {
  const Caffe__BatchNormParameter *p =
      l->param->batch_norm_param ? l->param->batch_norm_param : &default_param;
  bn_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  q->global = p->has_use_global_stats ? p->use_global_stats : l->phase == NR_TEST;
  q->maf = p->moving_average_fraction;
  q->eps = p->eps;
  const nr_blob *b = l->bottom[0];
  q->C = b->num_axes == 1 ? 1 : (b->num_axes == 0 ? 1 : b->shape[1]);
  int64_t one = 1;
  NR_TRY(nr_layer_add_param(l, 1, &q->C, NULL, err));
  NR_TRY(nr_layer_add_param(l, 1, &q->C, NULL, err));
  NR_TRY(nr_layer_add_param(l, 1, &one, NULL, err));
  q->mean = calloc((size_t)q->C, sizeof *q->mean);
  q->inv_std = calloc((size_t)q->C, sizeof *q->inv_std);
  if (!q->mean || !q->inv_std) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  return NR_OK;
}

static nr_status bn_reshape(nr_layer *l, nr_error *err) {
  bn_priv *q = l->priv;
  const nr_blob *b = l->bottom[0];
  int64_t C = b->num_axes >= 2 ? b->shape[1] : 1;
  if (b->num_axes < 1)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[0] has 0 axes, expected at least 1");
  if (C != q->C)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[0] has %lld channels, expected %lld",
                      (long long)C, (long long)q->C);
  if (l->top[0] != b) NR_TRY(nr_blob_reshape_like(l->top[0], b, err));
  if (b->count > q->cap) {
    float *y = realloc(q->y, (size_t)b->count * sizeof *y);
    if (!y) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    q->y = y;
    q->cap = b->count;
  }
  return NR_OK;
}

/* The passes split over the helper threads (parallel.h): statistics and the backward by
 * channel (each channel's sums in image order, whatever the threads), the normalization by
 * plane. */
typedef struct bn_job {
  bn_priv *q;
  nr_layer *l;
  int64_t N, C, S;
  const float *x, *dy;
  float *y, *dx;
} bn_job;

static void stats_range(void *ctx, int64_t c0, int64_t c1) {
  const bn_job *j = ctx;
  bn_priv *q = j->q;
  const int64_t N = j->N, C = j->C, S = j->S;
  const double m = (double)N * S;
  for (int64_t c = c0; c < c1; c++) {
    double sum = 0, sq = 0;
    for (int64_t n = 0; n < N; n++) {
      const float *xc = j->x + (n * C + c) * S;
      for (int64_t k = 0; k < S; k++) sum += xc[k];
    }
    double mu = m > 0 ? sum / m : 0;
    for (int64_t n = 0; n < N; n++) {
      const float *xc = j->x + (n * C + c) * S;
      for (int64_t k = 0; k < S; k++) sq += (xc[k] - mu) * (xc[k] - mu);
    }
    double var = m > 0 ? sq / m : 0;
    q->mean[c] = (float)mu;
    q->inv_std[c] = (float)(1.0 / sqrt(var + q->eps));
    const double corr = m > 1 ? m / (m - 1) : 1;
    j->l->blobs[0]->data[c] = j->l->blobs[0]->data[c] * q->maf + (float)mu;
    j->l->blobs[1]->data[c] = j->l->blobs[1]->data[c] * q->maf + (float)(corr * var);
  }
}

static void normalize_range(void *ctx, int64_t p0, int64_t p1) {
  const bn_job *j = ctx;
  const bn_priv *q = j->q;
  const int64_t C = j->C, S = j->S;
  for (int64_t p = p0; p < p1; p++) {
    const int64_t c = p % C;
    const float *xc = j->x + p * S;
    float *yc = j->y + p * S, *sv = q->y + p * S;
    const float mu = q->mean[c], is = q->inv_std[c];
    for (int64_t k = 0; k < S; k++) {
      float v = (xc[k] - mu) * is;
      yc[k] = v;
      sv[k] = v;
    }
  }
}

static void back_range(void *ctx, int64_t c0, int64_t c1) {
  const bn_job *j = ctx;
  const bn_priv *q = j->q;
  const int64_t N = j->N, C = j->C, S = j->S;
  const float *dy = j->dy, *y = q->y;
  float *dx = j->dx;
  for (int64_t c = c0; c < c1; c++) {
    const float is = q->inv_std[c];
    if (q->global) {
      for (int64_t n = 0; n < N; n++) {
        const int64_t o = (n * C + c) * S;
        for (int64_t k = 0; k < S; k++) dx[o + k] = dy[o + k] * is;
      }
      continue;
    }
    double sdy = 0, sdyy = 0;
    for (int64_t n = 0; n < N; n++) {
      const int64_t o = (n * C + c) * S;
      for (int64_t k = 0; k < S; k++) {
        sdy += dy[o + k];
        sdyy += (double)dy[o + k] * y[o + k];
      }
    }
    const double m = (double)N * S;
    const float mdy = (float)(sdy / m), mdyy = (float)(sdyy / m);
    for (int64_t n = 0; n < N; n++) {
      const int64_t o = (n * C + c) * S;
      for (int64_t k = 0; k < S; k++) dx[o + k] = (dy[o + k] - mdy - mdyy * y[o + k]) * is;
    }
  }
}

static nr_status bn_forward(nr_layer *l, nr_error *err) {
  (void)err;
  bn_priv *q = l->priv;
  const nr_blob *b = l->bottom[0];
  const int64_t C = q->C, N = b->num_axes >= 1 ? b->shape[0] : 1;
  const int64_t S = b->count / (N * C > 0 ? N * C : 1);
  bn_job j = {q, l, N, C, S, b->data, NULL, l->top[0]->data, NULL};
  if (q->global) {
    float *s = l->blobs[2]->data;
    const float f = s[0] == 0 ? 0 : 1 / s[0];
    for (int64_t c = 0; c < C; c++) {
      q->mean[c] = f * l->blobs[0]->data[c];
      q->inv_std[c] = 1.0f / sqrtf(f * l->blobs[1]->data[c] + q->eps);
    }
  } else {
    nr__parallel_for(C, nr__parallel_grain(N * S), stats_range, &j);
    l->blobs[2]->data[0] = l->blobs[2]->data[0] * q->maf + 1;
  }
  nr__parallel_for(N * C, nr__parallel_grain(S), normalize_range, &j);
  return NR_OK;
}

static nr_status bn_backward(nr_layer *l, nr_error *err) {
  (void)err;
  bn_priv *q = l->priv;
  if (!l->prop_down[0]) return NR_OK;
  const nr_blob *b = l->bottom[0];
  const int64_t C = q->C, N = b->num_axes >= 1 ? b->shape[0] : 1;
  const int64_t S = b->count / (N * C > 0 ? N * C : 1);
  bn_job j = {q, l, N, C, S, NULL, l->top[0]->diff, NULL, b->diff};
  nr__parallel_for(C, nr__parallel_grain(N * S), back_range, &j);
  return NR_OK;
}

static void bn_destroy(nr_layer *l) {
  bn_priv *q = l->priv;
  if (!q) return;
  free(q->mean);
  free(q->inv_std);
  free(q->y);
  free(q);
  l->priv = NULL;
}

const nr_layer_type nr_layer_batch_norm = {
    .name = "BatchNorm",
    .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = bn_setup, .reshape = bn_reshape, .forward = bn_forward,
    .backward = bn_backward, .destroy = bn_destroy};
