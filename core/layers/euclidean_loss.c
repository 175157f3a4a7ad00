/* EuclideanLoss: Caffe's EuclideanLossLayer, loss = Σ (a − b)² / (2·N), N = bottom[0]'s
 * first dim. Backward to both bottoms: ±(a − b) · top_diff / N (top_diff carries the loss
 * weight). Both bottoms may receive gradients (Caffe allows force_backward on both).
 */
#include <stdlib.h>

#include "layer.h"
#include "nr_math.h"

typedef struct eu_priv {
  float *diff; /* a − b */
  int64_t cap;
} eu_priv;

static nr_status eu_setup(nr_layer *l, nr_error *err) {
  l->priv = calloc(1, sizeof(eu_priv));
  return l->priv ? NR_OK : nr_err_set(err, NR_ERR_NOMEM, "out of memory");
}

static nr_status eu_reshape(nr_layer *l, nr_error *err) {
  eu_priv *q = l->priv;
  const nr_blob *a = l->bottom[0], *b = l->bottom[1];
  if (a->count != b->count)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[1] count %lld does not match bottom[0] count %lld",
                      (long long)b->count, (long long)a->count);
  if (a->num_axes < 1)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[0] has 0 axes, expected at least 1");
  NR_TRY(nr_blob_reshape(l->top[0], 0, NULL, err));
  if (a->count > q->cap) {
    float *d = realloc(q->diff, (size_t)a->count * sizeof *d);
    if (!d) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    q->diff = d;
    q->cap = a->count;
  }
  return NR_OK;
}

static nr_status eu_forward(nr_layer *l, nr_error *err) {
  eu_priv *q = l->priv;
  const float *a = l->bottom[0]->data, *b = l->bottom[1]->data;
  const int64_t n = l->bottom[0]->count;
  for (int64_t i = 0; i < n; i++) q->diff[i] = a[i] - b[i];
  int64_t num = l->bottom[0]->shape[0];
  l->top[0]->data[0] = (float)(nr_dot(n, q->diff, q->diff) / (num > 0 ? num : 1) / 2.0);
  return NR_OK;
}

static nr_status eu_backward(nr_layer *l, nr_error *err) {
  eu_priv *q = l->priv;
  int64_t num = l->bottom[0]->shape[0];
  for (int i = 0; i < 2; i++) {
    if (!l->prop_down[i]) continue;
    const float alpha = (i == 0 ? 1.0f : -1.0f) * l->top[0]->diff[0] / (float)(num > 0 ? num : 1);
    float *dx = l->bottom[i]->diff;
    for (int64_t j = 0; j < l->bottom[i]->count; j++) dx[j] = alpha * q->diff[j];
  }
  return NR_OK;
}

static void eu_destroy(nr_layer *l) {
  eu_priv *q = l->priv;
  if (!q) return;
  free(q->diff);
  free(q);
  l->priv = NULL;
}

const nr_layer_type nr_layer_euclidean_loss = {
    .name = "EuclideanLoss",
    .min_bottoms = 2, .max_bottoms = 2, .min_tops = 1, .max_tops = 1,
    .is_loss = true,
    .setup = eu_setup, .reshape = eu_reshape, .forward = eu_forward,
    .backward = eu_backward, .destroy = eu_destroy};
