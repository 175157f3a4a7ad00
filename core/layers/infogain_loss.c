/* InfogainLoss: Caffe's InfogainLossLayer (the 1.0 form, a generalization of
 * SoftmaxWithLoss). bottom[0] holds unnormalized scores, turned into probabilities p by a
 * softmax along infogain_loss_param.axis (default 1) over C classes; bottom[1] one
 * integer label per outer·inner position; the C×C infogain matrix H comes from bottom[2]
 * (any shape of C·C values) or, with two bottoms, from the binary BlobProto file
 * infogain_loss_param.source (read once, at setup). For each position with label y:
 *   ℓ = −Σ_k H[y][k] · log(max(p_k, FLT_MIN))
 * loss = Σℓ / normalizer (loss_param normalization and ignore_label as SoftmaxWithLoss).
 * Optional top[1] = p. Backward: dx_k = (p_k · Σ_j H[y][j] − H[y][k]) · top_diff /
 * normalizer, 0 at ignored positions; no gradient to the labels or to H.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "binary.h"
#include "layer.h"
#include "loss.h"
#include "nr_math.h"

/* softmax.c */
void nr__softmax_forward(int64_t outer, int64_t ch, int64_t inner, const float *x, float *y);

static const Caffe__InfogainLossParameter infogain_default = CAFFE__INFOGAIN_LOSS_PARAMETER__INIT;

typedef struct ig_priv {
  bool has_ignore;
  int ignore;
  int norm;
  int64_t outer, inner, ch;
  float *h;        /* the matrix read from `source`, or NULL (bottom[2]) */
  int64_t h_count;
  float *prob;     /* used when there is no second top */
  int64_t cap;
  float normalizer;
} ig_priv;

static nr_status ig_load_source(ig_priv *q, const char *path, nr_error *err) {
  ProtobufCMessage *m = NULL;
  NR_TRY(nr_proto_load_binary(path, &caffe__blob_proto__descriptor, &m, err));
  const Caffe__BlobProto *bp = (const Caffe__BlobProto *)m;
  nr_status s = NR_OK;
  q->h_count = (int64_t)nr_blobproto_count(bp, 0);
  if (!(q->h = malloc((size_t)(q->h_count ? q->h_count : 1) * sizeof *q->h)))
    s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  else
    s = nr_blobproto_get_floats(bp, 0, q->h, (size_t)q->h_count, err);
  protobuf_c_message_free_unpacked(m, NULL);
  if (s != NR_OK) return nr_err_prefix(err, "infogain_loss_param.source '%s'", path);
  return NR_OK;
}

static nr_status ig_setup(nr_layer *l, nr_error *err) {
  const Caffe__InfogainLossParameter *p =
      l->param->infogain_loss_param ? l->param->infogain_loss_param : &infogain_default;
  const Caffe__LossParameter *lp = l->param->loss_param;
  ig_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  q->has_ignore = lp && lp->has_ignore_label;
  q->ignore = lp ? lp->ignore_label : 0;
  q->norm = nr__loss_norm_mode(lp);
  if (l->nbottom < 3) {
    if (!p->source || !p->source[0])
      return nr_err_set(err, NR_ERR_INPUT,
                        "the infogain matrix is missing: give infogain_loss_param.source "
                        "or a third bottom");
    NR_TRY(ig_load_source(q, p->source, err));
  }
  return NR_OK;
}

static nr_status ig_reshape(nr_layer *l, nr_error *err) {
  const Caffe__InfogainLossParameter *p =
      l->param->infogain_loss_param ? l->param->infogain_loss_param : &infogain_default;
  ig_priv *q = l->priv;
  const nr_blob *b = l->bottom[0], *lab = l->bottom[1];
  const int axis = nr_blob_axis(b, p->axis);
  if (axis < 0)
    return nr_err_set(err, NR_ERR_INPUT,
                      "infogain_loss_param.axis %d out of range for bottom[0] with %d axes",
                      (int)p->axis, b->num_axes);
  q->outer = nr_blob_count_range(b, 0, axis);
  q->ch = b->shape[axis];
  q->inner = nr_blob_count_range(b, axis + 1, b->num_axes);
  if (lab->count != q->outer * q->inner)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[1] count %lld does not match the %lld predictions of bottom[0] "
                      "(one label per position: with axis %d and bottom[0] shaped (N, C, H, "
                      "W), N·H·W labels)",
                      (long long)lab->count, (long long)(q->outer * q->inner), axis);
  const int64_t hc = l->nbottom > 2 ? l->bottom[2]->count : q->h_count;
  if (hc != q->ch * q->ch)
    return nr_err_set(err, NR_ERR_INPUT,
                      "the infogain matrix (%s) has %lld values, expected %lld x %lld (classes "
                      "along axis %d)",
                      l->nbottom > 2 ? "bottom[2]" : "source", (long long)hc, (long long)q->ch,
                      (long long)q->ch, axis);
  NR_TRY(nr_blob_reshape(l->top[0], 0, NULL, err));
  return nr__loss_prob_reshape(l, &q->prob, &q->cap, err);
}

