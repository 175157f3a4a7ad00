/* Concat: Caffe's ConcatLayer, joins bottoms along concat_param.axis (default 1; legacy
 * concat_dim, not both). All bottoms share every other dimension. Backward copies each
 * bottom's slice of the top diff back (where prop_down).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "nr_math.h"

static const Caffe__ConcatParameter default_param = CAFFE__CONCAT_PARAMETER__INIT;

static int concat_axis(const nr_layer *l) {
  const Caffe__ConcatParameter *p =
      l->param->concat_param ? l->param->concat_param : &default_param;
  return nr_blob_axis(l->bottom[0], p->has_concat_dim ? (int)p->concat_dim : p->axis);
}

static nr_status concat_setup(nr_layer *l, nr_error *err) {
  const Caffe__ConcatParameter *p = l->param->concat_param;
  if (p && p->has_axis && p->has_concat_dim)
    return nr_err_set(err, NR_ERR_INPUT, "give either axis or concat_dim, not both");
  return NR_OK;
}

static nr_status concat_reshape(nr_layer *l, nr_error *err) {
  const nr_blob *b0 = l->bottom[0];
  int axis = concat_axis(l);
  if (axis < 0)
    return nr_err_set(err, NR_ERR_INPUT, "concat axis out of range for bottom[0] with %d axes",
                      b0->num_axes);
  int64_t dims[NR_MAX_AXES];
  memcpy(dims, b0->shape, sizeof(int64_t) * (size_t)b0->num_axes);
  for (int i = 1; i < l->nbottom; i++) {
    const nr_blob *b = l->bottom[i];
    if (b->num_axes != b0->num_axes)
      return nr_err_set(err, NR_ERR_INPUT, "bottom[%d] has %d axes, expected %d", i, b->num_axes,
                        b0->num_axes);
    for (int a = 0; a < b0->num_axes; a++) {
      if (a == axis) continue;
      if (b->shape[a] != b0->shape[a]) {
        char s0[256], s1[256];
        return nr_err_set(err, NR_ERR_INPUT,
                          "bottom[%d] shape %s differs from bottom[0] shape %s outside the "
                          "concat axis %d",
                          i, nr_blob_shape_str(b, s1, sizeof s1),
                          nr_blob_shape_str(b0, s0, sizeof s0), axis);
      }
    }
    dims[axis] += b->shape[axis];
  }
  return nr_blob_reshape(l->top[0], b0->num_axes, dims, err);
}

/* Copies between the bottoms and their slices of the top (to_top: forward). */
static void concat_copy(nr_layer *l, bool to_top) {
  const int axis = concat_axis(l);
  const nr_blob *t = l->top[0];
  const int64_t outer = nr_blob_count_range(t, 0, axis);
  const int64_t inner = nr_blob_count_range(t, axis + 1, t->num_axes);
  const int64_t top_ax = t->shape[axis];
  int64_t off = 0;
  for (int i = 0; i < l->nbottom; i++) {
    nr_blob *b = l->bottom[i];
    const int64_t n = b->shape[axis] * inner;
    if (to_top || l->prop_down[i])
      for (int64_t o = 0; o < outer; o++) {
        if (to_top)
          memcpy(t->data + (o * top_ax + off) * inner, b->data + o * n, (size_t)n * sizeof(float));
        else
          memcpy(b->diff + o * n, t->diff + (o * top_ax + off) * inner, (size_t)n * sizeof(float));
      }
    off += b->shape[axis];
  }
}

static nr_status concat_forward(nr_layer *l, nr_error *err) {
  concat_copy(l, true);
  return NR_OK;
}

static nr_status concat_backward(nr_layer *l, nr_error *err) {
  concat_copy(l, false);
  return NR_OK;
}

const nr_layer_type nr_layer_concat = {
    .name = "Concat",
    .min_bottoms = 1, .max_bottoms = -1, .min_tops = 1, .max_tops = 1,
    .setup = concat_setup, .reshape = concat_reshape, .forward = concat_forward,
    .backward = concat_backward};
