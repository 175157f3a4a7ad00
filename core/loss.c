/* loss.c: loss normalization shared by the loss layers (see loss.h). */
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
