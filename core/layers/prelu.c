/* PReLU: y = max(x, 0) + a_c min(x, 0) with a learnable slope a per channel (axis 1), or
 * one shared slope (channel_shared; then a 0-axis blob, as Caffe). Filler default:
 * constant 0.25. Backward needs x; when in place forward keeps a copy in priv. */
#include "filler.h"
#include "layer.h"
#include "nr_math.h"

static const Caffe__PReLUParameter prelu_default = CAFFE__PRE_LUPARAMETER__INIT;

static const Caffe__PReLUParameter *params(const nr_layer *l) {
  return l->param->prelu_param ? l->param->prelu_param : &prelu_default;
}

static nr_status prelu_setup(nr_layer *l, nr_error *err) {
  const Caffe__PReLUParameter *p = params(l);
  const nr_blob *b = l->bottom[0];
  if (b->num_axes < 2)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[0] has %d axes, expected at least 2",
                      b->num_axes);
  const int64_t channels = b->shape[1];
  if (l->nblobs == 0) {
    nr_blob *slope = NULL;
    NR_TRY(nr_layer_add_param(l, p->channel_shared ? 0 : 1, &channels, &slope, err));
    Caffe__FillerParameter def = CAFFE__FILLER_PARAMETER__INIT;
    def.value = 0.25f;
    NR_TRY(nr_fill(slope, p->filler ? p->filler : &def, l->ctx ? l->ctx->rng : NULL, err));
  }
  const int64_t want = p->channel_shared ? 1 : channels;
  if (l->blobs[0]->count != want)
    return nr_err_set(err, NR_ERR_INPUT,
                      "slope blob has %lld elements, expected %lld (channel_shared: %s)",
                      (long long)l->blobs[0]->count, (long long)want,
                      p->channel_shared ? "true" : "false");
  if (l->top[0] == b) {
    nr_blob *saved = NULL;
    NR_TRY(nr_blob_create("prelu_saved_x", NULL, &saved, err));
    l->priv = saved;
  }
  return NR_OK;
}

static void prelu_destroy(nr_layer *l) { nr_blob_destroy(l->priv); }

static nr_status prelu_reshape(nr_layer *l, nr_error *err) {
  const nr_blob *b = l->bottom[0];
  if (b->num_axes < 2)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[0] has %d axes, expected at least 2",
                      b->num_axes);
  if (!params(l)->channel_shared && b->shape[1] != l->blobs[0]->count)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[0] has %lld channels, expected %lld",
                      (long long)b->shape[1], (long long)l->blobs[0]->count);
  if (l->priv) NR_TRY(nr_blob_reshape_like(l->priv, b, err));
  return nr_blob_reshape_like(l->top[0], b, err);
}

/* Outer (num), channel and inner (spatial) extents; a shared slope uses channel 0. */
static void extents(const nr_layer *l, int64_t *outer, int64_t *channels, int64_t *inner) {
  const nr_blob *b = l->bottom[0];
  *channels = b->shape[1];
  *outer = b->shape[0];
  *inner = nr_blob_count_range(b, 2, b->num_axes);
}

static nr_status prelu_forward(nr_layer *l, nr_error *err) {
  int64_t outer, channels, inner;
  extents(l, &outer, &channels, &inner);
  const bool shared = params(l)->channel_shared;
  const float *slope = l->blobs[0]->data;
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  if (l->priv) nr_copy(l->bottom[0]->count, x, ((nr_blob *)l->priv)->data);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t c = 0; c < channels; c++) {
      const float a = slope[shared ? 0 : c];
      const int64_t off = (o * channels + c) * inner;
      for (int64_t i = 0; i < inner; i++) {
        const float v = x[off + i];
        y[off + i] = (v > 0.0f ? v : 0.0f) + a * (v < 0.0f ? v : 0.0f);
      }
    }
  return NR_OK;
}

static nr_status prelu_backward(nr_layer *l, nr_error *err) {
  int64_t outer, channels, inner;
  extents(l, &outer, &channels, &inner);
  const bool shared = params(l)->channel_shared;
  const float *slope = l->blobs[0]->data;
  float *dslope = l->blobs[0]->diff;
  const float *x = l->priv ? ((nr_blob *)l->priv)->data : l->bottom[0]->data;
  const float *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  /* The slope gradient first: dx may alias dy when in place. */
  for (int64_t o = 0; o < outer; o++)
    for (int64_t c = 0; c < channels; c++) {
      const int64_t off = (o * channels + c) * inner;
      float s = 0.0f;
      for (int64_t i = 0; i < inner; i++)
        s += x[off + i] <= 0.0f ? dy[off + i] * x[off + i] : 0.0f;
      dslope[shared ? 0 : c] += s;
    }
  if (l->prop_down[0])
    for (int64_t o = 0; o < outer; o++)
      for (int64_t c = 0; c < channels; c++) {
        const float a = slope[shared ? 0 : c];
        const int64_t off = (o * channels + c) * inner;
        for (int64_t i = 0; i < inner; i++)
          dx[off + i] = dy[off + i] * (x[off + i] > 0.0f ? 1.0f : a);
      }
  return NR_OK;
}

const nr_layer_type nr_layer_prelu = {
    .name = "PReLU", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = prelu_setup, .reshape = prelu_reshape, .forward = prelu_forward,
    .backward = prelu_backward, .destroy = prelu_destroy};
