/* BatchReindex: Caffe's BatchReindexLayer. bottom[1] is a 1-axis blob of K indices into
 * the first axis of bottom[0] (N, ...); top (K, ...) row k = bottom[0] row index[k], so
 * rows may repeat or be left out. An index that is not an integer in [0, N) is an input
 * error at forward. Backward: each bottom[0] row gets the sum of the diffs of the top rows
 * that copied it (0 for rows not picked); the indices get no gradient.
 */
#include "layer.h"
#include "nr_math.h"

static nr_status reindex_reshape(nr_layer *l, nr_error *err) {
  const nr_blob *b = l->bottom[0], *idx = l->bottom[1];
  if (idx->num_axes != 1)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[1] (the indices) has %d axes, expected 1",
                      idx->num_axes);
  if (b->num_axes < 1)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[0] has 0 axes, expected at least 1");
  int64_t dims[NR_MAX_AXES];
  dims[0] = idx->shape[0];
  for (int i = 1; i < b->num_axes; i++) dims[i] = b->shape[i];
  return nr_blob_reshape(l->top[0], b->num_axes, dims, err);
}

static nr_status reindex_forward(nr_layer *l, nr_error *err) {
  const nr_blob *b = l->bottom[0];
  const float *idx = l->bottom[1]->data;
  const int64_t k = l->bottom[1]->count, n = b->shape[0];
  const int64_t inner = n ? b->count / n : 0;
  for (int64_t i = 0; i < k; i++) {
    const float v = idx[i];
    if (!(v >= 0 && v < (float)n) || v != (float)(int64_t)v)
      return nr_err_set(err, NR_ERR_INPUT,
                        "index %g at position %lld of bottom[1] is not a row of bottom[0] "
                        "(expected an integer in [0, %lld))",
                        (double)v, (long long)i, (long long)n);
  }
  for (int64_t i = 0; i < k; i++)
    nr_copy(inner, b->data + (int64_t)idx[i] * inner, l->top[0]->data + i * inner);
  return NR_OK;
}

static nr_status reindex_backward(nr_layer *l, nr_error *err) {
  if (l->prop_down[1])
    return nr_err_set(err, NR_ERR_INPUT, "cannot backpropagate to the indices (bottom[1])");
  if (!l->prop_down[0]) return NR_OK;
  nr_blob *b = l->bottom[0];
  const float *idx = l->bottom[1]->data;
  const int64_t k = l->bottom[1]->count, n = b->shape[0];
  const int64_t inner = n ? b->count / n : 0;
  nr_set(b->count, 0.0f, b->diff);
  for (int64_t i = 0; i < k; i++)
    nr_axpy(inner, 1.0f, l->top[0]->diff + i * inner, b->diff + (int64_t)idx[i] * inner);
  return NR_OK;
}

const nr_layer_type nr_layer_batch_reindex = {
    .name = "BatchReindex", .min_bottoms = 2, .max_bottoms = 2, .min_tops = 1, .max_tops = 1,
    .no_force_backward = 1u << 1,
    .reshape = reindex_reshape, .forward = reindex_forward, .backward = reindex_backward};
