/* loss.h: what Caffe's loss layers share (LossLayer::GetNormalizer and the legacy
 * `normalize` flag): how a summed loss is divided before it becomes the top.
 *
 * Modes (LossParameter.NormalizationMode): FULL divides by every position (outer·inner),
 * VALID by the positions not ignored (ignore_label), BATCH_SIZE by outer, NONE by 1; the
 * result is never below 1. Pure functions; thread safe.
 */
#ifndef NR_LOSS_H
#define NR_LOSS_H

#include <stdint.h>

#include "caffe.pb-c.h"

/* The mode of a layer's loss_param (borrowed; NULL = all defaults): `normalization`
 * (default VALID), or, when only the legacy `normalize` is given, VALID for true and
 * BATCH_SIZE for false. */
int nr__loss_norm_mode(const Caffe__LossParameter *lp);

/* The divisor for `mode` with `outer`·`inner` positions of which `valid` counted. */
float nr__loss_normalizer(int mode, int64_t outer, int64_t inner, int64_t valid);

#endif
