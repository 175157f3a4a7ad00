/* Dropout: in TRAIN each element is kept with probability 1 - p and scaled by 1 / (1 - p),
 * dropped (0) otherwise; in TEST the layer is the identity. The mask (0 or the scale, one
 * float per element) lives in priv, a private blob, and is drawn from l->ctx->rng at every
 * training forward. Runs in place. */
#include "layer.h"
#include "nr_math.h"

static const Caffe__DropoutParameter dropout_default = CAFFE__DROPOUT_PARAMETER__INIT;

static float ratio_of(const nr_layer *l) {
  return (l->param->dropout_param ? l->param->dropout_param : &dropout_default)->dropout_ratio;
}

static nr_status dropout_setup(nr_layer *l, nr_error *err) {
  const float p = ratio_of(l);
  if (!(p >= 0.0f && p < 1.0f))
    return nr_err_set(err, NR_ERR_INPUT, "dropout_ratio must be in [0, 1), got %g", (double)p);
  nr_blob *mask = NULL;
  NR_TRY(nr_blob_create("dropout_mask", NULL, &mask, err));
  l->priv = mask;
  return NR_OK;
}

static void dropout_destroy(nr_layer *l) { nr_blob_destroy(l->priv); }

static nr_status dropout_reshape(nr_layer *l, nr_error *err) {
  NR_TRY(nr_blob_reshape_like(l->priv, l->bottom[0], err));
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status dropout_forward(nr_layer *l, nr_error *err) {
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  const int64_t n = l->bottom[0]->count;
  if (l->phase != NR_TRAIN) {
    nr_copy(n, x, y);
    return NR_OK;
  }
  if (!l->ctx || !l->ctx->rng)
    return nr_err_set(err, NR_ERR_INTERNAL, "Dropout in TRAIN needs a random number generator");
  nr_rng *rng = l->ctx->rng;
  const float p = ratio_of(l);
  const float scale = 1.0f / (1.0f - p);
  /* Keep when a 32-bit uniform integer is below (1 - p) 2^32; two draws per 64 bits. */
  const uint64_t thr = (uint64_t)((1.0 - (double)p) * 4294967296.0);
  float *restrict mask = ((nr_blob *)l->priv)->data;
  int64_t i = 0;
  for (; i + 1 < n; i += 2) {
    const uint64_t r = nr_rng_next(rng);
    mask[i] = (r & 0xffffffffu) < thr ? scale : 0.0f;
    mask[i + 1] = (r >> 32) < thr ? scale : 0.0f;
  }
  if (i < n) mask[i] = (nr_rng_next(rng) & 0xffffffffu) < thr ? scale : 0.0f;
  for (i = 0; i < n; i++) y[i] = x[i] * mask[i];
  return NR_OK;
}

static nr_status dropout_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const float *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  const int64_t n = l->bottom[0]->count;
  if (l->phase != NR_TRAIN) {
    nr_copy(n, dy, dx);
    return NR_OK;
  }
  const float *restrict mask = ((nr_blob *)l->priv)->data;
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * mask[i];
  return NR_OK;
}

const nr_layer_type nr_layer_dropout = {
    .name = "Dropout", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = dropout_setup, .reshape = dropout_reshape, .forward = dropout_forward,
    .backward = dropout_backward, .destroy = dropout_destroy};
