/* Pooling: Caffe's PoolingLayer, MAX and AVE over 4-D (N, C, H, W) bottoms.
 *
 * Output size per axis (CEIL, Caffe's default): ⌈(in + 2·pad − k) / stride⌉ + 1; FLOOR
 * uses ⌊⌋. With padding, an output whose window would start inside the bottom/right padding
 * is dropped (one less), so every window overlaps the image. global_pooling pools the
 * whole plane (pad 0, stride 1). MAX keeps the argmax (h·W + w within the plane) for
 * backward and, given a second top, writes it there as Caffe's mask. AVE divides by the
 * window size counting padding, with the window clipped at in + pad (Caffe's divisor).
 * STOCHASTIC is refused at setup.
 *
 * The loops run the kernel taps outermost and the output column innermost, so the inner loops
 * are plain strided scans; the MAX update is a select, not a branch (a data-dependent branch
 * there mispredicted about half the time), four columns at a time in SSE2 at stride 1 and 2
 * (GoogLeNet's 3x3 stride-1 pools: 10.2 -> 4.8 ms a layer at batch 10). Which output columns
 * each kernel column reads inside the image is computed once per reshape. MAX with a 2x2
 * window, stride 2, no padding, over an even-sized input (LeNet's pools) has its own path: four
 * compare-selects per output in SSE2, and a backward that writes each input once instead of
 * zeroing the diff and scattering into it. Every path keeps Caffe's result exactly: taps
 * visited in row-major order, a strictly greater value replaces (the first max wins ties, NaN
 * never wins), -FLT_MAX and index -1 where nothing did.
 */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "parallel.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

static const Caffe__PoolingParameter default_param = CAFFE__POOLING_PARAMETER__INIT;

typedef struct pool_priv {
  int method;
  bool global, floor_mode;
  int64_t kh, kw, ph, pw, sh, sw;
  int64_t H, W, OH, OW;
  int32_t *mask; /* MAX: argmax per top element */
  int64_t mask_cap;
  float *inv_size; /* AVE: 1 / window size per output position (OH·OW) */
  int64_t inv_cap;
  int64_t *tap_lo, *tap_hi; /* per kernel column j: output columns [lo, hi) reading inside */
  int64_t tap_cap;
} pool_priv;

static nr_status pool_setup(nr_layer *l, nr_error *err) {
  const Caffe__PoolingParameter *p =
      l->param->pooling_param ? l->param->pooling_param : &default_param;
  pool_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  q->method = (int)p->pool;
  if (q->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__STOCHASTIC)
    return nr_err_set(err, NR_ERR_INPUT, "pool: STOCHASTIC is not supported (use MAX or AVE)");
  if (q->method != CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX &&
      q->method != CAFFE__POOLING_PARAMETER__POOL_METHOD__AVE)
    return nr_err_set(err, NR_ERR_INPUT, "unknown pool method %d", q->method);
  if (l->ntop > 1 && q->method != CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX)
    return nr_err_set(err, NR_ERR_INPUT, "only MAX pooling has a second top (the mask)");
  q->global = p->global_pooling;
  q->floor_mode = p->round_mode == CAFFE__POOLING_PARAMETER__ROUND_MODE__FLOOR;
  if (q->global) {
    if (p->has_kernel_size || p->has_kernel_h || p->has_kernel_w)
      return nr_err_set(err, NR_ERR_INPUT,
                        "with global_pooling the kernel size cannot be given");
  } else {
    if (p->has_kernel_size == (p->has_kernel_h || p->has_kernel_w))
      return nr_err_set(err, NR_ERR_INPUT,
                        "give kernel_size or kernel_h and kernel_w (exactly one form)");
    if (!p->has_kernel_size && !(p->has_kernel_h && p->has_kernel_w))
      return nr_err_set(err, NR_ERR_INPUT, "kernel_h and kernel_w must be given together");
    q->kh = p->has_kernel_size ? p->kernel_size : p->kernel_h;
    q->kw = p->has_kernel_size ? p->kernel_size : p->kernel_w;
    if (q->kh <= 0 || q->kw <= 0)
      return nr_err_set(err, NR_ERR_INPUT, "kernel dimensions must be > 0");
  }
  if (p->has_pad && (p->has_pad_h || p->has_pad_w))
    return nr_err_set(err, NR_ERR_INPUT, "give pad or pad_h/pad_w, not both");
  q->ph = p->has_pad ? p->pad : p->pad_h;
  q->pw = p->has_pad ? p->pad : p->pad_w;
  if (p->has_stride && (p->has_stride_h || p->has_stride_w))
    return nr_err_set(err, NR_ERR_INPUT, "give stride or stride_h/stride_w, not both");
  q->sh = p->has_stride_h ? p->stride_h : p->stride;
  q->sw = p->has_stride_w ? p->stride_w : p->stride;
  if (q->sh <= 0 || q->sw <= 0) return nr_err_set(err, NR_ERR_INPUT, "stride must be > 0");
  if (q->global && (q->ph || q->pw || q->sh != 1 || q->sw != 1))
    return nr_err_set(err, NR_ERR_INPUT, "with global_pooling only pad 0 and stride 1 are allowed");
  if (!q->global && (q->ph >= q->kh || q->pw >= q->kw))
    return nr_err_set(err, NR_ERR_INPUT,
                      "pad (%lldx%lld) must be smaller than the kernel (%lldx%lld)",
                      (long long)q->ph, (long long)q->pw, (long long)q->kh, (long long)q->kw);
  return NR_OK;
}

