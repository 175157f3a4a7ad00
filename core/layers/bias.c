/* Bias: y = x + b, with b broadcast over bottom[0]: b's axes line up with bottom[0]'s axes
 * starting at `axis`. b is bottom[1] when given, else a learnable blob of shape
 * bottom[0].shape[axis, axis + num_axes) (num_axes -1 = to the end), filled by `filler`
 * (default constant 0). A 0-axis b (a scalar) applies everywhere. Runs in place.
 * Backward: bottom diff = top diff; b's gradient sums the top diff over the broadcast
 * axes (accumulated into the parameter, written into bottom[1]'s diff). */
#include "filler.h"
#include "layer.h"
#include "nr_math.h"

static const Caffe__BiasParameter bias_default = CAFFE__BIAS_PARAMETER__INIT;

static const Caffe__BiasParameter *params(const nr_layer *l) {
  return l->param->bias_param ? l->param->bias_param : &bias_default;
}

static nr_status bias_setup(nr_layer *l, nr_error *err) {
  const Caffe__BiasParameter *p = params(l);
  if (l->nbottom > 1) return NR_OK;
  if (l->nblobs > 0) return NR_OK; /* parameters given (shared or loaded) */
  const nr_blob *b = l->bottom[0];
  const int axis = b->num_axes ? nr_blob_axis(b, p->axis) : -1;
  if (axis < 0)
    return nr_err_set(err, NR_ERR_INPUT, "bias_param.axis %d is out of range for %d axes",
                      (int)p->axis, b->num_axes);
  if (p->num_axes < -1)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bias_param.num_axes must be >= 0, or -1 for all axes from axis; got %d",
                      (int)p->num_axes);
  const int end = p->num_axes == -1 ? b->num_axes : axis + (int)p->num_axes;
  if (end > b->num_axes)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bias blob would need axes %d to %d but bottom[0] has %d axes", axis,
                      end - 1, b->num_axes);
  nr_blob *bias = NULL;
  NR_TRY(nr_layer_add_param(l, end - axis, b->shape + axis, &bias, err));
  nr_status s = nr_fill(bias, p->filler, l->ctx ? l->ctx->rng : NULL, err);
  if (s != NR_OK) return nr_err_prefix(err, "bias_param.filler");
  return NR_OK;
}

/* outer x dim x inner view of bottom[0] for the broadcast blob b. */
static nr_status extents(const nr_layer *l, const nr_blob *b, int64_t *outer, int64_t *inner,
                         nr_error *err) {
  const nr_blob *x = l->bottom[0];
  const int axis = b->num_axes == 0 ? 0 : (x->num_axes ? nr_blob_axis(x, params(l)->axis) : -1);
  if (axis < 0)
    return nr_err_set(err, NR_ERR_INPUT, "bias_param.axis %d is out of range for %d axes",
                      (int)params(l)->axis, x->num_axes);
  if (x->num_axes < axis + b->num_axes)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bias has %d axes from axis %d but bottom[0] has only %d axes",
                      b->num_axes, axis, x->num_axes);
  for (int i = 0; i < b->num_axes; i++)
    if (x->shape[axis + i] != b->shape[i])
      return nr_err_set(err, NR_ERR_INPUT,
                        "bottom[0] axis %d is %lld but bias axis %d is %lld", axis + i,
                        (long long)x->shape[axis + i], i, (long long)b->shape[i]);
  *outer = nr_blob_count_range(x, 0, axis);
  *inner = nr_blob_count_range(x, axis + b->num_axes, x->num_axes);
  return NR_OK;
}

static const nr_blob *bias_blob(const nr_layer *l) {
  return l->nbottom > 1 ? l->bottom[1] : l->blobs[0];
}

static nr_status bias_reshape(nr_layer *l, nr_error *err) {
  int64_t outer, inner;
  NR_TRY(extents(l, bias_blob(l), &outer, &inner, err));
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

static nr_status bias_forward(nr_layer *l, nr_error *err) {
  const nr_blob *bb = bias_blob(l);
  int64_t outer, inner;
  NR_TRY(extents(l, bb, &outer, &inner, err));
  const int64_t dim = bb->count;
  const float *b = bb->data;
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t d = 0; d < dim; d++) {
      const float v = b[d];
      const int64_t off = (o * dim + d) * inner;
      for (int64_t i = 0; i < inner; i++) y[off + i] = x[off + i] + v;
    }
  return NR_OK;
}

static nr_status bias_backward(nr_layer *l, nr_error *err) {
  nr_blob *bb = l->nbottom > 1 ? l->bottom[1] : l->blobs[0];
  int64_t outer, inner;
  NR_TRY(extents(l, bb, &outer, &inner, err));
  const int64_t dim = bb->count;
  const float *dy = l->top[0]->diff;
  const bool is_param = l->nbottom == 1;
  if (is_param || l->prop_down[1]) {
    float *db = bb->diff;
    if (!is_param) nr_set(dim, 0.0f, db);
    for (int64_t o = 0; o < outer; o++)
      for (int64_t d = 0; d < dim; d++) {
        const float *restrict src = dy + (o * dim + d) * inner;
        float s = 0.0f;
        for (int64_t i = 0; i < inner; i++) s += src[i];
        db[d] += s;
      }
  }
  if (l->prop_down[0]) nr_copy(l->bottom[0]->count, dy, l->bottom[0]->diff);
  return NR_OK;
}

const nr_layer_type nr_layer_bias = {
    .name = "Bias", .min_bottoms = 1, .max_bottoms = 2, .min_tops = 1, .max_tops = 1,
    .setup = bias_setup, .reshape = bias_reshape, .forward = bias_forward,
    .backward = bias_backward};
