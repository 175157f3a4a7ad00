/* SPP: Caffe's SPPLayer, spatial pyramid pooling of a (N, C, H, W) bottom. Level i of
 * spp_param.pyramid_height (required, > 0) pools the image into about 2^i × 2^i bins:
 * kernel k = ⌈H / 2^i⌉ (and likewise for W), stride k, pad ⌊(k·2^i − H + 1) / 2⌋, with
 * spp_param.pool (MAX or AVE; STOCHASTIC, like Pooling, is refused). The top is every
 * level's (N, C, h_i, w_i) output flattened per item and concatenated: (N, Σ C·h_i·w_i);
 * with pyramid_height 1 it is the single level's (N, C, 1, 1) output itself, as Caffe.
 * The levels are Pooling layers run inside this one, rebuilt whenever H or W changes, so
 * SPP inherits Pooling's checks: Caffe's pad-smaller-than-kernel rule rejects images too
 * small for the pyramid (e.g. H = 1 with 2 levels). Backward: the sum of the levels'
 * pooling gradients.
 */
#include <stdio.h>
#include <stdlib.h>

#include "layer.h"
#include "nr_math.h"

extern const nr_layer_type nr_layer_pooling;

static const Caffe__SPPParameter spp_default = CAFFE__SPPPARAMETER__INIT;

typedef struct spp_level {
  Caffe__LayerParameter lp;   /* the Pooling layer's parameters (borrowed by `pool`) */
  Caffe__PoolingParameter pp;
  nr_blob *out;               /* pooled (N, C, h, w); NULL at height 1 (top[0] instead) */
  nr_layer *pool;
} spp_level;

typedef struct spp_priv {
  int levels;
  int64_t h, w;      /* the bottom's H, W the levels were built for; 0 = not built */
  spp_level *lv;
  float *acc;        /* backward: bottom diff summed over the levels */
  int64_t acc_cap;
} spp_priv;

static void spp_free_levels(spp_priv *q) {
  for (int i = 0; i < q->levels; i++) {
    nr_layer_destroy(q->lv[i].pool);
    q->lv[i].pool = NULL;
  }
  q->h = q->w = 0;
}

static nr_status spp_setup(nr_layer *l, nr_error *err) {
  const Caffe__SPPParameter *p = l->param->spp_param ? l->param->spp_param : &spp_default;
  if (!p->has_pyramid_height || p->pyramid_height == 0)
    return nr_err_set(err, NR_ERR_INPUT, "spp_param.pyramid_height must be given and > 0");
  if (p->pyramid_height > 16)
    return nr_err_set(err, NR_ERR_INPUT, "spp_param.pyramid_height %u is too large (at most 16)",
                      (unsigned)p->pyramid_height);
  if (p->pool != CAFFE__SPPPARAMETER__POOL_METHOD__MAX &&
      p->pool != CAFFE__SPPPARAMETER__POOL_METHOD__AVE)
    return nr_err_set(err, NR_ERR_INPUT, "spp_param.pool: only MAX and AVE are supported");
  spp_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  q->levels = (int)p->pyramid_height;
  if (!(q->lv = calloc((size_t)q->levels, sizeof *q->lv)))
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  if (q->levels > 1)
    for (int i = 0; i < q->levels; i++)
      NR_TRY(nr_blob_create("spp_level", l->ctx ? l->ctx->alloc : NULL, &q->lv[i].out, err));
  return NR_OK;
}

/* Builds level i's Pooling layer for an H × W image. */
static nr_status spp_build_level(nr_layer *l, int i, int64_t H, int64_t W, nr_error *err) {
  const Caffe__SPPParameter *p = l->param->spp_param;
  spp_priv *q = l->priv;
  spp_level *v = &q->lv[i];
  const int64_t bins = (int64_t)1 << i;
  const int64_t kh = (H + bins - 1) / bins, kw = (W + bins - 1) / bins;
  Caffe__PoolingParameter pp = CAFFE__POOLING_PARAMETER__INIT;
  pp.has_pool = 1;
  pp.pool = p->pool == CAFFE__SPPPARAMETER__POOL_METHOD__MAX
                ? CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX
                : CAFFE__POOLING_PARAMETER__POOL_METHOD__AVE;
  pp.has_kernel_h = pp.has_kernel_w = pp.has_stride_h = pp.has_stride_w = 1;
  pp.has_pad_h = pp.has_pad_w = 1;
  pp.kernel_h = pp.stride_h = (uint32_t)kh;
  pp.kernel_w = pp.stride_w = (uint32_t)kw;
  pp.pad_h = (uint32_t)((kh * bins - H + 1) / 2);
  pp.pad_w = (uint32_t)((kw * bins - W + 1) / 2);
  v->pp = pp;
  Caffe__LayerParameter lp = CAFFE__LAYER_PARAMETER__INIT;
  lp.name = (char *)l->name;
  lp.type = (char *)"Pooling";
  lp.pooling_param = &v->pp;
  v->lp = lp;
  nr_blob *bottom = l->bottom[0];
  nr_blob *top = q->levels > 1 ? v->out : l->top[0];
  NR_TRY(nr_layer_create(&v->lp, l->ctx, &bottom, 1, &top, 1, &v->pool, err));
  v->pool->phase = l->phase;
  if (nr_layer_setup(v->pool, err) != NR_OK)
    return nr_err_prefix(err, "pyramid level %d (%lldx%lld bins of %lldx%lld, pad %ux%u)", i,
                         (long long)bins, (long long)bins, (long long)kh, (long long)kw,
                         (unsigned)pp.pad_h, (unsigned)pp.pad_w);
  return NR_OK;
}