static int64_t pooled(int64_t in, int64_t k, int64_t p, int64_t s, bool floor_mode) {
  int64_t span = in + 2 * p - k; /* >= 0, checked by the caller */
  int64_t o = (floor_mode ? span / s : (span + s - 1) / s) + 1;
  if (p > 0 && (o - 1) * s >= in + p) o--; /* last window starts in the padding */
  return o;
}

/* Output columns [lo, hi) whose tap j reads a column inside [0, W). */
static void tap_range(const pool_priv *q, int64_t j, int64_t *lo, int64_t *hi) {
  int64_t off = j - q->pw;
  int64_t a = off >= 0 ? 0 : (-off + q->sw - 1) / q->sw;
  int64_t b = (q->W - 1 - off) < 0 ? 0 : (q->W - 1 - off) / q->sw + 1;
  if (a > q->OW) a = q->OW;
  if (b > q->OW) b = q->OW;
  *lo = a;
  *hi = b < a ? a : b;
}

static nr_status pool_reshape(nr_layer *l, nr_error *err) {
  pool_priv *q = l->priv;
  const nr_blob *b = l->bottom[0];
  if (b->num_axes != 4)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[0] has %d axes, expected 4 (num, channels, height, width)",
                      b->num_axes);
  q->H = b->shape[2];
  q->W = b->shape[3];
  if (q->global) {
    q->kh = q->H;
    q->kw = q->W;
  }
  if (q->kh > q->H + 2 * q->ph || q->kw > q->W + 2 * q->pw)
    return nr_err_set(err, NR_ERR_INPUT, "kernel %lldx%lld larger than padded input %lldx%lld",
                      (long long)q->kh, (long long)q->kw, (long long)(q->H + 2 * q->ph),
                      (long long)(q->W + 2 * q->pw));
  q->OH = pooled(q->H, q->kh, q->ph, q->sh, q->floor_mode);
  q->OW = pooled(q->W, q->kw, q->pw, q->sw, q->floor_mode);
  for (int i = 0; i < l->ntop; i++)
    NR_TRY(nr_blob_reshape4(l->top[i], b->shape[0], b->shape[1], q->OH, q->OW, err));
  if (q->kw > q->tap_cap) {
    int64_t *lo = realloc(q->tap_lo, (size_t)q->kw * sizeof *lo);
    if (lo) q->tap_lo = lo;
    int64_t *hi = lo ? realloc(q->tap_hi, (size_t)q->kw * sizeof *hi) : NULL;
    if (!hi) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    q->tap_hi = hi;
    q->tap_cap = q->kw;
  }
  for (int64_t j = 0; j < q->kw; j++) tap_range(q, j, &q->tap_lo[j], &q->tap_hi[j]);
  int64_t tc = l->top[0]->count;
  if (q->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX && tc > q->mask_cap) {
    int32_t *m = realloc(q->mask, (size_t)tc * sizeof *m);
    if (!m) return nr_err_set(err, NR_ERR_NOMEM, "out of memory for the pooling mask");
    q->mask = m;
    q->mask_cap = tc;
  }
  if (q->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__AVE) {
    int64_t n = q->OH * q->OW;
    if (n > q->inv_cap) {
      float *v = realloc(q->inv_size, (size_t)n * sizeof *v);
      if (!v) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
      q->inv_size = v;
      q->inv_cap = n;
    }
    for (int64_t oh = 0; oh < q->OH; oh++) {
      int64_t hs = oh * q->sh - q->ph, he = hs + q->kh;
      if (he > q->H + q->ph) he = q->H + q->ph;
      for (int64_t ow = 0; ow < q->OW; ow++) {
        int64_t ws = ow * q->sw - q->pw, we = ws + q->kw;
        if (we > q->W + q->pw) we = q->W + q->pw;
        q->inv_size[oh * q->OW + ow] = 1.0f / (float)((he - hs) * (we - ws));
      }
    }
  }
  return NR_OK;
}

