/* MultinomialLogisticLoss: Caffe's MultinomialLogisticLossLayer. bottom[0] holds
 * probabilities (N, C, ...): row n, of C·... values, is one distribution; bottom[1] one
 * integer label per row (N values). loss = −Σ_n log(max(p[n][label_n], 1e-20)) / N.
 * Backward: dp[n][label_n] = −top_diff / (N · max(p, 1e-20)), every other entry 0; no
 * gradient to the labels. A label outside [0, row length) is an input error (Caffe only
 * checks it in debug builds).
 */
#include <math.h>

#include "layer.h"
#include "loss.h"
#include "nr_math.h"

#define MLL_LOG_THRESHOLD 1e-20f /* Caffe's kLOG_THRESHOLD */

static nr_status mll_reshape(nr_layer *l, nr_error *err) {
  NR_TRY(nr__loss_check_row_labels(l->bottom[0], l->bottom[1], err));
  return nr_blob_reshape(l->top[0], 0, NULL, err);
}

static nr_status mll_forward(nr_layer *l, nr_error *err) {
  const nr_blob *p = l->bottom[0];
  const float *lab = l->bottom[1]->data;
  const int64_t num = p->shape[0], dim = num ? p->count / num : 0;
  double loss = 0;
  for (int64_t n = 0; n < num; n++) {
    int v;
    NR_TRY(nr__loss_label(lab, n, dim, &v, err));
    const float pv = p->data[n * dim + v];
    loss -= log(pv > MLL_LOG_THRESHOLD ? pv : MLL_LOG_THRESHOLD);
  }
  l->top[0]->data[0] = (float)(loss / (double)(num ? num : 1));
  return NR_OK;
}

static nr_status mll_backward(nr_layer *l, nr_error *err) {
  if (l->prop_down[1])
    return nr_err_set(err, NR_ERR_INPUT, "cannot backpropagate to the label input (bottom[1])");
  if (!l->prop_down[0]) return NR_OK;
  nr_blob *p = l->bottom[0];
  const float *lab = l->bottom[1]->data;
  const int64_t num = p->shape[0], dim = num ? p->count / num : 0;
  const float scale = -l->top[0]->diff[0] / (float)(num ? num : 1);
  nr_set(p->count, 0.0f, p->diff);
  for (int64_t n = 0; n < num; n++) {
    const int64_t at = n * dim + (int64_t)lab[n];
    const float pv = p->data[at];
    p->diff[at] = scale / (pv > MLL_LOG_THRESHOLD ? pv : MLL_LOG_THRESHOLD);
  }
  return NR_OK;
}

const nr_layer_type nr_layer_multinomial_logistic_loss = {
    .name = "MultinomialLogisticLoss",
    .min_bottoms = 2, .max_bottoms = 2, .min_tops = 1, .max_tops = 1,
    .is_loss = true, .no_force_backward = 1u << 1,
    .reshape = mll_reshape, .forward = mll_forward, .backward = mll_backward};