static nr_status spp_reshape(nr_layer *l, nr_error *err) {
  spp_priv *q = l->priv;
  const nr_blob *b = l->bottom[0];
  if (b->num_axes != 4)
    return nr_err_set(err, NR_ERR_INPUT, "bottom has %d axes, expected 4 (N, C, H, W)",
                      b->num_axes);
  if (b->shape[2] <= 0 || b->shape[3] <= 0)
    return nr_err_set(err, NR_ERR_INPUT, "bottom height and width must be > 0");
  if (b->shape[2] != q->h || b->shape[3] != q->w) {
    spp_free_levels(q);
    for (int i = 0; i < q->levels; i++)
      NR_TRY(spp_build_level(l, i, b->shape[2], b->shape[3], err));
    q->h = b->shape[2];
    q->w = b->shape[3];
  } else {
    for (int i = 0; i < q->levels; i++) NR_TRY(q->lv[i].pool->type->reshape(q->lv[i].pool, err));
  }
  if (q->levels == 1) return NR_OK;
  int64_t per_item = 0;
  for (int i = 0; i < q->levels; i++) per_item += q->lv[i].out->count / b->shape[0];
  if (b->count > q->acc_cap) {
    float *a = realloc(q->acc, (size_t)b->count * sizeof *a);
    if (!a) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    q->acc = a;
    q->acc_cap = b->count;
  }
  const int64_t dims[2] = {b->shape[0], per_item};
  return nr_blob_reshape(l->top[0], 2, dims, err);
}

static nr_status spp_forward(nr_layer *l, nr_error *err) {
  spp_priv *q = l->priv;
  for (int i = 0; i < q->levels; i++) NR_TRY(q->lv[i].pool->type->forward(q->lv[i].pool, err));
  if (q->levels == 1) return NR_OK;
  const int64_t num = l->bottom[0]->shape[0], width = l->top[0]->shape[1];
  int64_t off = 0;
  for (int i = 0; i < q->levels; i++) {
    const nr_blob *o = q->lv[i].out;
    const int64_t d = o->count / num;
    for (int64_t n = 0; n < num; n++)
      nr_copy(d, o->data + n * d, l->top[0]->data + n * width + off);
    off += d;
  }
  return NR_OK;
}

static nr_status spp_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  spp_priv *q = l->priv;
  nr_blob *b = l->bottom[0];
  if (q->levels == 1) {
    q->lv[0].pool->prop_down[0] = true;
    return q->lv[0].pool->type->backward(q->lv[0].pool, err);
  }
  const int64_t num = b->shape[0], width = l->top[0]->shape[1];
  int64_t off = 0;
  nr_set(b->count, 0.0f, q->acc);
  for (int i = 0; i < q->levels; i++) {
    nr_blob *o = q->lv[i].out;
    const int64_t d = o->count / num;
    for (int64_t n = 0; n < num; n++)
      nr_copy(d, l->top[0]->diff + n * width + off, o->diff + n * d);
    off += d;
    q->lv[i].pool->prop_down[0] = true;
    NR_TRY(q->lv[i].pool->type->backward(q->lv[i].pool, err)); /* overwrites b->diff */
    nr_axpy(b->count, 1.0f, b->diff, q->acc);
  }
  nr_copy(b->count, q->acc, b->diff);
  return NR_OK;
}

static void spp_destroy(nr_layer *l) {
  spp_priv *q = l->priv;
  if (!q) return;
  if (q->lv) {
    spp_free_levels(q);
    for (int i = 0; i < q->levels; i++) nr_blob_destroy(q->lv[i].out);
  }
  free(q->lv);
  free(q->acc);
  free(q);
}

const nr_layer_type nr_layer_spp = {
    .name = "SPP", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = spp_setup, .reshape = spp_reshape, .forward = spp_forward,
    .backward = spp_backward, .destroy = spp_destroy};