/* MAX 2x2, stride 2, no padding, H = 2·OH, W = 2·OW: one plane. */
static void max2x2_forward(const float *in, int64_t W, int64_t OH, int64_t OW, float *out,
                           int32_t *mask) {
  for (int64_t oh = 0; oh < OH; oh++) {
    const float *r0 = in + 2 * oh * W, *r1 = r0 + W;
    float *o = out + oh * OW;
    int32_t *m = mask + oh * OW;
    const int32_t base = (int32_t)(2 * oh * W), w = (int32_t)W;
    int64_t ow = 0;
#ifdef __SSE2__
    const __m128i lane2 = _mm_setr_epi32(0, 2, 4, 6);
    for (; ow + 4 <= OW; ow += 4) {
      const __m128 a0 = _mm_loadu_ps(r0 + 2 * ow), a1 = _mm_loadu_ps(r0 + 2 * ow + 4);
      const __m128 b0 = _mm_loadu_ps(r1 + 2 * ow), b1 = _mm_loadu_ps(r1 + 2 * ow + 4);
      const __m128 tap[4] = {_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)),
                             _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1))};
      const __m128i i0 = _mm_add_epi32(_mm_set1_epi32(base + 2 * (int32_t)ow), lane2);
      const __m128i idx[4] = {i0, _mm_add_epi32(i0, _mm_set1_epi32(1)),
                              _mm_add_epi32(i0, _mm_set1_epi32(w)),
                              _mm_add_epi32(i0, _mm_set1_epi32(w + 1))};
      __m128 best = _mm_set1_ps(-FLT_MAX);
      __m128i bi = _mm_set1_epi32(-1);
      for (int t = 0; t < 4; t++) {
        const __m128 gt = _mm_cmpgt_ps(tap[t], best); /* false for NaN, as C's > */
        best = _mm_or_ps(_mm_and_ps(gt, tap[t]), _mm_andnot_ps(gt, best));
        const __m128i gi = _mm_castps_si128(gt);
        bi = _mm_or_si128(_mm_and_si128(gi, idx[t]), _mm_andnot_si128(gi, bi));
      }
      _mm_storeu_ps(o + ow, best);
      _mm_storeu_si128((__m128i *)(m + ow), bi);
    }
#endif
    for (; ow < OW; ow++) {
      const float t[4] = {r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]};
      const int32_t i0 = base + 2 * (int32_t)ow, ti[4] = {i0, i0 + 1, i0 + w, i0 + w + 1};
      float best = -FLT_MAX;
      int32_t bi = -1;
      for (int k = 0; k < 4; k++) {
        const bool gt = t[k] > best;
        best = gt ? t[k] : best;
        bi = gt ? ti[k] : bi;
      }
      o[ow] = best;
      m[ow] = bi;
    }
  }
}

