/* Convolution: Caffe's ConvolutionLayer over 1 or more spatial axes, with groups, dilation
 * and one weight set shared by every bottom/top pair.
 *
 * Weight (num_output, channels/group, k...), bias (num_output) when bias_term. Output size
 * per spatial axis: ⌊(in + 2·pad − (dilation·(k−1)+1)) / stride⌋ + 1. The math (batched
 * im2col + one GEMM per group and chunk, a 1×1 fast path) lives in im2col.c.
 * Backward accumulates weight and bias diffs and overwrites bottom diffs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filler.h"
#include "im2col.h"
#include "layer.h"
#include "nr_math.h"

static const Caffe__ConvolutionParameter default_param = CAFFE__CONVOLUTION_PARAMETER__INIT;

/* The layer's state: the convolution, and the weight-gradient chunks (im2col.h) that the
 * net's sample slices computed (conv_params_samples) for conv_backward_params to add. */
typedef struct conv_priv {
  nr_conv cv; /* first: the priv is also read as an nr_conv (tests, Winograd checks) */
  float *parts;        /* chunk c's product at parts + c·weight count */
  int64_t parts_cap;   /* floats */
  bool done[NR_CONV_WGRAD_MAX_CHUNKS];
} conv_priv;

/* "3x3" from n values. */
static void dims_str(const int64_t *v, int n, char *buf, size_t len) {
  size_t off = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && off < len; i++)
    off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? "x" : "", (long long)v[i]);
}

static nr_status conv_setup(nr_layer *l, nr_error *err) {
  const Caffe__ConvolutionParameter *p =
      l->param->convolution_param ? l->param->convolution_param : &default_param;
  if (l->ntop != l->nbottom)
    return nr_err_set(err, NR_ERR_INPUT, "needs as many tops as bottoms (%d bottoms, %d tops)",
                      l->nbottom, l->ntop);
  conv_priv *cp = calloc(1, sizeof *cp);
  if (!cp) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = cp;
  nr_conv *cv = &cp->cv;
  const nr_blob *b = l->bottom[0];
  NR_TRY(nr__conv_parse(cv, p, b, err));
  int64_t channels = b->shape[cv->axis];
  if (channels % cv->group != 0)
    return nr_err_set(err, NR_ERR_INPUT, "bottom channels %lld not a multiple of group %lld",
                      (long long)channels, (long long)cv->group);
  int64_t wdims[NR_CONV_MAX_SP + 2] = {cv->num_output, channels / cv->group};
  for (int a = 0; a < cv->nsp; a++) wdims[2 + a] = cv->kernel[a];
  nr_rng *rng = l->ctx ? l->ctx->rng : NULL;
  nr_blob *w = NULL, *bias = NULL;
  NR_TRY(nr_layer_add_param(l, 2 + cv->nsp, wdims, &w, err));
  if (nr_fill(w, p->weight_filler, rng, err) != NR_OK) return nr_err_prefix(err, "weight_filler");
  if (cv->bias_term) {
    NR_TRY(nr_layer_add_param(l, 1, &cv->num_output, &bias, err));
    if (nr_fill(bias, p->bias_filler, rng, err) != NR_OK) return nr_err_prefix(err, "bias_filler");
  }
  return NR_OK;
}

static bool conv_can_slice(const nr_layer *l);

