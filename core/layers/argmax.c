/* ArgMax: Caffe's ArgMaxLayer (no backward).
 *
 * Without argmax_param.axis: for each item of the first axis, the top_k largest of the
 * flattened rest; top shape (N, 1, top_k) [(N, 2, top_k) with out_max_val: indices then
 * values], padded with 1s to the bottom's axis count. With axis: along that axis, top
 * shape = bottom shape with axis → top_k, holding indices, or the values if out_max_val.
 * Ordering as Caffe's partial_sort over (value, index) pairs: larger value first, ties
 * to the larger index.
 */
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "nr_math.h"

static const Caffe__ArgMaxParameter default_param = CAFFE__ARG_MAX_PARAMETER__INIT;

typedef struct am_priv {
  bool out_max_val, has_axis;
  int axis;
  int64_t top_k;
  int64_t *idx; /* scratch: candidate indices */
  int64_t cap;
} am_priv;

static const Caffe__ArgMaxParameter *aparam(const nr_layer *l) {
  return l->param->argmax_param ? l->param->argmax_param : &default_param;
}

static nr_status am_setup(nr_layer *l, nr_error *err) {
  const Caffe__ArgMaxParameter *p = aparam(l);
  am_priv *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  q->out_max_val = p->out_max_val;
  q->top_k = p->top_k;
  q->has_axis = p->has_axis;
  if (q->top_k < 1) return nr_err_set(err, NR_ERR_INPUT, "top_k must be >= 1");
  return NR_OK;
}

static nr_status am_reshape(nr_layer *l, nr_error *err) {
  am_priv *q = l->priv;
  const nr_blob *b = l->bottom[0];
  if (b->num_axes < 1)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[0] has 0 axes, expected at least 1");
  int64_t dims[NR_MAX_AXES];
  int naxes = b->num_axes < 3 ? 3 : b->num_axes;
  for (int a = 0; a < naxes; a++) dims[a] = 1;
  int64_t dim;
  if (q->has_axis) {
    q->axis = nr_blob_axis(b, aparam(l)->axis);
    if (q->axis < 0)
      return nr_err_set(err, NR_ERR_INPUT, "axis %d out of range for bottom[0] with %d axes",
                        (int)aparam(l)->axis, b->num_axes);
    dim = b->shape[q->axis];
    naxes = b->num_axes;
    memcpy(dims, b->shape, sizeof(int64_t) * (size_t)naxes);
    dims[q->axis] = q->top_k;
  } else {
    dim = b->count / (b->shape[0] ? b->shape[0] : 1);
    dims[0] = b->shape[0];
    dims[1] = q->out_max_val ? 2 : 1;
    dims[2] = q->top_k;
  }
  if (q->top_k > dim)
    return nr_err_set(err, NR_ERR_INPUT, "top_k %lld is larger than the %lld values to choose from",
                      (long long)q->top_k, (long long)dim);
  if (dim > q->cap) {
    int64_t *ix = realloc(q->idx, (size_t)dim * sizeof *ix);
    if (!ix) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    q->idx = ix;
    q->cap = dim;
  }
  return nr_blob_reshape(l->top[0], naxes, dims, err);
}

/* Partial selection sort of the top k of v[i·stride], i < n, into q->idx[0..k). */
static void top_k(am_priv *q, const float *v, int64_t n, int64_t stride) {
  for (int64_t i = 0; i < n; i++) q->idx[i] = i;
  for (int64_t j = 0; j < q->top_k; j++) {
    int64_t best = j;
    for (int64_t i = j + 1; i < n; i++) {
      float a = v[q->idx[i] * stride], b = v[q->idx[best] * stride];
      if (a > b || (a == b && q->idx[i] > q->idx[best])) best = i;
    }
    int64_t t = q->idx[j];
    q->idx[j] = q->idx[best];
    q->idx[best] = t;
  }
}

static nr_status am_forward(nr_layer *l, nr_error *err) {
  am_priv *q = l->priv;
  const nr_blob *b = l->bottom[0];
  float *y = l->top[0]->data;
  const int64_t K = q->top_k;
  if (!q->has_axis) {
    const int64_t N = b->shape[0], dim = N ? b->count / N : 0;
    for (int64_t n = 0; n < N; n++) {
      const float *x = b->data + n * dim;
      top_k(q, x, dim, 1);
      float *o = y + n * (q->out_max_val ? 2 : 1) * K;
      for (int64_t j = 0; j < K; j++) {
        o[j] = (float)q->idx[j];
        if (q->out_max_val) o[K + j] = x[q->idx[j]];
      }
    }
    return NR_OK;
  }
  const int64_t outer = nr_blob_count_range(b, 0, q->axis), dim = b->shape[q->axis];
  const int64_t inner = nr_blob_count_range(b, q->axis + 1, b->num_axes);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const float *x = b->data + o * dim * inner + i;
      top_k(q, x, dim, inner);
      for (int64_t j = 0; j < K; j++)
        y[(o * K + j) * inner + i] = q->out_max_val ? x[q->idx[j] * inner] : (float)q->idx[j];
    }
  return NR_OK;
}

static void am_destroy(nr_layer *l) {
  am_priv *q = l->priv;
  if (!q) return;
  free(q->idx);
  free(q);
  l->priv = NULL;
}

const nr_layer_type nr_layer_argmax = {
    .name = "ArgMax",
    .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .setup = am_setup, .reshape = am_reshape, .forward = am_forward, .destroy = am_destroy};