static float *ig_probs(nr_layer *l) {
  ig_priv *q = l->priv;
  return l->ntop > 1 ? l->top[1]->data : q->prob;
}

static const float *ig_matrix(const nr_layer *l) {
  const ig_priv *q = l->priv;
  return l->nbottom > 2 ? l->bottom[2]->data : q->h;
}

static nr_status ig_forward(nr_layer *l, nr_error *err) {
  ig_priv *q = l->priv;
  float *pr = ig_probs(l);
  const float *h = ig_matrix(l), *lab = l->bottom[1]->data;
  nr__softmax_forward(q->outer, q->ch, q->inner, l->bottom[0]->data, pr);
  double loss = 0;
  int64_t valid = 0;
  for (int64_t o = 0; o < q->outer; o++)
    for (int64_t i = 0; i < q->inner; i++) {
      int v = (int)lab[o * q->inner + i];
      if (q->has_ignore && v == q->ignore) continue;
      NR_TRY(nr__loss_label(lab, o * q->inner + i, q->ch, &v, err));
      for (int64_t k = 0; k < q->ch; k++) {
        const float pk = pr[(o * q->ch + k) * q->inner + i];
        loss -= (double)h[v * q->ch + k] * log(pk > FLT_MIN ? pk : FLT_MIN);
      }
      valid++;
    }
  q->normalizer = nr__loss_normalizer(q->norm, q->outer, q->inner, valid);
  l->top[0]->data[0] = (float)(loss / q->normalizer);
  return NR_OK;
}

static nr_status ig_backward(nr_layer *l, nr_error *err) {
  ig_priv *q = l->priv;
  if (l->prop_down[1])
    return nr_err_set(err, NR_ERR_INPUT, "cannot backpropagate to the label input (bottom[1])");
  if (l->nbottom > 2 && l->prop_down[2])
    return nr_err_set(err, NR_ERR_INPUT,
                      "cannot backpropagate to the infogain matrix (bottom[2])");
  if (!l->prop_down[0]) return NR_OK;
  const float *pr = ig_probs(l), *h = ig_matrix(l), *lab = l->bottom[1]->data;
  float *dx = l->bottom[0]->diff;
  const float scale = l->top[0]->diff[0] / q->normalizer;
  for (int64_t o = 0; o < q->outer; o++)
    for (int64_t i = 0; i < q->inner; i++) {
      const int v = (int)lab[o * q->inner + i];
      const int64_t base = o * q->ch * q->inner + i;
      if ((q->has_ignore && v == q->ignore) || v < 0 || v >= q->ch) {
        for (int64_t k = 0; k < q->ch; k++) dx[base + k * q->inner] = 0;
        continue;
      }
      const float *row = h + v * q->ch;
      double rsum = 0;
      for (int64_t k = 0; k < q->ch; k++) rsum += row[k];
      for (int64_t k = 0; k < q->ch; k++)
        dx[base + k * q->inner] =
            (float)((pr[base + k * q->inner] * rsum - row[k]) * scale);
    }
  return NR_OK;
}

static void ig_destroy(nr_layer *l) {
  ig_priv *q = l->priv;
  if (!q) return;
  free(q->h);
  free(q->prob);
  free(q);
}

const nr_layer_type nr_layer_infogain_loss = {
    .name = "InfogainLoss", .min_bottoms = 2, .max_bottoms = 3, .min_tops = 1, .max_tops = 2,
    .is_loss = true, .no_force_backward = (1u << 1) | (1u << 2),
    .setup = ig_setup, .reshape = ig_reshape, .forward = ig_forward,
    .backward = ig_backward, .destroy = ig_destroy};