static nr_status conv_reshape(nr_layer *l, nr_error *err) {
  nr_conv *cv = l->priv;
  const nr_blob *b0 = l->bottom[0];
  const int want_axes = cv->axis + 1 + cv->nsp;
  const int64_t channels = l->blobs[0]->shape[1] * cv->group;
  for (int i = 0; i < l->nbottom; i++) {
    const nr_blob *b = l->bottom[i];
    if (b->num_axes != want_axes)
      return nr_err_set(err, NR_ERR_INPUT, "bottom[%d] has %d axes, expected %d", i,
                        b->num_axes, want_axes);
    if (b->shape[cv->axis] != channels)
      return nr_err_set(err, NR_ERR_INPUT,
                        "bottom[%d] has %lld channels, expected %lld (the weights' input "
                        "channels)",
                        i, (long long)b->shape[cv->axis], (long long)channels);
    if (i > 0 && !nr_blob_same_shape(b, b0)) {
      char s0[256], s1[256];
      return nr_err_set(err, NR_ERR_INPUT, "bottom[%d] shape %s differs from bottom[0] shape %s",
                        i, nr_blob_shape_str(b, s1, sizeof s1),
                        nr_blob_shape_str(b0, s0, sizeof s0));
    }
  }
  int64_t ext[NR_CONV_MAX_SP], padded[NR_CONV_MAX_SP];
  bool too_big = false;
  for (int a = 0; a < cv->nsp; a++) {
    cv->im_sp[a] = b0->shape[cv->axis + 1 + a];
    ext[a] = nr__conv_extent(cv, a);
    padded[a] = cv->im_sp[a] + 2 * cv->pad[a];
    if (ext[a] > padded[a]) too_big = true;
    cv->col_sp[a] = (padded[a] - ext[a]) / cv->stride[a] + 1;
  }
  if (too_big) {
    char ks[128], is[128];
    dims_str(ext, cv->nsp, ks, sizeof ks);
    dims_str(padded, cv->nsp, is, sizeof is);
    return nr_err_set(err, NR_ERR_INPUT, "kernel %s larger than padded input %s", ks, is);
  }
  cv->num = nr_blob_count_range(b0, 0, cv->axis);
  cv->in_ch = channels;
  cv->out_ch = cv->num_output;
  NR_TRY(nr__conv_shape_tops(cv, b0, l->top, l->ntop, want_axes, cv->col_sp, err));
  /* room for the weight-gradient chunks of the sample slices */
  conv_priv *cp = l->priv;
  memset(cp->done, 0, sizeof cp->done);
  const int64_t need = nr__conv_wgrad_chunks(cv) * nr__conv_weight_count(cv);
  if (l->nbottom == 1 && need > cp->parts_cap && conv_can_slice(l)) {
    float *p = realloc(cp->parts, (size_t)need * sizeof *p);
    if (!p)
      return nr_err_set(err, NR_ERR_NOMEM, "out of memory for %lld weight-gradient chunks",
                        (long long)nr__conv_wgrad_chunks(cv));
    cp->parts = p;
    cp->parts_cap = need;
  }
  return NR_OK;
}

/* Samples [n0, n1) of every bottom/top pair (forward_samples; the whole batch is one such
 * range): the convolution's shapes with the batch cut to the range. */
static nr_status conv_forward_samples(nr_layer *l, int64_t n0, int64_t n1, nr_error *err) {
  nr_conv cv = *(const nr_conv *)l->priv;
  const int64_t in = cv.in_ch * cv.im_dim, out = cv.out_ch * cv.col_dim;
  cv.num = n1 - n0;
  for (int i = 0; i < l->nbottom; i++) {
    float *top = l->top[i]->data + n0 * out;
    NR_TRY(nr__conv_forward(&cv, l->bottom[i]->data + n0 * in, l->blobs[0]->data, top, err));
    if (cv.bias_term) nr__conv_bias_add(cv.num, cv.out_ch, cv.col_dim, l->blobs[1]->data, top);
  }
  return NR_OK;
}

static nr_status conv_forward(nr_layer *l, nr_error *err) {
  return conv_forward_samples(l, 0, ((const nr_conv *)l->priv)->num, err);
}

/* Whether the weight-gradient chunks go through the sample slices: one bottom, and a
 * cut into chunks whose buffer reshape made. */
static int64_t slice_chunks(const conv_priv *cp, const nr_layer *l) {
  const int64_t chunks = nr__conv_wgrad_chunks(&cp->cv);
  return l->nbottom == 1 && chunks > 1 &&
                 chunks * nr__conv_weight_count(&cp->cv) <= cp->parts_cap
             ? chunks
             : 0;
}

/* The weight-gradient chunks wholly inside samples [n0, n1), from the columns the forward
 * of this slice left on this thread (im2col.h). */