static bool is_max2x2(const pool_priv *q) {
  return q->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX && q->kh == 2 && q->kw == 2 &&
         q->sh == 2 && q->sw == 2 && q->ph == 0 && q->pw == 0 && q->H == 2 * q->OH &&
         q->W == 2 * q->OW;
}

/* The MAX update of output columns [lo, hi) by one kernel tap at stride 1 or 2, four
 * columns at a time (GCC keeps the scalar select below a branch): src[ow·sw] is the tap's
 * input for column ow, base + ow·sw its index in the plane. Returns the first column left
 * to the scalar loop. */
static int64_t max_taps_sse(const float *src, int64_t sw, int32_t base, int64_t lo, int64_t hi,
                            float *restrict orow, int32_t *restrict mrow) {
  int64_t ow = lo;
#ifdef __SSE2__
  const __m128i lanes = sw == 1 ? _mm_setr_epi32(0, 1, 2, 3) : _mm_setr_epi32(0, 2, 4, 6);
  for (; ow + 4 <= hi; ow += 4) {
    const __m128 v = sw == 1 ? _mm_loadu_ps(src + ow)
                             : _mm_shuffle_ps(_mm_loadu_ps(src + 2 * ow),
                                              _mm_loadu_ps(src + 2 * ow + 4),
                                              _MM_SHUFFLE(2, 0, 2, 0));
    const __m128 best = _mm_loadu_ps(orow + ow);
    const __m128 gt = _mm_cmpgt_ps(v, best); /* false for NaN, as C's > */
    _mm_storeu_ps(orow + ow, _mm_or_ps(_mm_and_ps(gt, v), _mm_andnot_ps(gt, best)));
    const __m128i idx = _mm_add_epi32(_mm_set1_epi32(base + (int32_t)(ow * sw)), lanes);
    const __m128i gi = _mm_castps_si128(gt), m = _mm_loadu_si128((const __m128i *)(mrow + ow));
    _mm_storeu_si128((__m128i *)(mrow + ow),
                     _mm_or_si128(_mm_and_si128(gi, idx), _mm_andnot_si128(gi, m)));
  }
#else
  (void)src, (void)sw, (void)base, (void)hi, (void)orow, (void)mrow;
#endif
  return ow;
}

/* Planes per part at least: about 32 K input values (less is not worth a thread). The
 * input, not the output, measures a plane's work both ways: the forward reads every input
 * value, the backward writes every one. By the output, LeNet's pool2 (8x8 -> 4x4 planes)
 * ran its 64x50 planes as one part, on the thread whose cache held the least of them. */
static int64_t plane_grain(const pool_priv *q) {
  const int64_t per = q->H * q->W;
  return per >= 32768 ? 1 : 32768 / (per > 0 ? per : 1);
}

