/* HingeLoss: Caffe's HingeLossLayer, the one-vs-all hinge loss. bottom[0] holds scores
 * (N, C, ...) (row n = C·... scores), bottom[1] one integer label per row. With
 * t_nk = max(0, 1 + s_nk) for k ≠ label_n and t_nk = max(0, 1 − s_nk) at the label,
 * loss = Σ t / N (hinge_loss_param.norm L1, the default) or Σ t² / N (L2).
 * Backward: ±top_diff/N where t > 0 (L1), ±2·t·top_diff/N (L2), the sign − at the label;
 * no gradient to the labels. A label outside [0, C) is an input error.
 */
#include "layer.h"
#include "loss.h"
#include "nr_math.h"

static const Caffe__HingeLossParameter hinge_default = CAFFE__HINGE_LOSS_PARAMETER__INIT;

static bool is_l2(const nr_layer *l) {
  const Caffe__HingeLossParameter *p =
      l->param->hinge_loss_param ? l->param->hinge_loss_param : &hinge_default;
  return p->norm == CAFFE__HINGE_LOSS_PARAMETER__NORM__L2;
}

static nr_status hinge_setup(nr_layer *l, nr_error *err) {
  const Caffe__HingeLossParameter *p =
      l->param->hinge_loss_param ? l->param->hinge_loss_param : &hinge_default;
  if (p->norm != CAFFE__HINGE_LOSS_PARAMETER__NORM__L1 &&
      p->norm != CAFFE__HINGE_LOSS_PARAMETER__NORM__L2)
    return nr_err_set(err, NR_ERR_INPUT, "unknown hinge_loss_param.norm %d", (int)p->norm);
  return NR_OK;
}

static nr_status hinge_reshape(nr_layer *l, nr_error *err) {
  NR_TRY(nr__loss_check_row_labels(l->bottom[0], l->bottom[1], err));
  return nr_blob_reshape(l->top[0], 0, NULL, err);
}

/* The signed margin of score k of a row with label v: 1 + s, or 1 − s at the label. */
static float margin(const float *row, int64_t k, int v) {
  return k == v ? 1.0f - row[k] : 1.0f + row[k];
}

static nr_status hinge_forward(nr_layer *l, nr_error *err) {
  const nr_blob *s = l->bottom[0];
  const float *lab = l->bottom[1]->data;
  const int64_t num = s->shape[0], dim = num ? s->count / num : 0;
  const bool l2 = is_l2(l);
  double loss = 0;
  for (int64_t n = 0; n < num; n++) {
    int v;
    NR_TRY(nr__loss_label(lab, n, dim, &v, err));
    for (int64_t k = 0; k < dim; k++) {
      const float t = margin(s->data + n * dim, k, v);
      if (t > 0) loss += l2 ? (double)t * t : t;
    }
  }
  l->top[0]->data[0] = (float)(loss / (double)(num ? num : 1));
  return NR_OK;
}

static nr_status hinge_backward(nr_layer *l, nr_error *err) {
  if (l->prop_down[1])
    return nr_err_set(err, NR_ERR_INPUT, "cannot backpropagate to the label input (bottom[1])");
  if (!l->prop_down[0]) return NR_OK;
  nr_blob *s = l->bottom[0];
  const float *lab = l->bottom[1]->data;
  const int64_t num = s->shape[0], dim = num ? s->count / num : 0;
  const bool l2 = is_l2(l);
  const float scale = l->top[0]->diff[0] / (float)(num ? num : 1);
  for (int64_t n = 0; n < num; n++) {
    const int v = (int)lab[n];
    for (int64_t k = 0; k < dim; k++) {
      const float t = margin(s->data + n * dim, k, v);
      const float g = t > 0 ? (l2 ? 2 * t : 1.0f) * scale : 0.0f;
      s->diff[n * dim + k] = k == v ? -g : g;
    }
  }
  return NR_OK;
}

const nr_layer_type nr_layer_hinge_loss = {
    .name = "HingeLoss", .min_bottoms = 2, .max_bottoms = 2, .min_tops = 1, .max_tops = 1,
    .is_loss = true, .no_force_backward = 1u << 1,
    .setup = hinge_setup, .reshape = hinge_reshape, .forward = hinge_forward,
    .backward = hinge_backward};
