/* InnerProduct (fully connected): bottom viewed as (M, K) with M = product of the axes
 * before `axis` and K of the rest; top (M, N), N = num_output:
 *   y = x W^T + b     W is (N, K), or (K, N) with transpose: true (then y = x W + b).
 * One gemm over the whole batch each way. Backward accumulates dW and db and overwrites
 * the bottom diff. */
#include <stdlib.h>

#include "filler.h"
#include "layer.h"
#include "nr_math.h"

static const Caffe__InnerProductParameter ip_default = CAFFE__INNER_PRODUCT_PARAMETER__INIT;

typedef struct ip_priv {
  int axis;            /* canonical */
  int64_t m, k, n;
  bool bias, transpose;
} ip_priv;

static const Caffe__InnerProductParameter *params(const nr_layer *l) {
  return l->param->inner_product_param ? l->param->inner_product_param : &ip_default;
}

static nr_status ip_setup(nr_layer *l, nr_error *err) {
  const Caffe__InnerProductParameter *p = params(l);
  const nr_blob *b = l->bottom[0];
  if (!p->has_num_output || p->num_output == 0)
    return nr_err_set(err, NR_ERR_INPUT,
                      "inner_product_param.num_output must be given and positive");
  if (l->top[0] == b)
    return nr_err_set(err, NR_ERR_INPUT, "InnerProduct cannot run in place (top == bottom)");
  const int axis = nr_blob_axis(b, p->axis);
  if (axis < 0 || b->num_axes == 0)
    return nr_err_set(err, NR_ERR_INPUT,
                      "inner_product_param.axis %d is out of range for a bottom with %d axes",
                      (int)p->axis, b->num_axes);
  ip_priv *st = calloc(1, sizeof *st);
  if (!st) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = st;
  st->axis = axis;
  st->n = p->num_output;
  st->k = nr_blob_count_range(b, axis, b->num_axes);
  st->bias = p->bias_term;
  st->transpose = p->transpose;
  nr_rng *rng = l->ctx ? l->ctx->rng : NULL;
  const int want = st->bias ? 2 : 1;
  if (l->nblobs == 0) {
    int64_t wshape[2] = {st->n, st->k};
    if (st->transpose) wshape[0] = st->k, wshape[1] = st->n;
    nr_blob *w = NULL;
    NR_TRY(nr_layer_add_param(l, 2, wshape, &w, err));
    nr_status s = nr_fill(w, p->weight_filler, rng, err);
    if (s != NR_OK) return nr_err_prefix(err, "weight_filler");
    if (st->bias) {
      nr_blob *bb = NULL;
      NR_TRY(nr_layer_add_param(l, 1, &st->n, &bb, err));
      s = nr_fill(bb, p->bias_filler, rng, err);
      if (s != NR_OK) return nr_err_prefix(err, "bias_filler");
    }
  }
  if (l->nblobs != want)
    return nr_err_set(err, NR_ERR_INPUT, "has %d parameter blobs, expected %d", l->nblobs,
                      want);
  if (l->blobs[0]->count != st->n * st->k)
    return nr_err_set(err, NR_ERR_INPUT, "weight blob has %lld elements, expected %lld x %lld",
                      (long long)l->blobs[0]->count, (long long)st->n, (long long)st->k);
  if (st->bias && l->blobs[1]->count != st->n)
    return nr_err_set(err, NR_ERR_INPUT, "bias blob has %lld elements, expected %lld",
                      (long long)l->blobs[1]->count, (long long)st->n);
  return NR_OK;
}

static void ip_destroy(nr_layer *l) { free(l->priv); }

static nr_status ip_reshape(nr_layer *l, nr_error *err) {
  ip_priv *st = l->priv;
  const nr_blob *b = l->bottom[0];
  if (st->axis >= b->num_axes)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[0] has %d axes, expected more than %d",
                      b->num_axes, st->axis);
  const int64_t k = nr_blob_count_range(b, st->axis, b->num_axes);
  if (k != st->k) {
    char bs[256];
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[0] %s has %lld inputs per item from axis %d, expected %lld "
                      "(the weights' input size)",
                      nr_blob_shape_str(b, bs, sizeof bs), (long long)k, st->axis,
                      (long long)st->k);
  }
  st->m = nr_blob_count_range(b, 0, st->axis);
  int64_t dims[NR_MAX_AXES];
  for (int i = 0; i < st->axis; i++) dims[i] = b->shape[i];
  dims[st->axis] = st->n;
  return nr_blob_reshape(l->top[0], st->axis + 1, dims, err);
}

