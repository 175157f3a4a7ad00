/* loss.h: what Caffe's loss layers share: how a summed loss is divided before it becomes
 * the top (LossLayer::GetNormalizer and the legacy `normalize` flag), and the checks of
 * integer class labels.
 *
 * Modes (LossParameter.NormalizationMode): FULL divides by every position (outer·inner),
 * VALID by the positions not ignored (ignore_label), BATCH_SIZE by outer, NONE by 1; the
 * result is never below 1. Pure functions; thread safe.
 */
#ifndef NR_LOSS_H
#define NR_LOSS_H

#include <stdint.h>

#include "blob.h"
#include "caffe.pb-c.h"
#include "layer.h"
#include "nr_status.h"

/* The mode of a layer's loss_param (borrowed; NULL = all defaults): `normalization`
 * (default VALID), or, when only the legacy `normalize` is given, VALID for true and
 * BATCH_SIZE for false. */
int nr__loss_norm_mode(const Caffe__LossParameter *lp);

/* The divisor for `mode` with `outer`·`inner` positions of which `valid` counted. */
float nr__loss_normalizer(int mode, int64_t outer, int64_t inner, int64_t valid);

/* Checks that `labels` holds one label per row of `pred` (its first axis): same first
 * dim and shape (N) or (N, 1, ...), Caffe's check for its one-label-per-item losses.
 * NR_ERR_INPUT naming both counts. */
nr_status nr__loss_check_row_labels(const nr_blob *pred, const nr_blob *labels, nr_error *err);

/* *out = labels[i] as an integer; NR_ERR_INPUT ("label 7 at position 3 out of range
 * [0, 5)") unless it lies in [0, classes). */
nr_status nr__loss_label(const float *labels, int64_t i, int64_t classes, int *out,
                         nr_error *err);

/* Where a softmax-based loss (SoftmaxWithLoss, InfogainLoss) keeps its probabilities:
 * top[1], shaped here like bottom[0], when the layer has a second top; else the layer's
 * own buffer *buf of *cap floats, grown here to bottom[0]'s count (owned by the layer,
 * which frees it). NR_ERR_NOMEM. */
nr_status nr__loss_prob_reshape(nr_layer *l, float **buf, int64_t *cap, nr_error *err);

#endif
