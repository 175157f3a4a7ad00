/* Eltwise: Caffe's EltwiseLayer over 2+ bottoms of one shape.
 *   SUM  (default): top = Σ coeff_i · bottom_i (coeff: none = all 1, or one per bottom)
 *   PROD: top = Π bottom_i; gradient Π_{j≠i} bottom_j computed directly when
 *         stable_prod_grad (default), else as top / bottom_i (Caffe's fast variant)
 *   MAX:  top = max; ties between bottoms 0 and 1 go to bottom 1, later ties keep the
 *         earlier bottom (Caffe's order); the gradient goes to the arg max only.
 */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "parallel.h"
#include "nr_math.h"

static const Caffe__EltwiseParameter default_param = CAFFE__ELTWISE_PARAMETER__INIT;

typedef struct elt_priv {
  int op;
  bool stable;
  float *coeff; /* one per bottom */
  int32_t *mask;
  int64_t cap;
} elt_priv;

static nr_status elt_setup(nr_layer *l, nr_error *err) {
  const Caffe__EltwiseParameter *p =
      l->param->eltwise_param ? l->param->eltwise_param : &default_param;
  elt_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  q->op = (int)p->operation;
  q->stable = p->stable_prod_grad;
  if (p->n_coeff && q->op != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM)
    return nr_err_set(err, NR_ERR_INPUT, "coeff is only allowed with operation SUM");
  if (p->n_coeff && p->n_coeff != (size_t)l->nbottom)
    return nr_err_set(err, NR_ERR_INPUT, "%zu coeff values for %d bottoms; give one per bottom",
                      p->n_coeff, l->nbottom);
  if (q->op != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM &&
      q->op != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD &&
      q->op != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__MAX)
    return nr_err_set(err, NR_ERR_INPUT, "unknown eltwise operation %d", q->op);
  q->coeff = malloc((size_t)l->nbottom * sizeof *q->coeff);
  if (!q->coeff) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  for (int i = 0; i < l->nbottom; i++) q->coeff[i] = p->n_coeff ? p->coeff[i] : 1.0f;
  return NR_OK;
}

static nr_status elt_reshape(nr_layer *l, nr_error *err) {
  elt_priv *q = l->priv;
  for (int i = 1; i < l->nbottom; i++)
    if (!nr_blob_same_shape(l->bottom[i], l->bottom[0])) {
      char s0[256], s1[256];
      return nr_err_set(err, NR_ERR_INPUT, "bottom[%d] shape %s differs from bottom[0] shape %s",
                        i, nr_blob_shape_str(l->bottom[i], s1, sizeof s1),
                        nr_blob_shape_str(l->bottom[0], s0, sizeof s0));
    }
  if (l->top[0] != l->bottom[0]) NR_TRY(nr_blob_reshape_like(l->top[0], l->bottom[0], err));
  if (q->op == CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__MAX && l->bottom[0]->count > q->cap) {
    int32_t *m = realloc(q->mask, (size_t)l->bottom[0]->count * sizeof *m);
    if (!m) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    q->mask = m;
    q->cap = l->bottom[0]->count;
  }
  return NR_OK;
}

/* Both passes are element-wise: they run over element ranges split between the helper
 * threads (parallel.h), each range through the same operations in the same order. */
typedef struct elt_job {
  nr_layer *l;
  elt_priv *q;
} elt_job;

static void forward_range(void *ctx, int64_t j0, int64_t j1) {
  const elt_job *jb = ctx;
  nr_layer *l = jb->l;
  elt_priv *q = jb->q;
  const int64_t n = j1 - j0;
  float *y = l->top[0]->data + j0;
  const float *a = l->bottom[0]->data + j0, *b = l->bottom[1]->data + j0;
  switch (q->op) {
    case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM: {
      /* y may alias bottom 0 (in place): read it before the other bottoms are added */
      const float c0 = q->coeff[0];
      for (int64_t j = 0; j < n; j++) y[j] = c0 * a[j];
      for (int i = 1; i < l->nbottom; i++) nr_axpy(n, q->coeff[i], l->bottom[i]->data + j0, y);
      break;
    }
    case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD:
      for (int64_t j = 0; j < n; j++) y[j] = a[j] * b[j];
      for (int i = 2; i < l->nbottom; i++) {
        const float *x = l->bottom[i]->data + j0;
        for (int64_t j = 0; j < n; j++) y[j] *= x[j];
      }
      break;
    default: { /* MAX */
      int *mask = q->mask + j0;
      for (int64_t j = 0; j < n; j++) {
        bool first = a[j] > b[j];
        mask[j] = first ? 0 : 1;
        y[j] = first ? a[j] : b[j];
      }
      for (int i = 2; i < l->nbottom; i++) {
        const float *x = l->bottom[i]->data + j0;
        for (int64_t j = 0; j < n; j++)
          if (x[j] > y[j]) {
            y[j] = x[j];
            mask[j] = i;
          }
      }
      break;
    }
  }
}

static void backward_range(void *ctx, int64_t j0, int64_t j1) {
  const elt_job *jb = ctx;
  nr_layer *l = jb->l;
  const elt_priv *q = jb->q;
  const int64_t n = j1 - j0;
  const float *dy = l->top[0]->diff + j0, *y = l->top[0]->data + j0;
  /* Bottom diffs may alias the top diff (in place on bottom 0): handle bottom 0 last. */
  for (int i = l->nbottom - 1; i >= 0; i--) {
    if (!l->prop_down[i]) continue;
    const float *x = l->bottom[i]->data + j0;
    float *dx = l->bottom[i]->diff + j0;
    switch (q->op) {
      case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM:
        for (int64_t j = 0; j < n; j++) dx[j] = q->coeff[i] * dy[j];
        break;
      case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD:
        if (q->stable) {
          for (int64_t j = 0; j < n; j++) {
            float prod = 1;
            for (int k = 0; k < l->nbottom; k++)
              if (k != i) prod *= l->bottom[k]->data[j0 + j];
            dx[j] = prod * dy[j];
          }
        } else {
          for (int64_t j = 0; j < n; j++) dx[j] = dy[j] * y[j] / x[j];
        }
        break;
      default: {
        const int *mask = q->mask + j0;
        for (int64_t j = 0; j < n; j++) dx[j] = mask[j] == i ? dy[j] : 0.0f;
        break;
      }
    }
  }
}

static nr_status elt_forward(nr_layer *l, nr_error *err) {
  (void)err;
  elt_job j = {l, l->priv};
  nr__parallel_for(l->bottom[0]->count, 32768, forward_range, &j);
  return NR_OK;
}

static nr_status elt_backward(nr_layer *l, nr_error *err) {
  (void)err;
  elt_job j = {l, l->priv};
  nr__parallel_for(l->bottom[0]->count, 32768, backward_range, &j);
  return NR_OK;
}

static void elt_destroy(nr_layer *l) {
  elt_priv *q = l->priv;
  if (!q) return;
  free(q->coeff);
  free(q->mask);
  free(q);
  l->priv = NULL;
}

const nr_layer_type nr_layer_eltwise = {
    .name = "Eltwise",
    .min_bottoms = 2, .max_bottoms = -1, .min_tops = 1, .max_tops = 1,
    .setup = elt_setup, .reshape = elt_reshape, .forward = elt_forward,
    .backward = elt_backward, .destroy = elt_destroy};
