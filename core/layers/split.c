/* Split: one bottom copied to N tops (the net inserts it where a blob feeds several
 * layers); backward sums the top diffs into the bottom diff. Not in place. */
#include "layer.h"
#include "nr_math.h"

static nr_status split_setup(nr_layer *l, nr_error *err) {
  for (int i = 0; i < l->ntop; i++)
    if (l->top[i] == l->bottom[0])
      return nr_err_set(err, NR_ERR_INPUT, "Split cannot run in place (top[%d] == bottom)", i);
  return NR_OK;
}

static nr_status split_reshape(nr_layer *l, nr_error *err) {
  for (int i = 0; i < l->ntop; i++) NR_TRY(nr_blob_reshape_like(l->top[i], l->bottom[0], err));
  return NR_OK;
}

static nr_status split_forward(nr_layer *l, nr_error *err) {
  const nr_blob *b = l->bottom[0];
  for (int i = 0; i < l->ntop; i++) nr_copy(b->count, b->data, l->top[i]->data);
  return NR_OK;
}

static nr_status split_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  nr_blob *b = l->bottom[0];
  const int64_t n = b->count;
  float *restrict dx = b->diff;
  nr_copy(n, l->top[0]->diff, dx);
  for (int t = 1; t < l->ntop; t++) {
    const float *restrict dy = l->top[t]->diff;
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i];
  }
  return NR_OK;
}

const nr_layer_type nr_layer_split = {
    .name = "Split", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = -1,
    .setup = split_setup, .reshape = split_reshape, .forward = split_forward,
    .backward = split_backward};
