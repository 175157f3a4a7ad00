/* SoftmaxWithLoss: Caffe's SoftmaxWithLossLayer, softmax (softmax_param.axis, default 1)
 * followed by the multinomial logistic loss against integer labels in bottom[1].
 *
 * bottom[1] holds one label per outer·inner position (e.g. N for (N, C), N·H·W for
 * (N, C, H, W)). Labels equal to loss_param.ignore_label contribute nothing; any other
 * label outside [0, C) is an input error (Caffe only checks it in debug builds).
 * loss = −Σ log(max(p[label], FLT_MIN)) / normalizer, normalizer from loss_param
 * normalization (VALID default: non-ignored count; FULL: all; BATCH_SIZE: outer; NONE: 1),
 * or from the legacy `normalize` (true = VALID, false = BATCH_SIZE) when normalization is
 * not given; never below 1. Optional top[1] = the probabilities.
 * Backward: dx = (p − onehot(label)) · top_diff / normalizer (0 at ignored positions);
 * no gradient to the labels.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "loss.h"
#include "nr_math.h"

/* softmax.c */
void nr__softmax_forward(int64_t outer, int64_t ch, int64_t inner, const float *x, float *y);

static const Caffe__LossParameter default_loss = CAFFE__LOSS_PARAMETER__INIT;
static const Caffe__SoftmaxParameter default_softmax = CAFFE__SOFTMAX_PARAMETER__INIT;

typedef struct swl_priv {
  int axis;
  bool has_ignore;
  int ignore;
  int norm;
  int64_t outer, inner, ch;
  float *prob; /* used when there is no second top */
  int64_t cap;
  float normalizer;
} swl_priv;

static nr_status swl_setup(nr_layer *l, nr_error *err) {
  const Caffe__LossParameter *lp = l->param->loss_param ? l->param->loss_param : &default_loss;
  swl_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  q->has_ignore = lp->has_ignore_label;
  q->ignore = lp->ignore_label;
  q->norm = nr__loss_norm_mode(lp);
  return NR_OK;
}

static nr_status swl_reshape(nr_layer *l, nr_error *err) {
  swl_priv *q = l->priv;
  const Caffe__SoftmaxParameter *sp =
      l->param->softmax_param ? l->param->softmax_param : &default_softmax;
  const nr_blob *b = l->bottom[0], *lab = l->bottom[1];
  q->axis = nr_blob_axis(b, sp->axis);
  if (q->axis < 0)
    return nr_err_set(err, NR_ERR_INPUT, "softmax axis %d out of range for bottom[0] with %d axes",
                      (int)sp->axis, b->num_axes);
  q->outer = nr_blob_count_range(b, 0, q->axis);
  q->ch = b->shape[q->axis];
  q->inner = nr_blob_count_range(b, q->axis + 1, b->num_axes);
  if (lab->count != q->outer * q->inner)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[1] count %lld does not match bottom[0] outer count %lld (one "
                      "label per prediction: with axis %d and bottom[0] shaped (N, C, ...), "
                      "N·H·W labels)",
                      (long long)lab->count, (long long)(q->outer * q->inner), q->axis);
  NR_TRY(nr_blob_reshape(l->top[0], 0, NULL, err));
  return nr__loss_prob_reshape(l, &q->prob, &q->cap, err);
}

static float *probs(nr_layer *l) {
  swl_priv *q = l->priv;
  return l->ntop > 1 ? l->top[1]->data : q->prob;
}

static nr_status swl_forward(nr_layer *l, nr_error *err) {
  swl_priv *q = l->priv;
  float *p = probs(l);
  nr__softmax_forward(q->outer, q->ch, q->inner, l->bottom[0]->data, p);
  const float *lab = l->bottom[1]->data;
  double loss = 0;
  int64_t valid = 0;
  for (int64_t o = 0; o < q->outer; o++)
    for (int64_t i = 0; i < q->inner; i++) {
      int v = (int)lab[o * q->inner + i];
      if (q->has_ignore && v == q->ignore) continue;
      NR_TRY(nr__loss_label(lab, o * q->inner + i, q->ch, &v, err));
      float pv = p[(o * q->ch + v) * q->inner + i];
      loss -= log(pv > FLT_MIN ? pv : FLT_MIN);
      valid++;
    }
  q->normalizer = nr__loss_normalizer(q->norm, q->outer, q->inner, valid);
  l->top[0]->data[0] = (float)(loss / q->normalizer);
  return NR_OK;
}

static nr_status swl_backward(nr_layer *l, nr_error *err) {
  swl_priv *q = l->priv;
  if (l->nbottom > 1 && l->prop_down[1])
    return nr_err_set(err, NR_ERR_INPUT, "cannot backpropagate to the label input (bottom[1])");
  if (!l->prop_down[0]) return NR_OK;
  const float *p = probs(l), *lab = l->bottom[1]->data;
  float *dx = l->bottom[0]->diff;
  const float scale = l->top[0]->diff[0] / q->normalizer;
  for (int64_t o = 0; o < q->outer; o++)
    for (int64_t i = 0; i < q->inner; i++) {
      int v = (int)lab[o * q->inner + i];
      const int64_t base = o * q->ch * q->inner + i;
      if (q->has_ignore && v == q->ignore) {
        for (int64_t c = 0; c < q->ch; c++) dx[base + c * q->inner] = 0;
        continue;
      }
      for (int64_t c = 0; c < q->ch; c++) dx[base + c * q->inner] = p[base + c * q->inner] * scale;
      if (v >= 0 && v < q->ch) dx[base + v * q->inner] -= scale;
    }
  return NR_OK;
}

static void swl_destroy(nr_layer *l) {
  swl_priv *q = l->priv;
  if (!q) return;
  free(q->prob);
  free(q);
  l->priv = NULL;
}

const nr_layer_type nr_layer_softmax_loss = {
    .name = "SoftmaxWithLoss",
    .min_bottoms = 2, .max_bottoms = 2, .min_tops = 1, .max_tops = 2,
    .is_loss = true, .no_force_backward = 1u << 1,
    .setup = swl_setup, .reshape = swl_reshape, .forward = swl_forward,
    .backward = swl_backward, .destroy = swl_destroy};
