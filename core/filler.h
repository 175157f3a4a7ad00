/* filler.h: initial values for blobs, as Caffe's fillers (include/caffe/filler.hpp).
 *
 * A FillerParameter names a type and its knobs; nr_fill writes b->data (never the diff)
 * with values drawn from the caller's rng, so a run with one seed is reproducible. Types:
 *   constant           value
 *   uniform            U(min, max)
 *   gaussian           N(mean, std); with sparse >= 0 each element is kept with
 *                      probability sparse / shape[0] and zeroed otherwise
 *   positive_unitball  U(0, 1), then each of the shape[0] rows scaled to sum 1
 *   xavier             U(-s, s), s = sqrt(3 / n)
 *   msra               N(0, sqrt(2 / n))
 *                      n from variance_norm: FAN_IN count/shape[0], FAN_OUT count/shape[1],
 *                      AVERAGE their mean
 *   bilinear           4-D square kernels of bilinear upsampling weights
 * Caffe refuses `sparse` on every type but gaussian; so does nr_fill.
 *
 * Ownership: b, fp and rng are borrowed. Not thread safe (the rng is advanced).
 */
#ifndef NR_FILLER_H
#define NR_FILLER_H

#include "blob.h"
#include "caffe.pb-c.h"
#include "nr_status.h"
#include "rng.h"

/* Fills b->data per fp (NULL = constant 0). b must be shaped; an empty blob is left alone.
 * rng may be NULL only for deterministic types (constant, bilinear).
 * Errors (NR_ERR_INPUT): unknown type ("unknown filler type 'x' (known: ...)"), sparse on
 * a type without sparsity, sparse > shape[0], bilinear on a non-4-D or non-square blob,
 * a fan of 0, a random type without an rng. */
nr_status nr_fill(nr_blob *b, const Caffe__FillerParameter *fp, nr_rng *rng, nr_error *err);

#endif