static nr_status conv_params_samples(nr_layer *l, int64_t n0, int64_t n1, nr_error *err) {
  conv_priv *cp = l->priv;
  const nr_conv *cv = &cp->cv;
  const int64_t chunks = slice_chunks(cp, l), count = nr__conv_weight_count(cv);
  for (int64_t c = 0; c < chunks; c++) {
    if (cv->num * c / chunks < n0 || cv->num * (c + 1) / chunks > n1) continue;
    NR_TRY(nr__conv_weight_grad_chunk(cv, l->bottom[0]->data, l->top[0]->diff, c,
                                      cp->parts + c * count, err));
    cp->done[c] = true;
  }
  return NR_OK;
}

static nr_status conv_backward_params(nr_layer *l, nr_error *err) {
  conv_priv *cp = l->priv;
  nr_conv *cv = &cp->cv;
  const int64_t chunks = slice_chunks(cp, l);
  bool all = chunks > 0;
  for (int64_t c = 0; c < chunks; c++) all &= cp->done[c];
  memset(cp->done, 0, sizeof cp->done);
  for (int i = 0; i < l->nbottom; i++) {
    const float *td = l->top[i]->diff;
    if (cv->bias_term) nr__conv_bias_grad(cv->num, cv->out_ch, cv->col_dim, td, l->blobs[1]->diff);
    if (all) nr__conv_weight_grad_add(cv, cp->parts, l->blobs[0]->diff);
    else NR_TRY(nr__conv_weight_grad(cv, l->bottom[i]->data, td, l->blobs[0]->diff, err));
  }
  return NR_OK;
}

static nr_status conv_backward_samples(nr_layer *l, int64_t n0, int64_t n1, nr_error *err) {
  nr_conv cv = *(const nr_conv *)l->priv;
  const int64_t in = cv.in_ch * cv.im_dim, out = cv.out_ch * cv.col_dim;
  cv.num = n1 - n0;
  for (int i = 0; i < l->nbottom; i++)
    if (l->prop_down[i])
      NR_TRY(nr__conv_backward_data(&cv, l->top[i]->diff + n0 * out, l->blobs[0]->data,
                                    l->bottom[i]->diff + n0 * in, err));
  return NR_OK;
}

static nr_status conv_backward(nr_layer *l, nr_error *err) {
  NR_TRY(conv_backward_params(l, err));
  return conv_backward_samples(l, 0, ((const nr_conv *)l->priv)->num, err);
}

/* Cut by samples (the channel axis must be 1) only when a sample's work is small, as in
 * LeNet (conv2: 3.2 MFLOP a sample): there the split keeps each thread's activations in its
 * own cache, which is worth more than the work. A large convolution (CaffeNet's, 200-450
 * MFLOP a sample) ran 15 % slower cut by samples on 2 threads than split inside its GEMMs,
 * where the threads share one packed copy of the weights and of the columns. */
#define NR_CONV_SLICE_MAX_FLOPS ((int64_t)16 << 20)
static bool conv_can_slice(const nr_layer *l) {
  const nr_conv *cv = l->priv;
  const int64_t flops = 2 * cv->out_ch * (cv->in_ch / cv->group) * cv->kdim * cv->col_dim;
  return cv->axis == 1 && flops <= NR_CONV_SLICE_MAX_FLOPS;
}

static void conv_destroy(nr_layer *l) {
  conv_priv *cp = l->priv;
  if (cp) free(cp->parts);
  free(cp);
  l->priv = NULL;
}

const nr_layer_type nr_layer_convolution = {
    .name = "Convolution",
    .min_bottoms = 1, .max_bottoms = -1, .min_tops = 1, .max_tops = -1,
    .setup = conv_setup, .reshape = conv_reshape, .forward = conv_forward,
    .backward = conv_backward, .destroy = conv_destroy,
    .forward_samples = conv_forward_samples, .backward_samples = conv_backward_samples,
    .backward_params = conv_backward_params, .params_samples = conv_params_samples,
    .can_slice = conv_can_slice};
