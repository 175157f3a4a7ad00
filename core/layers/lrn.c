/* LRN: Caffe's local response normalization, top = x · scale^(−β).
 *
 * ACROSS_CHANNELS: scale = k + α/n · Σ x² over the n = local_size channels centred on c
 *   (from c − (n−1)/2 to c + n/2 − ... clipped to the valid channels).
 * WITHIN_CHANNEL: scale = 1 + α · avg(x²) over an n×n window centred on (h, w), averaged as
 *   Caffe's AVE pooling with pad (n−1)/2 (the divisor counts the padded area). Caffe builds
 *   this mode from Power/Pooling layers with shift 1, so `k` is not used here either.
 * local_size must be odd. Backward (both modes):
 *   dx = dy · scale^(−β) − 2αβ/n · x · Σ_{windows containing x} dy · y / scale
 * with n replaced by the window's divisor within a channel.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "nr_math.h"
#include "parallel.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

static const Caffe__LRNParameter default_param = CAFFE__LRNPARAMETER__INIT;

typedef struct lrn_priv {
  int size, pre;
  float alpha, beta, k;
  bool within;
  float *scale; /* one per element */
  float *tmp;   /* WITHIN_CHANNEL: per plane of sums / per-element ratios */
  int64_t cap;
} lrn_priv;

static nr_status lrn_setup(nr_layer *l, nr_error *err) {
  const Caffe__LRNParameter *p = l->param->lrn_param ? l->param->lrn_param : &default_param;
  lrn_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  if (p->local_size % 2 == 0)
    return nr_err_set(err, NR_ERR_INPUT, "local_size must be odd, got %u", p->local_size);
  q->size = (int)p->local_size;
  q->pre = (q->size - 1) / 2;
  q->alpha = p->alpha;
  q->beta = p->beta;
  q->k = p->k;
  q->within = p->norm_region == CAFFE__LRNPARAMETER__NORM_REGION__WITHIN_CHANNEL;
  return NR_OK;
}

static nr_status lrn_reshape(nr_layer *l, nr_error *err) {
  lrn_priv *q = l->priv;
  const nr_blob *b = l->bottom[0];
  if (b->num_axes != 4)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[0] has %d axes, expected 4 (num, channels, height, width)",
                      b->num_axes);
  NR_TRY(nr_blob_reshape_like(l->top[0], b, err));
  if (b->count > q->cap) {
    float *s = realloc(q->scale, (size_t)b->count * sizeof *s);
    if (s) q->scale = s;
    float *t = realloc(q->tmp, (size_t)b->count * sizeof *t);
    if (t) q->tmp = t;
    if (!s || !t) return nr_err_set(err, NR_ERR_NOMEM, "out of memory for LRN buffers");
    q->cap = b->count;
  }
  return NR_OK;
}

/* Window of (h, w) within a plane, as Caffe's AVE pooling (kernel n, stride 1, pad pre):
 * the clipped [hs, he) × [ws, we) and the divisor counting padding. */
static void within_window(const lrn_priv *q, int64_t H, int64_t W, int64_t h, int64_t w,
                          int64_t *hs, int64_t *he, int64_t *ws, int64_t *we, float *div) {
  int64_t a = h - q->pre, b = a + q->size, c = w - q->pre, d = c + q->size;
  if (b > H + q->pre) b = H + q->pre;
  if (d > W + q->pre) d = W + q->pre;
  *div = (float)((b - a) * (d - c));
  *hs = a < 0 ? 0 : a;
  *he = b > H ? H : b;
  *ws = c < 0 ? 0 : c;
  *we = d > W ? W : d;
}

/* The work of one pass, split over the helper threads (parallel.h): images for the
 * across-channel sums, planes within a channel, element ranges for the rest. Each output
 * element is computed by one thread in the same order, so the bits do not depend on the
 * thread count. */
typedef struct lrn_job {
  const lrn_priv *q;
  int64_t C, H, W, S;
  const float *x, *y, *dy, *scale;
  float *out, *r;
  _Atomic bool failed; /* out of memory in a part (backward's running sums) */
} lrn_job;

