/* Softmax: Caffe's SoftmaxLayer along softmax_param.axis (default 1):
 * y = exp(x − max) / Σ exp(x − max) over that axis, for every outer and inner index.
 * Backward: dx = (dy − Σ_axis dy·y) · y. Works in place. The same kernel serves
 * SoftmaxWithLoss (nr__softmax_forward).
 */
#include <math.h>
#include <stdlib.h>

#include "layer.h"
#include "nr_math.h"

static const Caffe__SoftmaxParameter default_param = CAFFE__SOFTMAX_PARAMETER__INIT;

/* y = softmax of x over `ch` channels `inner` apart, for `outer` blocks. x may equal y. */
void nr__softmax_forward(int64_t outer, int64_t ch, int64_t inner, const float *x, float *y);

void nr__softmax_forward(int64_t outer, int64_t ch, int64_t inner, const float *x, float *y) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const float *xp = x + o * ch * inner + i;
      float *yp = y + o * ch * inner + i;
      float mx = -INFINITY;
      for (int64_t c = 0; c < ch; c++) mx = xp[c * inner] > mx ? xp[c * inner] : mx;
      double sum = 0;
      for (int64_t c = 0; c < ch; c++) {
        float e = expf(xp[c * inner] - mx);
        yp[c * inner] = e;
        sum += e;
      }
      const float inv = (float)(1.0 / sum);
      for (int64_t c = 0; c < ch; c++) yp[c * inner] *= inv;
    }
}

typedef struct sm_priv {
  int axis;
} sm_priv;

static nr_status softmax_setup(nr_layer *l, nr_error *err) {
  sm_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  return NR_OK;
}

static nr_status softmax_reshape(nr_layer *l, nr_error *err) {
  sm_priv *q = l->priv;
  const Caffe__SoftmaxParameter *p =
      l->param->softmax_param ? l->param->softmax_param : &default_param;
  q->axis = nr_blob_axis(l->bottom[0], p->axis);
  if (q->axis < 0)
    return nr_err_set(err, NR_ERR_INPUT, "axis %d out of range for bottom[0] with %d axes",
                      (int)p->axis, l->bottom[0]->num_axes);
  if (l->top[0] != l->bottom[0]) NR_TRY(nr_blob_reshape_like(l->top[0], l->bottom[0], err));
  return NR_OK;
}

static nr_status softmax_forward(nr_layer *l, nr_error *err) {
  sm_priv *q = l->priv;
  const nr_blob *b = l->bottom[0];
  nr__softmax_forward(nr_blob_count_range(b, 0, q->axis), b->shape[q->axis],
                      nr_blob_count_range(b, q->axis + 1, b->num_axes), b->data, l->top[0]->data);
  return NR_OK;
}

static nr_status softmax_backward(nr_layer *l, nr_error *err) {
  sm_priv *q = l->priv;
  if (!l->prop_down[0]) return NR_OK;
  const nr_blob *b = l->bottom[0];
  const int64_t outer = nr_blob_count_range(b, 0, q->axis), ch = b->shape[q->axis];
  const int64_t inner = nr_blob_count_range(b, q->axis + 1, b->num_axes);
  const float *y = l->top[0]->data, *dy = l->top[0]->diff;
  float *dx = b->diff;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const int64_t base = o * ch * inner + i;
      double dot = 0;
      for (int64_t c = 0; c < ch; c++) dot += (double)dy[base + c * inner] * y[base + c * inner];
      for (int64_t c = 0; c < ch; c++)
        dx[base + c * inner] = (dy[base + c * inner] - (float)dot) * y[base + c * inner];
    }
  return NR_OK;
}

static void softmax_destroy(nr_layer *l) {
  free(l->priv);
  l->priv = NULL;
}

const nr_layer_type nr_layer_softmax = {
    .name = "Softmax",
    .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = softmax_setup, .reshape = softmax_reshape, .forward = softmax_forward,
    .backward = softmax_backward, .destroy = softmax_destroy};
