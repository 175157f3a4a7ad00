/* Slice: Caffe's SliceLayer, splits bottom[0] along slice_param.axis (default 1; legacy
 * slice_dim, not both) into the tops: at the given slice_points (exactly one fewer than
 * tops, strictly increasing, inside the axis) or, with none, into equal parts (the axis
 * must divide evenly). Backward copies every top's diff back into its slice.
 */
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "nr_math.h"

static const Caffe__SliceParameter default_param = CAFFE__SLICE_PARAMETER__INIT;

static const Caffe__SliceParameter *sparam(const nr_layer *l) {
  return l->param->slice_param ? l->param->slice_param : &default_param;
}

static int slice_axis(const nr_layer *l) {
  const Caffe__SliceParameter *p = sparam(l);
  return nr_blob_axis(l->bottom[0], p->has_slice_dim ? (int)p->slice_dim : p->axis);
}

static nr_status slice_setup(nr_layer *l, nr_error *err) {
  const Caffe__SliceParameter *p = sparam(l);
  if (p->has_axis && p->has_slice_dim)
    return nr_err_set(err, NR_ERR_INPUT, "give either axis or slice_dim, not both");
  if (p->n_slice_point && p->n_slice_point != (size_t)l->ntop - 1)
    return nr_err_set(err, NR_ERR_INPUT, "%zu slice_point values for %d tops; need %d",
                      p->n_slice_point, l->ntop, l->ntop - 1);
  return NR_OK;
}

static nr_status slice_reshape(nr_layer *l, nr_error *err) {
  const Caffe__SliceParameter *p = sparam(l);
  const nr_blob *b = l->bottom[0];
  const int axis = slice_axis(l);
  if (axis < 0)
    return nr_err_set(err, NR_ERR_INPUT, "slice axis out of range for bottom[0] with %d axes",
                      b->num_axes);
  const int64_t len = b->shape[axis];
  int64_t dims[NR_MAX_AXES];
  memcpy(dims, b->shape, sizeof(int64_t) * (size_t)b->num_axes);
  if (p->n_slice_point) {
    int64_t prev = 0;
    for (int i = 0; i < l->ntop; i++) {
      int64_t end = i < l->ntop - 1 ? (int64_t)p->slice_point[i] : len;
      if (end <= prev || end > len)
        return nr_err_set(err, NR_ERR_INPUT,
                          "slice_point %lld invalid: points must increase strictly and lie "
                          "inside (0, %lld) (axis %d length)",
                          (long long)end, (long long)len, axis);
      dims[axis] = end - prev;
      NR_TRY(nr_blob_reshape(l->top[i], b->num_axes, dims, err));
      prev = end;
    }
    return NR_OK;
  }
  if (len % l->ntop != 0)
    return nr_err_set(err, NR_ERR_INPUT,
                      "axis %d length %lld does not split evenly into %d tops (give slice_point)",
                      axis, (long long)len, l->ntop);
  dims[axis] = len / l->ntop;
  for (int i = 0; i < l->ntop; i++) NR_TRY(nr_blob_reshape(l->top[i], b->num_axes, dims, err));
  return NR_OK;
}

static void slice_copy(nr_layer *l, bool forward) {
  const int axis = slice_axis(l);
  nr_blob *b = l->bottom[0];
  const int64_t outer = nr_blob_count_range(b, 0, axis);
  const int64_t inner = nr_blob_count_range(b, axis + 1, b->num_axes);
  const int64_t len = b->shape[axis];
  int64_t off = 0;
  for (int i = 0; i < l->ntop; i++) {
    nr_blob *t = l->top[i];
    const int64_t n = t->shape[axis] * inner;
    for (int64_t o = 0; o < outer; o++) {
      if (forward)
        memcpy(t->data + o * n, b->data + (o * len + off) * inner, (size_t)n * sizeof(float));
      else
        memcpy(b->diff + (o * len + off) * inner, t->diff + o * n, (size_t)n * sizeof(float));
    }
    off += t->shape[axis];
  }
}

static nr_status slice_forward(nr_layer *l, nr_error *err) {
  slice_copy(l, true);
  return NR_OK;
}

static nr_status slice_backward(nr_layer *l, nr_error *err) {
  if (l->prop_down[0]) slice_copy(l, false);
  return NR_OK;
}

const nr_layer_type nr_layer_slice = {
    .name = "Slice",
    .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = -1,
    .setup = slice_setup, .reshape = slice_reshape, .forward = slice_forward,
    .backward = slice_backward};
