/* Flatten: merges axes [axis, end_axis] into one (defaults 1 and -1: (N, C, H, W) ->
 * (N, C*H*W)). Forward copies the data, backward the diff; not in place. */
#include "layer.h"
#include "nr_math.h"

static const Caffe__FlattenParameter flatten_default = CAFFE__FLATTEN_PARAMETER__INIT;

static nr_status flatten_setup(nr_layer *l, nr_error *err) {
  if (l->top[0] == l->bottom[0])
    return nr_err_set(err, NR_ERR_INPUT, "Flatten cannot run in place (top == bottom)");
  return NR_OK;
}

static nr_status flatten_reshape(nr_layer *l, nr_error *err) {
  const Caffe__FlattenParameter *p =
      l->param->flatten_param ? l->param->flatten_param : &flatten_default;
  const nr_blob *b = l->bottom[0];
  const int start = b->num_axes ? nr_blob_axis(b, p->axis) : -1;
  const int end = b->num_axes ? nr_blob_axis(b, p->end_axis) : -1;
  if (start < 0)
    return nr_err_set(err, NR_ERR_INPUT, "flatten_param.axis %d is out of range for %d axes",
                      (int)p->axis, b->num_axes);
  if (end < 0)
    return nr_err_set(err, NR_ERR_INPUT,
                      "flatten_param.end_axis %d is out of range for %d axes",
                      (int)p->end_axis, b->num_axes);
  if (end < start)
    return nr_err_set(err, NR_ERR_INPUT,
                      "flatten_param.end_axis %d (axis %d) comes before axis %d (axis %d)",
                      (int)p->end_axis, end, (int)p->axis, start);
  int64_t dims[NR_MAX_AXES];
  int n = 0;
  for (int i = 0; i < start; i++) dims[n++] = b->shape[i];
  dims[n++] = nr_blob_count_range(b, start, end + 1);
  for (int i = end + 1; i < b->num_axes; i++) dims[n++] = b->shape[i];
  return nr_blob_reshape(l->top[0], n, dims, err);
}

static nr_status flatten_forward(nr_layer *l, nr_error *err) {
  nr_copy(l->bottom[0]->count, l->bottom[0]->data, l->top[0]->data);
  return NR_OK;
}

static nr_status flatten_backward(nr_layer *l, nr_error *err) {
  if (l->prop_down[0]) nr_copy(l->bottom[0]->count, l->top[0]->diff, l->bottom[0]->diff);
  return NR_OK;
}

const nr_layer_type nr_layer_flatten = {
    .name = "Flatten", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = flatten_setup, .reshape = flatten_reshape, .forward = flatten_forward,
    .backward = flatten_backward};
