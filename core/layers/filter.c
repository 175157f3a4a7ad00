/* Filter: Caffe's FilterLayer. The last bottom is a selector of N values (shape (N) or
 * (N, 1, ...)); every other bottom i has N rows along axis 0 and top i gets, in order,
 * the rows whose selector value is non-zero (top i shape (K, bottom i's other dims)). The
 * selection is read at every reshape, i.e. before every forward; the first reshape (at
 * setup, before any data) keeps all N rows, as Caffe's does, so the net can be shaped.
 * Backward: picked rows get their top row's diff, the others 0. The selector takes no
 * gradient: Caffe aborts when asked for one, here its diff is zeroed.
 */
#include <stdlib.h>

#include "layer.h"
#include "nr_math.h"

typedef struct filter_priv {
  bool shaped_once;
  int64_t *rows; /* picked rows, ascending */
  int64_t nrows, cap;
} filter_priv;

static nr_status filter_setup(nr_layer *l, nr_error *err) {
  if (l->ntop != l->nbottom - 1)
    return nr_err_set(err, NR_ERR_INPUT,
                      "needs one top per filtered bottom: %d bottoms (the last is the "
                      "selector) but %d tops",
                      l->nbottom, l->ntop);
  if (!(l->priv = calloc(1, sizeof(filter_priv))))
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  return NR_OK;
}

static nr_status filter_reshape(nr_layer *l, nr_error *err) {
  filter_priv *q = l->priv;
  const nr_blob *sel = l->bottom[l->nbottom - 1];
  if (sel->num_axes < 1)
    return nr_err_set(err, NR_ERR_INPUT, "the selector (last bottom) has 0 axes");
  for (int i = 1; i < sel->num_axes; i++)
    if (sel->shape[i] != 1)
      return nr_err_set(err, NR_ERR_INPUT,
                        "the selector (last bottom) must have dims of 1 after the first; "
                        "axis %d is %lld",
                        i, (long long)sel->shape[i]);
  const int64_t n = sel->shape[0];
  for (int t = 0; t < l->ntop; t++)
    if (l->bottom[t]->num_axes < 1 || l->bottom[t]->shape[0] != n)
      return nr_err_set(err, NR_ERR_INPUT,
                        "bottom[%d] must have %lld rows along axis 0, as the selector", t,
                        (long long)n);
  if (n > q->cap) {
    int64_t *r = realloc(q->rows, (size_t)n * sizeof *r);
    if (!r) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    q->rows = r;
    q->cap = n;
  }
  q->nrows = 0;
  for (int64_t i = 0; i < n; i++)
    if (!q->shaped_once || sel->data[i] != 0.0f) q->rows[q->nrows++] = i;
  q->shaped_once = true;
  for (int t = 0; t < l->ntop; t++) {
    const nr_blob *b = l->bottom[t];
    int64_t dims[NR_MAX_AXES];
    dims[0] = q->nrows;
    for (int i = 1; i < b->num_axes; i++) dims[i] = b->shape[i];
    NR_TRY(nr_blob_reshape(l->top[t], b->num_axes, dims, err));
  }
  return NR_OK;
}

static nr_status filter_forward(nr_layer *l, nr_error *err) {
  const filter_priv *q = l->priv;
  for (int t = 0; t < l->ntop; t++) {
    const nr_blob *b = l->bottom[t];
    const int64_t inner = nr_blob_count_range(b, 1, b->num_axes);
    for (int64_t k = 0; k < q->nrows; k++)
      nr_copy(inner, b->data + q->rows[k] * inner, l->top[t]->data + k * inner);
  }
  return NR_OK;
}

static nr_status filter_backward(nr_layer *l, nr_error *err) {
  const filter_priv *q = l->priv;
  nr_blob *sel = l->bottom[l->nbottom - 1];
  if (l->prop_down[l->nbottom - 1]) nr_set(sel->count, 0.0f, sel->diff);
  for (int t = 0; t < l->ntop; t++) {
    if (!l->prop_down[t]) continue;
    nr_blob *b = l->bottom[t];
    const int64_t inner = nr_blob_count_range(b, 1, b->num_axes);
    nr_set(b->count, 0.0f, b->diff);
    for (int64_t k = 0; k < q->nrows; k++)
      nr_copy(inner, l->top[t]->diff + k * inner, b->diff + q->rows[k] * inner);
  }
  return NR_OK;
}

static void filter_destroy(nr_layer *l) {
  filter_priv *q = l->priv;
  if (!q) return;
  free(q->rows);
  free(q);
}

const nr_layer_type nr_layer_filter = {
    .name = "Filter", .min_bottoms = 2, .max_bottoms = -1, .min_tops = 1, .max_tops = -1,
    .setup = filter_setup, .reshape = filter_reshape, .forward = filter_forward,
    .backward = filter_backward, .destroy = filter_destroy};