static void scale_across(void *ctx, int64_t n0, int64_t n1) {
  const lrn_job *j = ctx;
  const lrn_priv *q = j->q;
  const int64_t C = j->C, S = j->S;
  const float a_n = q->alpha / (float)q->size;
  for (int64_t n = n0; n < n1; n++) {
    const float *xn = j->x + n * C * S;
    float *sn = j->out + n * C * S;
    /* running sum of squares over the channel window (image n's slice of tmp) */
    float *acc = j->r + n * S;
    memset(acc, 0, (size_t)S * sizeof *acc);
    for (int64_t c = 0; c < q->size - q->pre - 1 && c < C; c++)
      for (int64_t s = 0; s < S; s++) acc[s] += xn[c * S + s] * xn[c * S + s];
    for (int64_t c = 0; c < C; c++) {
      int64_t add = c + q->size - q->pre - 1, sub = c - q->pre - 1;
      if (add < C)
        for (int64_t s = 0; s < S; s++) acc[s] += xn[add * S + s] * xn[add * S + s];
      if (sub >= 0)
        for (int64_t s = 0; s < S; s++) acc[s] -= xn[sub * S + s] * xn[sub * S + s];
      for (int64_t s = 0; s < S; s++) sn[c * S + s] = q->k + a_n * acc[s];
    }
  }
}

static void scale_within(void *ctx, int64_t p0, int64_t p1) {
  const lrn_job *j = ctx;
  const lrn_priv *q = j->q;
  const int64_t H = j->H, W = j->W, S = j->S;
  for (int64_t pl = p0; pl < p1; pl++) {
    const float *xp = j->x + pl * S;
    float *sp = j->out + pl * S;
    for (int64_t h = 0; h < H; h++)
      for (int64_t w = 0; w < W; w++) {
        int64_t hs, he, ws, we;
        float div;
        within_window(q, H, W, h, w, &hs, &he, &ws, &we, &div);
        float sum = 0;
        for (int64_t i = hs; i < he; i++)
          for (int64_t jj = ws; jj < we; jj++) sum += xp[i * W + jj] * xp[i * W + jj];
        sp[h * W + w] = 1.0f + q->alpha * sum / div;
      }
  }
}

/* out[i] = v[i] · scale[i]^(−β), i in [i0, i1). β = 0.75 (every Caffe net's LRN) as
 * v / √(s·√s): correctly rounded square roots and a division, four at a time, instead of
 * a powf call per element (GoogLeNet's norm2 forward 25.8 -> 8.0 ms at batch 10); within
 * 3 ulp of the powf form's value. */
static void times_pow(const float *v, const float *scale, float beta, float *out, int64_t i0,
                      int64_t i1) {
  if (beta == 0.75f) {
    int64_t i = i0;
#ifdef __SSE2__ /* (sqrtf's errno keeps the compiler from vectorizing it) */
    for (; i + 4 <= i1; i += 4) {
      const __m128 sc = _mm_loadu_ps(scale + i);
      const __m128 p = _mm_sqrt_ps(_mm_mul_ps(sc, _mm_sqrt_ps(sc)));
      _mm_storeu_ps(out + i, _mm_div_ps(_mm_loadu_ps(v + i), p));
    }
#endif
    for (; i < i1; i++) out[i] = v[i] / sqrtf(scale[i] * sqrtf(scale[i]));
  } else
    for (int64_t i = i0; i < i1; i++) out[i] = v[i] * powf(scale[i], -beta);
}

/* y = x · scale^(−β) */
static void top_range(void *ctx, int64_t i0, int64_t i1) {
  const lrn_job *j = ctx;
  times_pow(j->x, j->scale, j->q->beta, j->out, i0, i1);
}

/* r = dy · y / scale (saved before dx, which may alias dy for an in-place layer), then
 * dx = dy · scale^(−β) */
static void diff_range(void *ctx, int64_t i0, int64_t i1) {
  const lrn_job *j = ctx;
  for (int64_t i = i0; i < i1; i++) j->r[i] = j->dy[i] * j->y[i] / j->scale[i];
  times_pow(j->dy, j->scale, j->q->beta, j->out, i0, i1);
}

