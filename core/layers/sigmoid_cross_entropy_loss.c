/* SigmoidCrossEntropyLoss: Caffe's SigmoidCrossEntropyLossLayer. bottom[0] holds logits x,
 * bottom[1] targets t in [0, 1] (same count). Per element, computed stably:
 *   ℓ = −[x·(t − [x ≥ 0]) − log(1 + exp(x − 2x·[x ≥ 0]))]
 * Elements whose target equals loss_param.ignore_label are skipped. loss = Σℓ / normalizer
 * (loss_param normalization, default VALID; legacy `normalize`; BATCH_SIZE = bottom[0]'s
 * first dim; never below 1). Backward: dx = (σ(x) − t) · top_diff / normalizer, 0 where
 * ignored; no gradient to the targets.
 */
#include <math.h>
#include <stdlib.h>

#include "layer.h"
#include "loss.h"
#include "nr_math.h"

static const Caffe__LossParameter default_loss = CAFFE__LOSS_PARAMETER__INIT;

typedef struct sce_priv {
  bool has_ignore;
  int ignore;
  int norm;
  float normalizer;
} sce_priv;

static nr_status sce_setup(nr_layer *l, nr_error *err) {
  const Caffe__LossParameter *lp = l->param->loss_param ? l->param->loss_param : &default_loss;
  sce_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  q->has_ignore = lp->has_ignore_label;
  q->ignore = lp->ignore_label;
  q->norm = nr__loss_norm_mode(lp);
  return NR_OK;
}

static nr_status sce_reshape(nr_layer *l, nr_error *err) {
  const nr_blob *a = l->bottom[0], *b = l->bottom[1];
  if (a->count != b->count)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[1] count %lld does not match bottom[0] count %lld (one target "
                      "per logit)",
                      (long long)b->count, (long long)a->count);
  if (a->num_axes < 1)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[0] has 0 axes, expected at least 1");
  return nr_blob_reshape(l->top[0], 0, NULL, err);
}

static bool ignored(const sce_priv *q, float t) {
  return q->has_ignore && (int)t == q->ignore && t == (float)q->ignore;
}

static nr_status sce_forward(nr_layer *l, nr_error *err) {
  sce_priv *q = l->priv;
  const float *x = l->bottom[0]->data, *t = l->bottom[1]->data;
  const int64_t n = l->bottom[0]->count, outer = l->bottom[0]->shape[0];
  double loss = 0;
  int64_t valid = 0;
  for (int64_t i = 0; i < n; i++) {
    if (ignored(q, t[i])) continue;
    const double xi = x[i], pos = xi >= 0 ? 1 : 0;
    loss -= xi * (t[i] - pos) - log1p(exp(xi - 2 * xi * pos));
    valid++;
  }
  q->normalizer = nr__loss_normalizer(q->norm, outer, outer ? n / outer : 0, valid);
  l->top[0]->data[0] = (float)(loss / q->normalizer);
  return NR_OK;
}

static nr_status sce_backward(nr_layer *l, nr_error *err) {
  sce_priv *q = l->priv;
  if (l->prop_down[1])
    return nr_err_set(err, NR_ERR_INPUT, "cannot backpropagate to the target input (bottom[1])");
  if (!l->prop_down[0]) return NR_OK;
  const float *x = l->bottom[0]->data, *t = l->bottom[1]->data;
  float *dx = l->bottom[0]->diff;
  const float scale = l->top[0]->diff[0] / q->normalizer;
  for (int64_t i = 0; i < l->bottom[0]->count; i++)
    dx[i] = ignored(q, t[i]) ? 0.0f : (1.0f / (1.0f + expf(-x[i])) - t[i]) * scale;
  return NR_OK;
}

static void sce_destroy(nr_layer *l) {
  free(l->priv);
  l->priv = NULL;
}

const nr_layer_type nr_layer_sigmoid_cross_entropy_loss = {
    .name = "SigmoidCrossEntropyLoss",
    .min_bottoms = 2, .max_bottoms = 2, .min_tops = 1, .max_tops = 1,
    .is_loss = true, .no_force_backward = 1u << 1,
    .setup = sce_setup, .reshape = sce_reshape, .forward = sce_forward,
    .backward = sce_backward, .destroy = sce_destroy};