/* Planes [pl0, pl1) of the forward (planes are independent: spread over threads). */
static void pool_forward_planes(void *ctx, int64_t pl0, int64_t pl1) {
  nr_layer *l = ctx;
  pool_priv *q = l->priv;
  const nr_blob *b = l->bottom[0];
  const int64_t H = q->H, W = q->W, OH = q->OH, OW = q->OW;
  const bool is_max = q->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX;
  const bool fast = is_max2x2(q);
  for (int64_t pl = pl0; pl < pl1; pl++) {
    const float *in = b->data + pl * H * W;
    float *out = l->top[0]->data + pl * OH * OW;
    int32_t *mask = is_max ? q->mask + pl * OH * OW : NULL;
    if (fast) {
      max2x2_forward(in, W, OH, OW, out, mask);
      continue;
    }
    for (int64_t oh = 0; oh < OH; oh++) {
      float *restrict orow = out + oh * OW;
      int32_t *restrict mrow = is_max ? mask + oh * OW : NULL;
      int64_t hs = oh * q->sh - q->ph, he = hs + q->kh;
      if (hs < 0) hs = 0;
      if (he > H) he = H;
      if (is_max)
        for (int64_t ow = 0; ow < OW; ow++) {
          orow[ow] = -FLT_MAX;
          mrow[ow] = -1;
        }
      else
        memset(orow, 0, (size_t)OW * sizeof *orow);
      for (int64_t h = hs; h < he; h++) {
        const float *irow = in + h * W;
        for (int64_t j = 0; j < q->kw; j++) {
          const int64_t lo = q->tap_lo[j], hi = q->tap_hi[j];
          const int64_t off = j - q->pw, sw = q->sw;
          if (is_max) {
            const int32_t base = (int32_t)(h * W + off);
            int64_t ow = lo;
            if (sw <= 2) ow = max_taps_sse(irow + off, sw, base, lo, hi, orow, mrow);
            for (; ow < hi; ow++) {
              const float v = irow[ow * sw + off];
              const bool gt = v > orow[ow];
              orow[ow] = gt ? v : orow[ow];
              mrow[ow] = gt ? base + (int32_t)(ow * sw) : mrow[ow];
            }
          } else {
            for (int64_t ow = lo; ow < hi; ow++) orow[ow] += irow[ow * sw + off];
          }
        }
      }
      if (!is_max) {
        const float *inv = q->inv_size + oh * OW;
        for (int64_t ow = 0; ow < OW; ow++) orow[ow] *= inv[ow];
      }
    }
  }
}

/* The mask top (if any) of planes [pl0, pl1). */
static void pool_mask_top(nr_layer *l, int64_t pl0, int64_t pl1) {
  if (l->ntop < 2) return;
  const pool_priv *q = l->priv;
  const int64_t per = q->OH * q->OW;
  float *m = l->top[1]->data;
  for (int64_t i = pl0 * per; i < pl1 * per; i++) m[i] = (float)q->mask[i];
}

static nr_status pool_forward(nr_layer *l, nr_error *err) {
  (void)err;
  const nr_blob *b = l->bottom[0];
  const int64_t planes = b->shape[0] * b->shape[1];
  nr__parallel_for(planes, plane_grain(l->priv), pool_forward_planes, l);
  pool_mask_top(l, 0, planes);
  return NR_OK;
}

static nr_status pool_forward_samples(nr_layer *l, int64_t n0, int64_t n1, nr_error *err) {
  (void)err;
  const int64_t c = l->bottom[0]->shape[1];
  pool_forward_planes(l, n0 * c, n1 * c);
  pool_mask_top(l, n0 * c, n1 * c);
  return NR_OK;
}

/* Planes [pl0, pl1) of the backward (each writes only its own plane of the bottom diff). */
static void pool_backward_planes(void *ctx, int64_t pl0, int64_t pl1) {
  nr_layer *l = ctx;
  pool_priv *q = l->priv;
  const nr_blob *b = l->bottom[0];
  const int64_t H = q->H, W = q->W, OH = q->OH, OW = q->OW;
  if (is_max2x2(q)) {
    /* The windows tile the plane: each input is written once, with its output's diff if it
     * was that output's max, else 0. "0 + d" as the general path's zero-then-add, so a
     * -0 diff becomes +0 there as here. */
    for (int64_t pl = pl0; pl < pl1; pl++) {
      float *din = b->diff + pl * H * W;
      const float *dout = l->top[0]->diff + pl * OH * OW;
      const int32_t *mask = q->mask + pl * OH * OW;
      for (int64_t oh = 0; oh < OH; oh++) {
        float *r0 = din + 2 * oh * W, *r1 = r0 + W;
        const int32_t base = (int32_t)(2 * oh * W);
        const int32_t *mrow = mask + oh * OW;
        const float *drow = dout + oh * OW;
        int64_t ow = 0;
#ifdef __SSE2__
        const __m128i lane2 = _mm_setr_epi32(0, 2, 4, 6);
        const __m128i w0 = _mm_set1_epi32((int32_t)W), w1 = _mm_set1_epi32((int32_t)W + 1);
        const __m128i one = _mm_set1_epi32(1);
        for (; ow + 4 <= OW; ow += 4) {
          const __m128i pos = _mm_add_epi32(_mm_set1_epi32(base + 2 * (int32_t)ow), lane2);
          const __m128i m = _mm_sub_epi32(_mm_loadu_si128((const __m128i *)(mrow + ow)), pos);
          const __m128 d = _mm_add_ps(_mm_setzero_ps(), _mm_loadu_ps(drow + ow));
          const __m128 e0 =
              _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(m, _mm_setzero_si128())), d);
          const __m128 o0 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(m, one)), d);
          const __m128 e1 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(m, w0)), d);
          const __m128 o1 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(m, w1)), d);
          _mm_storeu_ps(r0 + 2 * ow, _mm_unpacklo_ps(e0, o0));
          _mm_storeu_ps(r0 + 2 * ow + 4, _mm_unpackhi_ps(e0, o0));
          _mm_storeu_ps(r1 + 2 * ow, _mm_unpacklo_ps(e1, o1));
          _mm_storeu_ps(r1 + 2 * ow + 4, _mm_unpackhi_ps(e1, o1));
        }
