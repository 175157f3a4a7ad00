/* Parameter: Caffe's ParameterLayer. No bottoms; one learnable blob of shape
 * parameter_param.shape (no shape: a scalar), zero-filled until weights are loaded, and
 * one top that shows it: forward copies the blob into the top, backward adds the top's
 * diff to the blob's diff. (Caffe makes the top share the blob's memory; a copy gives the
 * same values and keeps the layer contract that parameter diffs accumulate.)
 */
#include "layer.h"
#include "nr_math.h"

static nr_status param_setup(nr_layer *l, nr_error *err) {
  const Caffe__ParameterParameter *p = l->param->parameter_param;
  const Caffe__BlobShape *s = p ? p->shape : NULL;
  int64_t dims[NR_MAX_AXES];
  int n = s ? (int)s->n_dim : 0;
  if (n > NR_MAX_AXES)
    return nr_err_set(err, NR_ERR_INPUT, "parameter_param.shape has %d dims, at most %d", n,
                      NR_MAX_AXES);
  for (int i = 0; i < n; i++) {
    if (s->dim[i] < 0)
      return nr_err_set(err, NR_ERR_INPUT, "parameter_param.shape dim %d is negative", i);
    dims[i] = s->dim[i];
  }
  return nr_layer_add_param(l, n, dims, NULL, err);
}

static nr_status param_reshape(nr_layer *l, nr_error *err) {
  return nr_blob_reshape_like(l->top[0], l->blobs[0], err);
}

static nr_status param_forward(nr_layer *l, nr_error *err) {
  nr_copy(l->blobs[0]->count, l->blobs[0]->data, l->top[0]->data);
  return NR_OK;
}

static nr_status param_backward(nr_layer *l, nr_error *err) {
  nr_axpy(l->blobs[0]->count, 1.0f, l->top[0]->diff, l->blobs[0]->diff);
  return NR_OK;
}

const nr_layer_type nr_layer_parameter = {
    .name = "Parameter", .min_bottoms = 0, .max_bottoms = 0, .min_tops = 1, .max_tops = 1,
    .setup = param_setup, .reshape = param_reshape, .forward = param_forward,
    .backward = param_backward};
