/* Reshape: a new shape for the same data. reshape_param.shape gives the dims that replace
 * bottom axes [axis, axis + num_axes) (num_axes -1 = to the end): 0 copies the bottom's
 * dim at that position, -1 (at most once) is inferred from the count. Forward copies the
 * data, backward the diff; not in place. */
#include <stdio.h>

#include "layer.h"
#include "nr_math.h"

static const Caffe__ReshapeParameter reshape_default = CAFFE__RESHAPE_PARAMETER__INIT;

static const Caffe__ReshapeParameter *params(const nr_layer *l) {
  return l->param->reshape_param ? l->param->reshape_param : &reshape_default;
}

static nr_status reshape_setup(nr_layer *l, nr_error *err) {
  if (l->top[0] == l->bottom[0])
    return nr_err_set(err, NR_ERR_INPUT, "Reshape cannot run in place (top == bottom)");
  const Caffe__ReshapeParameter *p = params(l);
  const Caffe__BlobShape *s = p->shape;
  int inferred = -1;
  for (size_t i = 0; s && i < s->n_dim; i++) {
    if (s->dim[i] == -1) {
      if (inferred >= 0)
        return nr_err_set(err, NR_ERR_INPUT,
                          "reshape_param.shape has more than one -1 dim (%d and %d)", inferred,
                          (int)i);
      inferred = (int)i;
    } else if (s->dim[i] < -1) {
      return nr_err_set(err, NR_ERR_INPUT,
                        "reshape_param.shape dim %d is %lld (must be >= 0, or -1 to infer)",
                        (int)i, (long long)s->dim[i]);
    }
  }
  if (p->num_axes < -1)
    return nr_err_set(err, NR_ERR_INPUT, "reshape_param.num_axes must be >= -1, got %d",
                      (int)p->num_axes);
  if (s && s->n_dim > (size_t)NR_MAX_AXES)
    return nr_err_set(err, NR_ERR_INPUT, "reshape_param.shape has %d dims (at most %d)",
                      (int)s->n_dim, NR_MAX_AXES);
  return NR_OK;
}

static nr_status reshape_reshape(nr_layer *l, nr_error *err) {
  const Caffe__ReshapeParameter *p = params(l);
  const Caffe__BlobShape *s = p->shape;
  const nr_blob *b = l->bottom[0];
  const int nnew = s ? (int)s->n_dim : 0;
  const int start = p->axis >= 0 ? (int)p->axis : b->num_axes + (int)p->axis + 1;
  if (start < 0 || start > b->num_axes)
    return nr_err_set(err, NR_ERR_INPUT,
                      "reshape_param.axis %d is out of range for a bottom with %d axes",
                      (int)p->axis, b->num_axes);
  const int end = p->num_axes == -1 ? b->num_axes : start + (int)p->num_axes;
  if (end > b->num_axes)
    return nr_err_set(err, NR_ERR_INPUT,
                      "reshape_param axis %d + num_axes %d exceeds the bottom's %d axes",
                      start, (int)p->num_axes, b->num_axes);
  const int naxes = start + nnew + (b->num_axes - end);
  if (naxes > NR_MAX_AXES)
    return nr_err_set(err, NR_ERR_INPUT, "reshaped top would have %d axes (at most %d)", naxes,
                      NR_MAX_AXES);
  int64_t dims[NR_MAX_AXES];
  int n = 0, inferred = -1;
  int64_t known = 1;
  for (int i = 0; i < start; i++) known *= dims[n++] = b->shape[i];
  for (int i = 0; i < nnew; i++) {
    int64_t d = s->dim[i];
    if (d == 0) {
      if (start + i >= b->num_axes)
        return nr_err_set(err, NR_ERR_INPUT,
                          "reshape_param.shape dim %d is 0 (copy) but the bottom has no "
                          "axis %d (it has %d axes)",
                          i, start + i, b->num_axes);
      d = b->shape[start + i];
    }
    if (d == -1) {
      inferred = n;
      dims[n++] = 1;
      continue;
    }
    known *= dims[n++] = d;
  }
  for (int i = end; i < b->num_axes; i++) known *= dims[n++] = b->shape[i];
  char bs[256];
  if (inferred >= 0) {
    if (known == 0 || b->count % known != 0)
      return nr_err_set(err, NR_ERR_INPUT,
                        "cannot infer the -1 dim: bottom count %lld is not a multiple of "
                        "the other dims' product %lld (bottom shape %s)",
                        (long long)b->count, (long long)known,
                        nr_blob_shape_str(b, bs, sizeof bs));
    dims[inferred] = b->count / known;
    known *= dims[inferred];
  }
  if (known != b->count) {
    char ts[512];
    int off = 0;
    for (int i = 0; i < n && off < (int)sizeof ts - 24; i++)
      off += snprintf(ts + off, sizeof ts - (size_t)off, "%lld ", (long long)dims[i]);
    return nr_err_set(err, NR_ERR_INPUT,
                      "reshape to %s(%lld) changes the count of bottom %s", ts,
                      (long long)known, nr_blob_shape_str(b, bs, sizeof bs));
  }
  return nr_blob_reshape(l->top[0], n, dims, err);
}

static nr_status reshape_forward(nr_layer *l, nr_error *err) {
  nr_copy(l->bottom[0]->count, l->bottom[0]->data, l->top[0]->data);
  return NR_OK;
}

static nr_status reshape_backward(nr_layer *l, nr_error *err) {
  if (l->prop_down[0]) nr_copy(l->bottom[0]->count, l->top[0]->diff, l->bottom[0]->diff);
  return NR_OK;
}

const nr_layer_type nr_layer_reshape = {
    .name = "Reshape", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = reshape_setup, .reshape = reshape_reshape, .forward = reshape_forward,
    .backward = reshape_backward};
