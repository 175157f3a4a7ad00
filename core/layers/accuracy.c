/* Accuracy: Caffe's AccuracyLayer, a metric (no backward, loss weight 0).
 *
 * bottom[0] scores with classes along accuracy_param.axis (default 1), bottom[1] one label
 * per outer·inner position. A position counts as correct when fewer than top_k classes
 * score >= the true class's score other than the true class itself (so ties count
 * against, as Caffe). Labels equal to ignore_label are skipped. top[0] = correct / counted
 * (0 when nothing was counted); optional top[1] (num_classes) = per-class accuracy.
 */
#include <stdlib.h>

#include "layer.h"
#include "nr_math.h"

static const Caffe__AccuracyParameter default_param = CAFFE__ACCURACY_PARAMETER__INIT;

typedef struct acc_priv {
  int axis;
  int64_t top_k, outer, inner, ch;
  bool has_ignore;
  int ignore;
  int64_t *per_class_count;
} acc_priv;

static nr_status acc_setup(nr_layer *l, nr_error *err) {
  const Caffe__AccuracyParameter *p =
      l->param->accuracy_param ? l->param->accuracy_param : &default_param;
  acc_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  q->top_k = p->top_k;
  q->has_ignore = p->has_ignore_label;
  q->ignore = p->ignore_label;
  if (q->top_k < 1) return nr_err_set(err, NR_ERR_INPUT, "top_k must be >= 1");
  return NR_OK;
}

static nr_status acc_reshape(nr_layer *l, nr_error *err) {
  acc_priv *q = l->priv;
  const Caffe__AccuracyParameter *p =
      l->param->accuracy_param ? l->param->accuracy_param : &default_param;
  const nr_blob *b = l->bottom[0];
  q->axis = nr_blob_axis(b, p->axis);
  if (q->axis < 0)
    return nr_err_set(err, NR_ERR_INPUT, "axis %d out of range for bottom[0] with %d axes",
                      (int)p->axis, b->num_axes);
  q->outer = nr_blob_count_range(b, 0, q->axis);
  q->ch = b->shape[q->axis];
  q->inner = nr_blob_count_range(b, q->axis + 1, b->num_axes);
  if (q->top_k > q->ch)
    return nr_err_set(err, NR_ERR_INPUT, "top_k %lld is larger than the number of classes %lld",
                      (long long)q->top_k, (long long)q->ch);
  if (l->bottom[1]->count != q->outer * q->inner)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[1] count %lld does not match bottom[0] outer count %lld (one "
                      "label per prediction)",
                      (long long)l->bottom[1]->count, (long long)(q->outer * q->inner));
  NR_TRY(nr_blob_reshape(l->top[0], 0, NULL, err));
  if (l->ntop > 1) {
    NR_TRY(nr_blob_reshape(l->top[1], 1, &q->ch, err));
    int64_t *c = realloc(q->per_class_count, (size_t)q->ch * sizeof *c);
    if (!c) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    q->per_class_count = c;
  }
  return NR_OK;
}

static nr_status acc_forward(nr_layer *l, nr_error *err) {
  acc_priv *q = l->priv;
  const float *x = l->bottom[0]->data, *lab = l->bottom[1]->data;
  float *per = l->ntop > 1 ? l->top[1]->data : NULL;
  if (per)
    for (int64_t c = 0; c < q->ch; c++) {
      per[c] = 0;
      q->per_class_count[c] = 0;
    }
  int64_t correct = 0, count = 0;
  for (int64_t o = 0; o < q->outer; o++)
    for (int64_t i = 0; i < q->inner; i++) {
      int v = (int)lab[o * q->inner + i];
      if (q->has_ignore && v == q->ignore) continue;
      if (v < 0 || v >= q->ch)
        return nr_err_set(err, NR_ERR_INPUT, "label %d at position %lld out of range [0, %lld)",
                          v, (long long)(o * q->inner + i), (long long)q->ch);
      const float *xp = x + o * q->ch * q->inner + i;
      const float truth = xp[v * q->inner];
      int64_t better = -1; /* the true class counts itself */
      for (int64_t c = 0; c < q->ch && better < q->top_k; c++) better += xp[c * q->inner] >= truth;
      if (per) q->per_class_count[v]++;
      if (better < q->top_k) {
        correct++;
        if (per) per[v] += 1;
      }
      count++;
    }
  l->top[0]->data[0] = count ? (float)((double)correct / (double)count) : 0.0f;
  if (per)
    for (int64_t c = 0; c < q->ch; c++)
      per[c] = q->per_class_count[c] ? per[c] / (float)q->per_class_count[c] : 0.0f;
  return NR_OK;
}

static void acc_destroy(nr_layer *l) {
  acc_priv *q = l->priv;
  if (!q) return;
  free(q->per_class_count);
  free(q);
  l->priv = NULL;
}

const nr_layer_type nr_layer_accuracy = {
    .name = "Accuracy",
    .min_bottoms = 2, .max_bottoms = 2, .min_tops = 1, .max_tops = 2,
    .no_force_backward = 1u << 1,
    .setup = acc_setup, .reshape = acc_reshape, .forward = acc_forward,
    .destroy = acc_destroy};
