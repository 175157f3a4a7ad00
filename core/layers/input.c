/* Input: the net's entry points. input_param.shape gives one shape for every top or one
 * per top; the tops are shaped once at setup, after which the user (or a Python data
 * layer's caller) may reshape them. Forward does nothing: the caller writes the data. */
#include "layer.h"

static const Caffe__InputParameter input_default = CAFFE__INPUT_PARAMETER__INIT;

static nr_status shape_from_proto(nr_blob *b, const Caffe__BlobShape *s, nr_error *err) {
  if (s->n_dim > (size_t)NR_MAX_AXES)
    return nr_err_set(err, NR_ERR_INPUT, "shape has %d dims (at most %d)", (int)s->n_dim,
                      NR_MAX_AXES);
  return nr_blob_reshape(b, (int)s->n_dim, s->dim, err);
}

static nr_status input_setup(nr_layer *l, nr_error *err) {
  const Caffe__InputParameter *p = l->param->input_param ? l->param->input_param : &input_default;
  const int ns = (int)p->n_shape;
  if (ns != 0 && ns != 1 && ns != l->ntop)
    return nr_err_set(err, NR_ERR_INPUT,
                      "input_param has %d shapes for %d tops: give one shape, one per top, "
                      "or none",
                      ns, l->ntop);
  for (int i = 0; i < l->ntop && ns > 0; i++) {
    nr_status s = shape_from_proto(l->top[i], p->shape[ns == 1 ? 0 : i], err);
    if (s != NR_OK) return nr_err_prefix(err, "input_param.shape for top %d", i);
  }
  return NR_OK;
}

static nr_status input_forward(nr_layer *l, nr_error *err) { return NR_OK; }

const nr_layer_type nr_layer_input = {
    .name = "Input", .min_bottoms = 0, .max_bottoms = 0, .min_tops = 1, .max_tops = -1,
    .setup = input_setup, .forward = input_forward};
