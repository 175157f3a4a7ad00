/* loss.c: what the loss layers share: normalization, label checks (see loss.h). */
#include <stdlib.h>

#include "loss.h"

int nr__loss_norm_mode(const Caffe__LossParameter *lp) {
  if (!lp) return CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__VALID;
  if (!lp->has_normalization && lp->has_normalize)
    return lp->normalize ? CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__VALID
                         : CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE;
  return (int)lp->normalization;
}

float nr__loss_normalizer(int mode, int64_t outer, int64_t inner, int64_t valid) {
  double n;
  switch (mode) {
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__FULL: n = (double)(outer * inner); break;
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__VALID: n = (double)valid; break;
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE: n = (double)outer; break;
    default: n = 1; break;
  }
  return (float)(n < 1 ? 1 : n);
}

nr_status nr__loss_check_row_labels(const nr_blob *pred, const nr_blob *labels, nr_error *err) {
  const int64_t rows = pred->num_axes ? pred->shape[0] : 0;
  if (pred->num_axes < 1 || labels->num_axes < 1 || labels->shape[0] != rows ||
      labels->count != rows)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[1] must hold one label per row of bottom[0] (shape (N) or "
                      "(N, 1, ...)): bottom[0] has %lld rows, bottom[1] %lld values",
                      (long long)rows, (long long)labels->count);
  return NR_OK;
}

nr_status nr__loss_label(const float *labels, int64_t i, int64_t classes, int *out,
                         nr_error *err) {
  const int v = (int)labels[i];
  if (v < 0 || v >= classes)
    return nr_err_set(err, NR_ERR_INPUT, "label %d at position %lld out of range [0, %lld)", v,
                      (long long)i, (long long)classes);
  *out = v;
  return NR_OK;
}

nr_status nr__loss_prob_reshape(nr_layer *l, float **buf, int64_t *cap, nr_error *err) {
  const nr_blob *b = l->bottom[0];
  if (l->ntop > 1) return nr_blob_reshape_like(l->top[1], b, err);
  if (b->count > *cap) {
    float *p = realloc(*buf, (size_t)b->count * sizeof *p);
    if (!p) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    *buf = p;
    *cap = b->count;
  }
  return NR_OK;
}
