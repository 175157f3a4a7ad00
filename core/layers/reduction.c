/* Reduction: Caffe's ReductionLayer. Reduces every axis from reduction_param.axis
 * (default 0) on to one value: the top keeps the bottom's axes before `axis` (axis 0 gives
 * a scalar). operation SUM (default), ASUM (Σ|x|), SUMSQ (Σx²) or MEAN, each times
 * reduction_param.coeff (default 1). Sums run in double, in order.
 * Backward per element: SUM coeff·dy, MEAN coeff·dy/n, ASUM coeff·dy·sign(x) (0 at 0),
 * SUMSQ 2·coeff·dy·x.
 */
#include <stdlib.h>

#include "layer.h"
#include "nr_math.h"

static const Caffe__ReductionParameter reduction_default = CAFFE__REDUCTION_PARAMETER__INIT;

typedef struct red_priv {
  int op;
  int64_t num, dim;
  float coeff; /* MEAN: coeff / dim */
} red_priv;

static nr_status red_setup(nr_layer *l, nr_error *err) {
  const Caffe__ReductionParameter *p =
      l->param->reduction_param ? l->param->reduction_param : &reduction_default;
  red_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  q->op = (int)p->operation;
  switch (q->op) {
    case CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__SUM:
    case CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__ASUM:
    case CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__SUMSQ:
    case CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__MEAN: return NR_OK;
    default: return nr_err_set(err, NR_ERR_INPUT, "unknown reduction operation %d", q->op);
  }
}

static nr_status red_reshape(nr_layer *l, nr_error *err) {
  const Caffe__ReductionParameter *p =
      l->param->reduction_param ? l->param->reduction_param : &reduction_default;
  red_priv *q = l->priv;
  const nr_blob *b = l->bottom[0];
  const int axis = nr_blob_axis(b, p->axis);
  if (axis < 0)
    return nr_err_set(err, NR_ERR_INPUT,
                      "reduction_param.axis %d out of range for a bottom with %d axes",
                      (int)p->axis, b->num_axes);
  q->num = nr_blob_count_range(b, 0, axis);
  q->dim = nr_blob_count_range(b, axis, b->num_axes);
  q->coeff = p->coeff;
  if (q->op == CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__MEAN) q->coeff /= (float)q->dim;
  return nr_blob_reshape(l->top[0], axis, b->shape, err);
}

static nr_status red_forward(nr_layer *l, nr_error *err) {
  const red_priv *q = l->priv;
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  for (int64_t i = 0; i < q->num; i++) {
    const float *r = x + i * q->dim;
    double s = 0;
    switch (q->op) {
      case CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__ASUM: s = nr_asum(q->dim, r); break;
      case CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__SUMSQ: s = nr_dot(q->dim, r, r); break;
      default:
        for (int64_t j = 0; j < q->dim; j++) s += r[j];
        break;
    }
    y[i] = (float)s * q->coeff;
  }
  return NR_OK;
}

static nr_status red_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const red_priv *q = l->priv;
  const float *x = l->bottom[0]->data, *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  for (int64_t i = 0; i < q->num; i++) {
    const float c = dy[i] * q->coeff;
    const float *r = x + i * q->dim;
    float *d = dx + i * q->dim;
    switch (q->op) {
      case CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__ASUM:
        for (int64_t j = 0; j < q->dim; j++) d[j] = r[j] > 0 ? c : r[j] < 0 ? -c : 0.0f;
        break;
      case CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__SUMSQ:
        for (int64_t j = 0; j < q->dim; j++) d[j] = 2 * c * r[j];
        break;
      default: nr_set(q->dim, c, d); break;
    }
  }
  return NR_OK;
}

static void red_destroy(nr_layer *l) { free(l->priv); }

const nr_layer_type nr_layer_reduction = {
    .name = "Reduction", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = red_setup, .reshape = red_reshape, .forward = red_forward,
    .backward = red_backward, .destroy = red_destroy};
