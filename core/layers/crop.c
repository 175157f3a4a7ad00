/* Crop: Caffe's CropLayer. top = bottom[0] cropped to bottom[1]'s shape on every axis from
 * crop_param.axis (default 2) on, starting at `offset` (none = 0, one value for all those
 * axes, or one per axis); axes before `axis` keep bottom[0]'s size. bottom[1] only gives
 * the shape: it gets no gradient. Backward writes the top diff into the cropped window of
 * bottom[0]'s diff and zeroes the rest.
 */
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "nr_math.h"

static const Caffe__CropParameter default_param = CAFFE__CROP_PARAMETER__INIT;

typedef struct crop_priv {
  int axis;
  int64_t off[NR_MAX_AXES];
} crop_priv;

static nr_status crop_setup(nr_layer *l, nr_error *err) {
  l->priv = calloc(1, sizeof(crop_priv));
  return l->priv ? NR_OK : nr_err_set(err, NR_ERR_NOMEM, "out of memory");
}

static nr_status crop_reshape(nr_layer *l, nr_error *err) {
  crop_priv *q = l->priv;
  const Caffe__CropParameter *p = l->param->crop_param ? l->param->crop_param : &default_param;
  const nr_blob *a = l->bottom[0], *b = l->bottom[1];
  if (a->num_axes != b->num_axes)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[1] has %d axes, expected %d (as bottom[0])",
                      b->num_axes, a->num_axes);
  q->axis = nr_blob_axis(a, p->axis);
  if (q->axis < 0)
    return nr_err_set(err, NR_ERR_INPUT, "axis %d out of range for bottom[0] with %d axes",
                      (int)p->axis, a->num_axes);
  const int ncrop = a->num_axes - q->axis;
  if (p->n_offset > 1 && p->n_offset != (size_t)ncrop)
    return nr_err_set(err, NR_ERR_INPUT,
                      "%zu offset values; give none, one, or one per cropped axis (%d)",
                      p->n_offset, ncrop);
  int64_t dims[NR_MAX_AXES];
  for (int i = 0; i < a->num_axes; i++) {
    if (i < q->axis) {
      q->off[i] = 0;
      dims[i] = a->shape[i];
      continue;
    }
    q->off[i] = p->n_offset == 0 ? 0 : p->offset[p->n_offset == 1 ? 0 : i - q->axis];
    dims[i] = b->shape[i];
    if (q->off[i] + dims[i] > a->shape[i])
      return nr_err_set(err, NR_ERR_INPUT,
                        "crop on axis %d: offset %lld + size %lld exceeds bottom[0] size %lld", i,
                        (long long)q->off[i], (long long)dims[i], (long long)a->shape[i]);
  }
  return nr_blob_reshape(l->top[0], a->num_axes, dims, err);
}

/* Walks every innermost row of the top; copies to or from the matching bottom row. */
static void crop_copy(nr_layer *l, bool forward) {
  crop_priv *q = l->priv;
  nr_blob *a = l->bottom[0], *t = l->top[0];
  const int na = a->num_axes;
  if (t->count == 0) return;
  if (na == 0) {
    if (forward) t->data[0] = a->data[0]; else a->diff[0] = t->diff[0];
    return;
  }
  const int64_t row = t->shape[na - 1];
  const int64_t rows = t->count / row;
  int64_t idx[NR_MAX_AXES] = {0};
  for (int64_t r = 0; r < rows; r++) {
    int64_t src = 0;
    for (int i = 0; i < na; i++) src = src * a->shape[i] + idx[i] + q->off[i];
    if (forward)
      memcpy(t->data + r * row, a->data + src, (size_t)row * sizeof(float));
    else
      memcpy(a->diff + src, t->diff + r * row, (size_t)row * sizeof(float));
    for (int i = na - 2; i >= 0; i--) { /* odometer over all but the last axis */
      if (++idx[i] < t->shape[i]) break;
      idx[i] = 0;
    }
  }
}

static nr_status crop_forward(nr_layer *l, nr_error *err) {
  crop_copy(l, true);
  return NR_OK;
}

static nr_status crop_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  memset(l->bottom[0]->diff, 0, (size_t)l->bottom[0]->count * sizeof(float));
  crop_copy(l, false);
  return NR_OK;
}

static void crop_destroy(nr_layer *l) {
  free(l->priv);
  l->priv = NULL;
}

const nr_layer_type nr_layer_crop = {
    .name = "Crop",
    .min_bottoms = 2, .max_bottoms = 2, .min_tops = 1, .max_tops = 1,
    .no_force_backward = 1u << 1,
    .setup = crop_setup, .reshape = crop_reshape, .forward = crop_forward,
    .backward = crop_backward, .destroy = crop_destroy};