static void back_across(void *ctx, int64_t n0, int64_t n1) {
  lrn_job *j = ctx;
  const lrn_priv *q = j->q;
  const int64_t C = j->C, S = j->S;
  const float f = 2.0f * q->alpha * q->beta / (float)q->size;
  /* Σ over c' with c in window(c'): c' ∈ [c − (size − pre − 1), c + pre]. */
  float *acc = malloc((size_t)S * sizeof *acc);
  if (!acc) {
    j->failed = true;
    return;
  }
  const int64_t before = q->size - q->pre - 1;
  for (int64_t n = n0; n < n1; n++) {
    const float *rn = j->r + n * C * S, *xn = j->x + n * C * S;
    float *dxn = j->out + n * C * S;
    memset(acc, 0, (size_t)S * sizeof *acc);
    for (int64_t c = 0; c < q->pre && c < C; c++)
      for (int64_t s = 0; s < S; s++) acc[s] += rn[c * S + s];
    for (int64_t c = 0; c < C; c++) {
      int64_t add = c + q->pre, sub = c - before - 1;
      if (add < C)
        for (int64_t s = 0; s < S; s++) acc[s] += rn[add * S + s];
      if (sub >= 0)
        for (int64_t s = 0; s < S; s++) acc[s] -= rn[sub * S + s];
      for (int64_t s = 0; s < S; s++) dxn[c * S + s] -= f * xn[c * S + s] * acc[s];
    }
  }
  free(acc);
}

static void back_within(void *ctx, int64_t p0, int64_t p1) {
  const lrn_job *j = ctx;
  const lrn_priv *q = j->q;
  const int64_t H = j->H, W = j->W, S = j->S;
  const float f = 2.0f * q->alpha * q->beta;
  for (int64_t pl = p0; pl < p1; pl++) {
    const float *rp = j->r + pl * S, *xp = j->x + pl * S;
    float *dxp = j->out + pl * S;
    for (int64_t h = 0; h < H; h++)
      for (int64_t w = 0; w < W; w++) {
        int64_t hs, he, ws, we;
        float div;
        within_window(q, H, W, h, w, &hs, &he, &ws, &we, &div);
        const float g = f * rp[h * W + w] / div;
        for (int64_t i = hs; i < he; i++)
          for (int64_t jj = ws; jj < we; jj++) dxp[i * W + jj] -= g * xp[i * W + jj];
      }
  }
}

static nr_status lrn_forward(nr_layer *l, nr_error *err) {
  (void)err;
  lrn_priv *q = l->priv;
  const nr_blob *b = l->bottom[0];
  const int64_t N = b->shape[0], C = b->shape[1], H = b->shape[2], W = b->shape[3];
  lrn_job j = {q, C, H, W, H * W, b->data, NULL, NULL, q->scale, q->scale, q->tmp, false};
  if (!q->within)
    nr__parallel_for(N, 1, scale_across, &j);
  else
    nr__parallel_for(N * C, 4, scale_within, &j);
  j.out = l->top[0]->data;
  nr__parallel_for(b->count, 16384, top_range, &j);
  return NR_OK;
}

static nr_status lrn_backward(nr_layer *l, nr_error *err) {
  lrn_priv *q = l->priv;
  if (!l->prop_down[0]) return NR_OK;
  const nr_blob *b = l->bottom[0];
  const int64_t N = b->shape[0], C = b->shape[1], H = b->shape[2], W = b->shape[3];
  lrn_job j = {q, C, H, W, H * W, b->data, l->top[0]->data, l->top[0]->diff, q->scale,
               b->diff, q->tmp, false};
  nr__parallel_for(b->count, 16384, diff_range, &j);
  if (!q->within)
    nr__parallel_for(N, 1, back_across, &j);
  else
    nr__parallel_for(N * C, 4, back_within, &j);
  if (j.failed) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  return NR_OK;
}

static void lrn_destroy(nr_layer *l) {
  lrn_priv *q = l->priv;
  if (!q) return;
  free(q->scale);
  free(q->tmp);
  free(q);
  l->priv = NULL;
}

const nr_layer_type nr_layer_lrn = {
    .name = "LRN",
    .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = lrn_setup, .reshape = lrn_reshape, .forward = lrn_forward,
    .backward = lrn_backward, .destroy = lrn_destroy};
