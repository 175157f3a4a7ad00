/* Im2col: Caffe's Im2colLayer, the unrolling a convolution does before its matrix product,
 * as a layer. Reads the convolution geometry from convolution_param (kernel, stride, pad,
 * dilation in any of their forms, axis, force_nd_im2col; num_output, group and the fillers
 * are ignored). For a bottom (..., C, spatial...) with channel axis `axis`, the top is
 * (..., C·Πkernel, out...), out = ⌊(in + 2·pad − (dilation·(k−1)+1)) / stride⌋ + 1 per
 * spatial axis: row (c·Πk + tap) at output position o holds the input pixel that tap sees
 * from o, or 0 in the padding. Backward is the adjoint (col2im): each pixel gets the sum
 * of the diffs of the column entries it was copied to.
 */
#include <stdlib.h>

#include "im2col.h"
#include "layer.h"
#include "nr_math.h"

static const Caffe__ConvolutionParameter default_conv = CAFFE__CONVOLUTION_PARAMETER__INIT;

typedef struct i2c_priv {
  nr_conv cv;     /* geometry only */
  int naxes;      /* bottom axes at setup */
  int64_t num;    /* images: product of the dims before the channel axis */
} i2c_priv;

static nr_status i2c_setup(nr_layer *l, nr_error *err) {
  i2c_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  /* The shared parser wants a convolution's num_output and group; an unrolling has
   * neither, so it sees a one-output, one-group convolution of the same geometry. */
  Caffe__ConvolutionParameter p =
      l->param->convolution_param ? *l->param->convolution_param : default_conv;
  p.has_num_output = 1;
  p.num_output = 1;
  p.has_group = 1;
  p.group = 1;
  NR_TRY(nr__conv_parse(&q->cv, &p, l->bottom[0], err));
  q->naxes = l->bottom[0]->num_axes;
  return NR_OK;
}

static nr_status i2c_reshape(nr_layer *l, nr_error *err) {
  i2c_priv *q = l->priv;
  nr_conv *cv = &q->cv;
  const nr_blob *b = l->bottom[0];
  if (b->num_axes != q->naxes)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom has %d axes; it had %d at setup and may not change", b->num_axes,
                      q->naxes);
  int64_t dims[NR_MAX_AXES];
  for (int a = 0; a < cv->axis; a++) dims[a] = b->shape[a];
  cv->in_ch = b->shape[cv->axis];
  cv->kdim = 1;
  for (int a = 0; a < cv->nsp; a++) {
    cv->kdim *= cv->kernel[a];
    cv->im_sp[a] = b->shape[cv->axis + 1 + a];
    const int64_t padded = cv->im_sp[a] + 2 * cv->pad[a], ext = nr__conv_extent(cv, a);
    if (ext > padded)
      return nr_err_set(err, NR_ERR_INPUT,
                        "kernel extent %lld larger than the padded input %lld on spatial axis %d",
                        (long long)ext, (long long)padded, a);
    cv->col_sp[a] = (padded - ext) / cv->stride[a] + 1;
    dims[cv->axis + 1 + a] = cv->col_sp[a];
  }
  dims[cv->axis] = cv->in_ch * cv->kdim;
  q->num = nr_blob_count_range(b, 0, cv->axis);
  cv->im_dim = nr_blob_count_range(b, cv->axis + 1, b->num_axes);
  cv->col_dim = 1;
  for (int a = 0; a < cv->nsp; a++) cv->col_dim *= cv->col_sp[a];
  return nr_blob_reshape(l->top[0], b->num_axes, dims, err);
}

static nr_status i2c_forward(nr_layer *l, nr_error *err) {
  const i2c_priv *q = l->priv;
  const nr_conv *cv = &q->cv;
  const int64_t in_step = cv->in_ch * cv->im_dim, out_step = cv->in_ch * cv->kdim * cv->col_dim;
  for (int64_t n = 0; n < q->num; n++) {
    const float *im = l->bottom[0]->data + n * in_step;
    float *col = l->top[0]->data + n * out_step;
    if (cv->nsp == 2 && !cv->force_nd)
      nr_im2col(im, cv->in_ch, cv->im_sp[0], cv->im_sp[1], cv->kernel[0], cv->kernel[1],
                cv->pad[0], cv->pad[1], cv->stride[0], cv->stride[1], cv->dil[0], cv->dil[1],
                col, cv->col_dim);
    else
      nr_im2col_nd(im, cv->nsp, cv->in_ch, cv->im_sp, cv->col_sp, cv->kernel, cv->pad,
                   cv->stride, cv->dil, col, cv->col_dim);
  }
  return NR_OK;
}

static nr_status i2c_backward(nr_layer *l, nr_error *err) {
  if (!l->prop_down[0]) return NR_OK;
  const i2c_priv *q = l->priv;
  const nr_conv *cv = &q->cv;
  const int64_t in_step = cv->in_ch * cv->im_dim, out_step = cv->in_ch * cv->kdim * cv->col_dim;
  nr_set(l->bottom[0]->count, 0.0f, l->bottom[0]->diff);
  for (int64_t n = 0; n < q->num; n++) {
    const float *col = l->top[0]->diff + n * out_step;
    float *im = l->bottom[0]->diff + n * in_step;
    if (cv->nsp == 2 && !cv->force_nd)
      nr_col2im(col, cv->in_ch, cv->im_sp[0], cv->im_sp[1], cv->kernel[0], cv->kernel[1],
                cv->pad[0], cv->pad[1], cv->stride[0], cv->stride[1], cv->dil[0], cv->dil[1],
                im, cv->col_dim);
    else
      nr_col2im_nd(col, cv->nsp, cv->in_ch, cv->im_sp, cv->col_sp, cv->kernel, cv->pad,
                   cv->stride, cv->dil, im, cv->col_dim);
  }
  return NR_OK;
}

static void i2c_destroy(nr_layer *l) { free(l->priv); }

const nr_layer_type nr_layer_im2col = {
    .name = "Im2col", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = i2c_setup, .reshape = i2c_reshape, .forward = i2c_forward,
    .backward = i2c_backward, .destroy = i2c_destroy};
