/* Embed: a lookup table. Each bottom value is an integer index in [0, input_dim); the top
 * gets that row of the (input_dim, num_output) weights (plus the bias), so the top shape is
 * the bottom shape with num_output appended. No gradient reaches the indices; backward
 * accumulates into the looked-up weight rows and the bias. */
#include <stdlib.h>
#include <string.h>

#include "filler.h"
#include "layer.h"
#include "nr_math.h"

static const Caffe__EmbedParameter embed_default = CAFFE__EMBED_PARAMETER__INIT;

static const Caffe__EmbedParameter *params(const nr_layer *l) {
  return l->param->embed_param ? l->param->embed_param : &embed_default;
}

static nr_status embed_setup(nr_layer *l, nr_error *err) {
  const Caffe__EmbedParameter *p = params(l);
  if (!p->has_num_output || p->num_output == 0)
    return nr_err_set(err, NR_ERR_INPUT, "embed_param.num_output must be given and positive");
  if (!p->has_input_dim || p->input_dim == 0)
    return nr_err_set(err, NR_ERR_INPUT, "embed_param.input_dim must be given and positive");
  if (l->top[0] == l->bottom[0])
    return nr_err_set(err, NR_ERR_INPUT, "Embed cannot run in place (top == bottom)");
  const int64_t n = p->num_output, k = p->input_dim;
  const int want = p->bias_term ? 2 : 1;
  if (l->nblobs == 0) {
    nr_rng *rng = l->ctx ? l->ctx->rng : NULL;
    const int64_t wshape[2] = {k, n};
    nr_blob *w = NULL;
    NR_TRY(nr_layer_add_param(l, 2, wshape, &w, err));
    nr_status s = nr_fill(w, p->weight_filler, rng, err);
    if (s != NR_OK) return nr_err_prefix(err, "weight_filler");
    if (p->bias_term) {
      nr_blob *bb = NULL;
      NR_TRY(nr_layer_add_param(l, 1, &n, &bb, err));
      s = nr_fill(bb, p->bias_filler, rng, err);
      if (s != NR_OK) return nr_err_prefix(err, "bias_filler");
    }
  }
  if (l->nblobs != want)
    return nr_err_set(err, NR_ERR_INPUT, "has %d parameter blobs, expected %d", l->nblobs,
                      want);
  if (l->blobs[0]->count != n * k)
    return nr_err_set(err, NR_ERR_INPUT, "weight blob has %lld elements, expected %lld x %lld",
                      (long long)l->blobs[0]->count, (long long)k, (long long)n);
  if (p->bias_term && l->blobs[1]->count != n)
    return nr_err_set(err, NR_ERR_INPUT, "bias blob has %lld elements, expected %lld",
                      (long long)l->blobs[1]->count, (long long)n);
  return NR_OK;
}

static nr_status embed_reshape(nr_layer *l, nr_error *err) {
  const nr_blob *b = l->bottom[0];
  if (b->num_axes >= NR_MAX_AXES)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[0] has %d axes, at most %d allowed",
                      b->num_axes, NR_MAX_AXES - 1);
  int64_t dims[NR_MAX_AXES];
  for (int i = 0; i < b->num_axes; i++) dims[i] = b->shape[i];
  dims[b->num_axes] = params(l)->num_output;
  return nr_blob_reshape(l->top[0], b->num_axes + 1, dims, err);
}

/* The row index of bottom element i, or an error for a non-integer or out-of-range value. */
static nr_status index_of(const nr_layer *l, int64_t i, int64_t *out, nr_error *err) {
  const float v = l->bottom[0]->data[i];
  const int64_t k = params(l)->input_dim;
  if (!(v >= 0.0f && v < (float)k) || (float)(int64_t)v != v)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[0] element %lld is %g, expected an integer index in [0, %lld)",
                      (long long)i, (double)v, (long long)k);
  *out = (int64_t)v;
  return NR_OK;
}

static nr_status embed_forward(nr_layer *l, nr_error *err) {
  const Caffe__EmbedParameter *p = params(l);
  const int64_t n = p->num_output, m = l->bottom[0]->count;
  const float *w = l->blobs[0]->data;
  const float *bias = p->bias_term ? l->blobs[1]->data : NULL;
  float *y = l->top[0]->data;
  for (int64_t i = 0; i < m; i++) {
    int64_t idx;
    NR_TRY(index_of(l, i, &idx, err));
    float *restrict row = y + i * n;
    const float *restrict src = w + idx * n;
    if (bias)
      for (int64_t j = 0; j < n; j++) row[j] = src[j] + bias[j];
    else
      memcpy(row, src, (size_t)n * sizeof *row);
  }
  return NR_OK;
}

static nr_status embed_backward(nr_layer *l, nr_error *err) {
  if (l->prop_down[0])
    return nr_err_set(err, NR_ERR_INPUT, "Embed cannot propagate a gradient to its indices");
  const Caffe__EmbedParameter *p = params(l);
  const int64_t n = p->num_output, m = l->bottom[0]->count;
  const float *dy = l->top[0]->diff;
  float *dw = l->blobs[0]->diff;
  for (int64_t i = 0; i < m; i++) {
    int64_t idx;
    NR_TRY(index_of(l, i, &idx, err));
    float *restrict dst = dw + idx * n;
    const float *restrict src = dy + i * n;
    for (int64_t j = 0; j < n; j++) dst[j] += src[j];
  }
  if (p->bias_term) {
    float *restrict db = l->blobs[1]->diff;
    for (int64_t i = 0; i < m; i++) {
      const float *restrict src = dy + i * n;
      for (int64_t j = 0; j < n; j++) db[j] += src[j];
    }
  }
  return NR_OK;
}

const nr_layer_type nr_layer_embed = {
    .name = "Embed", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .no_force_backward = 1u, .setup = embed_setup, .reshape = embed_reshape,
    .forward = embed_forward, .backward = embed_backward};