#endif
        for (; ow < OW; ow++) {
          const int32_t m = mrow[ow] - base - 2 * (int32_t)ow;
          const float d = 0.0f + drow[ow];
          r0[2 * ow] = m == 0 ? d : 0.0f;
          r0[2 * ow + 1] = m == 1 ? d : 0.0f;
          r1[2 * ow] = m == (int32_t)W ? d : 0.0f;
          r1[2 * ow + 1] = m == (int32_t)W + 1 ? d : 0.0f;
        }
      }
    }
    return;
  }
  memset(b->diff + pl0 * H * W, 0, (size_t)((pl1 - pl0) * H * W) * sizeof(float));
  for (int64_t pl = pl0; pl < pl1; pl++) {
    float *din = b->diff + pl * H * W;
    const float *dout = l->top[0]->diff + pl * OH * OW;
    if (q->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX) {
      const int32_t *mask = q->mask + pl * OH * OW;
      for (int64_t i = 0; i < OH * OW; i++)
        if (mask[i] >= 0) din[mask[i]] += dout[i];
      continue;
    }
    for (int64_t oh = 0; oh < OH; oh++) {
      const float *drow = dout + oh * OW, *inv = q->inv_size + oh * OW;
      int64_t hs = oh * q->sh - q->ph, he = hs + q->kh;
      if (hs < 0) hs = 0;
      if (he > H) he = H;
      for (int64_t h = hs; h < he; h++) {
        float *irow = din + h * W;
        for (int64_t j = 0; j < q->kw; j++) {
          const int64_t lo = q->tap_lo[j], hi = q->tap_hi[j];
          const int64_t off = j - q->pw, sw = q->sw;
          for (int64_t ow = lo; ow < hi; ow++) irow[ow * sw + off] += drow[ow] * inv[ow];
        }
      }
    }
  }
}

static nr_status pool_backward(nr_layer *l, nr_error *err) {
  (void)err;
  if (!l->prop_down[0]) return NR_OK;
  const nr_blob *b = l->bottom[0];
  nr__parallel_for(b->shape[0] * b->shape[1], plane_grain(l->priv), pool_backward_planes, l);
  return NR_OK;
}

static nr_status pool_backward_samples(nr_layer *l, int64_t n0, int64_t n1, nr_error *err) {
  (void)err;
  const int64_t c = l->bottom[0]->shape[1];
  if (l->prop_down[0]) pool_backward_planes(l, n0 * c, n1 * c);
  return NR_OK;
}

static void pool_destroy(nr_layer *l) {
  pool_priv *q = l->priv;
  if (!q) return;
  free(q->mask);
  free(q->inv_size);
  free(q->tap_lo);
  free(q->tap_hi);
  free(q);
  l->priv = NULL;
}

const nr_layer_type nr_layer_pooling = {
    .name = "Pooling",
    .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 2,
    .setup = pool_setup, .reshape = pool_reshape, .forward = pool_forward,
    .backward = pool_backward, .destroy = pool_destroy,
    .forward_samples = pool_forward_samples, .backward_samples = pool_backward_samples};