/* Items [i0, i1) of the forward (the whole batch is one such range). */
static nr_status ip_forward_samples(nr_layer *l, int64_t i0, int64_t i1, nr_error *err) {
  (void)err;
  const ip_priv *st = l->priv;
  const int64_t m = i1 - i0, n = st->n, k = st->k;
  float *restrict y = l->top[0]->data + i0 * n;
  if (m <= 0) return NR_OK;
  if (k == 0)
    nr_set(m * n, 0.0f, y);
  else
    nr_gemm(false, !st->transpose, m, n, k, 1.0f, l->bottom[0]->data + i0 * k,
            l->blobs[0]->data, 0.0f, y);
  if (st->bias) {
    const float *restrict bias = l->blobs[1]->data;
    for (int64_t i = 0; i < m; i++) {
      float *restrict row = y + i * n;
      for (int64_t j = 0; j < n; j++) row[j] += bias[j];
    }
  }
  return NR_OK;
}

static nr_status ip_forward(nr_layer *l, nr_error *err) {
  return ip_forward_samples(l, 0, ((const ip_priv *)l->priv)->m, err);
}

static nr_status ip_backward_params(nr_layer *l, nr_error *err) {
  (void)err;
  const ip_priv *st = l->priv;
  const int64_t m = st->m, n = st->n, k = st->k;
  const float *dy = l->top[0]->diff;
  const float *x = l->bottom[0]->data;
  if (m == 0) return NR_OK;
  if (k > 0) {
    float *dw = l->blobs[0]->diff;
    if (st->transpose) /* dW (K, N) += x^T dy */
      nr_gemm(true, false, k, n, m, 1.0f, x, dy, 1.0f, dw);
    else /* dW (N, K) += dy^T x */
      nr_gemm(true, false, n, k, m, 1.0f, dy, x, 1.0f, dw);
  }
  if (st->bias) {
    float *restrict db = l->blobs[1]->diff;
    for (int64_t i = 0; i < m; i++) {
      const float *restrict row = dy + i * n;
      for (int64_t j = 0; j < n; j++) db[j] += row[j];
    }
  }
  return NR_OK;
}

/* dx (items [i0, i1), K) = dy W, or dy W^T when transposed. */
static nr_status ip_backward_samples(nr_layer *l, int64_t i0, int64_t i1, nr_error *err) {
  (void)err;
  const ip_priv *st = l->priv;
  if (l->prop_down[0] && st->k > 0 && i1 > i0)
    nr_gemm(false, st->transpose, i1 - i0, st->k, st->n, 1.0f, l->top[0]->diff + i0 * st->n,
            l->blobs[0]->data, 0.0f, l->bottom[0]->diff + i0 * st->k);
  return NR_OK;
}

static nr_status ip_backward(nr_layer *l, nr_error *err) {
  NR_TRY(ip_backward_params(l, err));
  return ip_backward_samples(l, 0, ((const ip_priv *)l->priv)->m, err);
}

/* Cut by items when they are axis 0 and the weights are small (LeNet's 500 x 800): each
 * thread reads all of them, which for AlexNet's fc6 (151 MB, streamed from memory) would
 * double the traffic that bounds the layer; split inside the GEMM, each reads half. */
#define NR_IP_SLICE_MAX_WEIGHTS ((int64_t)1 << 20)
static bool ip_can_slice(const nr_layer *l) {
  const ip_priv *st = l->priv;
  return st->axis == 1 && st->n * st->k <= NR_IP_SLICE_MAX_WEIGHTS;
}

const nr_layer_type nr_layer_inner_product = {
    .name = "InnerProduct", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = ip_setup, .reshape = ip_reshape, .forward = ip_forward, .backward = ip_backward,
    .destroy = ip_destroy, .forward_samples = ip_forward_samples,
    .backward_samples = ip_backward_samples, .backward_params = ip_backward_params,
    .can_slice = ip_can_slice};
