/* winograd.h: 3×3 stride-1 convolutions by Winograd's minimal filtering F(2×2, 3×3), the
 * convolution engine's path for them (im2col.c calls it; see there for the others).
 *
 * Concept. Each 2×2 block of outputs ("tile") of a 3×3 convolution needs a 4×4 block of
 * input. Transformed (V = Bᵀ d B, U = G g Gᵀ, Y = Aᵀ [U ⊙ V] A), the 36 multiply-adds of
 * a tile and channel become 16 element-wise products; summed over the input channels they
 * are 16 independent matrix products, (out channels × in channels) × (in channels × tiles),
 * which nr_gemm runs at its full speed. The arithmetic is 2.25× smaller than im2col's and
 * the transformed input is 4 floats a pixel against im2col's 9. The backward pass's data
 * gradient is the same computation with the kernel turned by 180° and its channel axes
 * swapped, and the padding 2 − pad; the weight gradient multiplies the transformed output
 * gradient (A dY Aᵀ) by the transformed input, summed over the tiles, and takes it back
 * through G.
 *
 * Results. The rounding differs from the column path's (the transforms add and halve), by
 * a few units in the last place of the inputs' scale; they do not depend on the thread
 * count (each transformed value is computed by one thread in a fixed order, and nr_gemm's
 * bits do not depend on it).
 *
 * Memory. The batch's tiles go in blocks (a few hundred KB of transformed input and
 * products each, so a block stays in its core's cache), one thread per block; each thread
 * keeps its block buffer, the caller the transformed kernel and the weight gradient's
 * chunk sums. All grow on demand and are released by nr__winograd_release()
 * (nr__conv_workspace_release calls it).
 */
#ifndef NR_WINOGRAD_H
#define NR_WINOGRAD_H

#include <stdbool.h>

#include "im2col.h"

/* For tests and benchmarks: false sends every convolution through the column path. */
extern bool nr__conv_winograd;
/* The fewest channels per group, on each side, that take Winograd (16; tests lower it to
 * check small layers cheaply). */
extern int nr__winograd_min_channels;

/* Whether cv's forward, data gradient and weight gradient go through Winograd: 2 spatial
 * axes, a 3×3 kernel, stride and dilation 1, padding at most 2, enough channels per group
 * on both sides for the 16 products to run at the GEMM's speed, and enough tiles in the
 * batch. */
bool nr__winograd_applies(const nr_conv *cv);

/* As nr__conv_forward and nr__conv_backward_data, for a cv that nr__winograd_applies to.
 * Errors: NR_ERR_NOMEM. */
nr_status nr__winograd_forward(const nr_conv *cv, const float *im, const float *w, float *out,
                               nr_error *err);
nr_status nr__winograd_backward_data(const nr_conv *cv, const float *out_diff, const float *w,
                                     float *im_diff, nr_error *err);

/* As nr__conv_weight_grad (w_diff += the gradient), for a cv that nr__winograd_applies to.
 * Errors: NR_ERR_NOMEM. */
nr_status nr__winograd_weight_grad(const nr_conv *cv, const float *im, const float *out_diff,
                                   float *w_diff, nr_error *err);

/* Frees the calling thread's buffers. */
void nr__winograd_release(void);

#endif
