/* gradcheck.h: the finite-difference gradient checker every layer test uses (Caffe's
 * GradientChecker, include/caffe/test/test_gradient_check_util.hpp, same semantics).
 *
 * The checker builds a synthetic objective on the layer's tops, runs the layer's backward to
 * get the analytic gradient of every checked blob (bottoms and/or learnable parameters),
 * then perturbs each element x of each checked blob by ±stepsize and compares the central
 * difference (f(x+h) − f(x−h)) / 2h with the analytic value. An element passes when
 *   |analytic − numeric| ≤ threshold · max(|analytic|, |numeric|, 1)
 * Elements whose |x| lies within kink ± kink_range are skipped (ReLU at 0, MAX ties...).
 *
 * Objectives (mode):
 *   NR_GC_ALL         f = ½ Σ over all tops of top², top diff = top data (CheckGradient)
 *   NR_GC_EXHAUSTIVE  for each top element t separately: f = 2·t, top diff one-hot 2
 *                     (CheckGradientExhaustive)
 *   NR_GC_ELTWISE     as EXHAUSTIVE, but bottom element i is finite-differenced only
 *                     against top element i, and every other analytic entry must be 0
 *                     (CheckGradientEltwise; no parameters, top and bottom counts equal)
 * A loss layer's own loss weight is ignored (as in Caffe): the objective above replaces it.
 *
 * Ownership: the layer, its blobs and its bottoms/tops are borrowed. The test creates the
 * layer and runs nr_layer_setup; the checker then calls the type's reshape before every
 * forward, reseeds l->ctx->rng (when there is one) with cfg.seed before every forward so
 * stochastic layers repeat, zeroes the parameter diffs before the analytic backward and
 * sets l->prop_down to true exactly for the checked bottoms. Bottom/param data is restored
 * after each perturbation; top contents and diffs are left as the last forward wrote them.
 * Not thread safe (it drives one layer).
 */
#ifndef NR_GRADCHECK_H
#define NR_GRADCHECK_H

#include <stdint.h>

#include "blob.h"
#include "layer.h"
#include "nr_status.h"

typedef struct nr_gradcheck_config {
  float stepsize;   /* h of the central difference */
  float threshold;  /* relative tolerance (absolute below magnitude 1) */
  uint64_t seed;    /* rng seed before each forward; Caffe's default 1701 */
  float kink;       /* non-differentiable point (|x| == kink); default 0 */
  float kink_range; /* half width skipped around kink; < 0 (default -1) skips nothing */
} nr_gradcheck_config;

/* {stepsize, threshold, seed 1701, kink 0, kink_range -1}: Caffe's constructor defaults. */
nr_gradcheck_config nr_gradcheck_defaults(float stepsize, float threshold);

enum { NR_GC_ALL = 0, NR_GC_EXHAUSTIVE = 1, NR_GC_ELTWISE = 2 };

/* Which blobs to check: check_bottom == -1 every bottom and every parameter blob; i >= 0
 * bottom i and every parameter; < -1 parameters only. Returns NR_OK when every element
 * passes; NR_ERR_INPUT with a message naming the first failing element, e.g.
 *   "gradient mismatch at bottom 0 element 17 (x = 0.25; objective: top 0 element 3):
 *    analytic 0.5 vs numeric 0.62, tolerance 0.001"
 * and NR_ERR_INPUT/INTERNAL if the layer itself fails (its message, prefixed), it has no
 * backward, or nothing is left to check. */
nr_status nr_gradcheck_layer(nr_layer *l, const nr_gradcheck_config *cfg, int check_bottom,
                             int mode, nr_error *err);

/* Test helpers: fill b->data with uniform values in [lo, hi] / Gaussian(mean, std) from an
 * rng seeded with `seed` (deterministic). */
void nr_gradcheck_fill_uniform(nr_blob *b, float lo, float hi, uint64_t seed);
void nr_gradcheck_fill_gaussian(nr_blob *b, float mean, float std, uint64_t seed);

#endif
