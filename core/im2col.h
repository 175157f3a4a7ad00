/* im2col.h: im2col / col2im, and the convolution engine that Convolution and Deconvolution
 * share (Caffe's im2col.cpp + BaseConvolutionLayer).
 *
 * Concept. A convolution over an "image" side (C_in channels, spatial shape im_sp) producing
 * a "column" side (C_out channels, spatial shape col_sp) is lowered to matrix products:
 * im2col unrolls every receptive field into one column of a (C_in·Πk) × (Πcol_sp) matrix,
 * and the weights (C_out, C_in/group, k...) multiply it, one GEMM per group. Convolution's
 * image side is its bottom and its column side its top; Deconvolution is the same engine
 * run the other way (its top is the image side), which is why both use the weight shape
 * (conv_out, conv_in/group, k...) exactly as Caffe.
 *
 * Performance. Images are processed in chunks: the columns of B images sit side by side in
 * one buffer of (C_in·Πk) × (B·Πcol_sp) floats, so each group needs one large GEMM per chunk
 * instead of one small GEMM per image; results are then scattered back to N·C·spatial order.
 * B is the whole batch unless the buffer would pass nr__conv_workspace_floats (then as many
 * images as fit, at least one). A 1×1, stride-1, pad-0 convolution over a large enough image
 * skips im2col and multiplies the NCHW data directly, one GEMM per image. A 2-D
 * convolution writes its columns straight in the form the GEMM packs its B operand into
 * (nr_gemm_panels: slices of K, panels of 16 or 32 columns), so the forward's GEMM reads
 * them without packing them again, and the weight gradient transposes them from there; the
 * N-D path, and kernels without panels (cblas), use the plain column matrix. A 3×3,
 * stride-1 convolution with enough channels runs its forward and both gradients through
 * Winograd's F(2×2, 3×3) instead (winograd.h), with no column matrix.
 *
 * Ownership. nr_conv holds only geometry. The column workspace is one buffer per thread
 * shared by every convolution layer on that thread (layers run one at a time, so a net of
 * 50 convolutions needs one workspace, not 50); it grows on demand and is released by
 * nr__conv_workspace_release(). Data pointers are borrowed.
 */
#ifndef NR_IM2COL_H
#define NR_IM2COL_H

#include <stdbool.h>
#include <stdint.h>

#include "blob.h"
#include "caffe.pb-c.h"
#include "nr_status.h"

/* Largest number of spatial axes a convolution may have. */
#define NR_CONV_MAX_SP 8
/* Upper bound of the column workspace in floats (default 2^22 = 16 MiB); it decides how
 * many images one GEMM covers. Measured on LeNet/CIFAR/AlexNet/ResNet shapes, chunks of a
 * few MiB run as fast as whole-batch buffers (the GEMMs are already thousands of columns
 * wide) and stay in cache better. A variable only so tests can force chunking. */
extern int64_t nr__conv_workspace_floats;
/* For tests and benchmarks: false makes 2-D convolutions build the plain column matrix
 * (and the GEMM pack it) instead of writing the columns as GEMM panels (the same bits
 * either way). */
extern bool nr__conv_panels;

/* 2-D im2col of one image (channels × height × width) into col, whose row r =
 * (c·kh + i)·kw + j holds, at column oh·OW + ow, the input pixel seen by kernel tap (i, j)
 * of output (oh, ow), or 0 in the padding. Rows are `ld` floats apart (ld ≥ OH·OW), so
 * several images can share one buffer. OH/OW follow Caffe's output formula. */
void nr_im2col(const float *im, int64_t channels, int64_t height, int64_t width, int64_t kh,
               int64_t kw, int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t dh,
               int64_t dw, float *col, int64_t ld);
/* The adjoint: im += the columns summed back onto the pixels they came from. The caller
 * zeroes im first if it wants an overwrite. */
void nr_col2im(const float *col, int64_t channels, int64_t height, int64_t width, int64_t kh,
               int64_t kw, int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t dh,
               int64_t dw, float *im, int64_t ld);

/* N-D versions: nsp spatial axes, im_sp/col_sp the image and output spatial shapes. */
void nr_im2col_nd(const float *im, int nsp, int64_t channels, const int64_t *im_sp,
                  const int64_t *col_sp, const int64_t *kernel, const int64_t *pad,
                  const int64_t *stride, const int64_t *dil, float *col, int64_t ld);
void nr_col2im_nd(const float *col, int nsp, int64_t channels, const int64_t *im_sp,
                  const int64_t *col_sp, const int64_t *kernel, const int64_t *pad,
                  const int64_t *stride, const int64_t *dil, float *im, int64_t ld);

typedef struct nr_conv {
  /* From ConvolutionParameter (nr__conv_parse). */
  int axis;     /* channel axis of the bottom */
  int nsp;      /* number of spatial axes (bottom axes after `axis`) */
  int64_t kernel[NR_CONV_MAX_SP], pad[NR_CONV_MAX_SP], stride[NR_CONV_MAX_SP],
      dil[NR_CONV_MAX_SP];
  int64_t group, num_output;
  bool bias_term, force_nd;
  uint64_t id; /* unique per parsed convolution: names the columns kept in the workspace */
  /* Per shape (set by the layer's reshape, then nr__conv_prepare). */
  int64_t num;                    /* images: product of the bottom dims before axis */
  int64_t in_ch, out_ch;          /* image-side and column-side channels */
  int64_t im_sp[NR_CONV_MAX_SP];  /* image-side spatial shape */
  int64_t col_sp[NR_CONV_MAX_SP]; /* column-side spatial shape */
  int64_t im_dim, col_dim;        /* their products */
  int64_t kdim;                   /* product of kernel */
  bool is_1x1;
} nr_conv;

/* Reads kernel/pad/stride/dilation (repeated or _h/_w forms), group, bias_term, axis,
 * num_output from p (borrowed) for a bottom of shape `bottom`. Errors (NR_ERR_INPUT): num_output
 * missing or 0, a kernel dim 0, wrong count of repeated values, _h/_w mixed with the
 * repeated form or used without 2 spatial axes, axis out of range, no spatial axes, group
 * not dividing num_output. */
nr_status nr__conv_parse(nr_conv *cv, const Caffe__ConvolutionParameter *p,
                         const nr_blob *bottom, nr_error *err);
/* Effective kernel extent of spatial axis i: dil·(k−1)+1. */
int64_t nr__conv_extent(const nr_conv *cv, int i);
/* Call after num/in_ch/out_ch/im_sp/col_sp are set: derives the products and 1×1 flag
 * and grows this thread's workspace (so an out-of-memory shows at reshape).
 * Errors: NR_ERR_NOMEM. */
nr_status nr__conv_prepare(nr_conv *cv, nr_error *err);
/* Shapes every top as (leading axes of bottom, num_output, top_sp...) with `naxes` axes,
 * then runs nr__conv_prepare. Convolution passes col_sp, Deconvolution im_sp. */
nr_status nr__conv_shape_tops(nr_conv *cv, const nr_blob *bottom, nr_blob **tops, int ntop,
                              int naxes, const int64_t *top_sp, nr_error *err);
/* Frees the calling thread's workspace (it regrows when needed). */
void nr__conv_workspace_release(void);

/* The three products, each NR_ERR_NOMEM only if the workspace cannot grow.
 * forward:       out (num, out_ch, col_sp) = W ⊛ im (num, in_ch, im_sp); overwrites out.
 * backward_data: im_diff = the adjoint of forward applied to out_diff; overwrites.
 * weight_grad:   w_diff += gradient of forward's output against W, given im, out_diff.
 * When the whole batch fits one chunk, forward leaves its columns in the workspace and a
 * weight_grad of the same convolution over the same `im` pointer uses them without a
 * second im2col: `im`'s contents must not change in between (Caffe's layer contract: a
 * backward sees the bottoms of its forward). Any other use of the workspace drops them. */
nr_status nr__conv_forward(const nr_conv *cv, const float *im, const float *w, float *out,
                           nr_error *err);
nr_status nr__conv_backward_data(const nr_conv *cv, const float *out_diff, const float *w,
                                 float *im_diff, nr_error *err);
nr_status nr__conv_weight_grad(const nr_conv *cv, const float *im, const float *out_diff,
                               float *w_diff, nr_error *err);
/* The weight gradient in image chunks. A weight gradient is a sum over every image's
 * pixels; split inside its GEMM, each thread reads all the columns, half of them built by
 * the other core, and packs the whole top diff again (LeNet's conv2 ran no faster on 2
 * threads than on 1). Cut by images instead, each chunk's columns are built by the thread
 * that multiplies them (or were left by its forward over a range of images around the
 * chunk: a batch that fits one chunk of columns, or the net's sample slice). The chunks
 * depend only on the batch and the image size, and their products are added in chunk
 * order, so the bits do not depend on the threads, nor on who computes a chunk:
 * weight_grad itself, or a layer inside the net's sample slices (convolution.c).
 *   wgrad_chunks:      how many (at most NR_CONV_WGRAD_MAX_CHUNKS; chunk c holds images
 *                      [num·c/C, num·(c+1)/C)); 1 when weight_grad does not cut (then only
 *                      weight_grad).
 *   weight_grad_chunk: chunk c's product alone into part (weight_count floats, overwritten).
 *   weight_grad_add:   w_diff += the chunks' products (chunk c's at parts + c·weight_count),
 *                      added in chunk order: with the chunks, what weight_grad adds. */
#define NR_CONV_WGRAD_MAX_CHUNKS 8
int64_t nr__conv_wgrad_chunks(const nr_conv *cv);
static inline int64_t nr__conv_weight_count(const nr_conv *cv) {
  return cv->out_ch * (cv->in_ch / cv->group) * cv->kdim;
}
nr_status nr__conv_weight_grad_chunk(const nr_conv *cv, const float *im, const float *out_diff,
                                     int64_t c, float *part, nr_error *err);
void nr__conv_weight_grad_add(const nr_conv *cv, const float *parts, float *w_diff);
/* data[n][c][s] += bias[c]; bias_diff[c] += Σ_{n,s} diff[n][c][s]. */
void nr__conv_bias_add(int64_t num, int64_t ch, int64_t sp, const float *bias, float *data);
void nr__conv_bias_grad(int64_t num, int64_t ch, int64_t sp, const float *diff,
                        float *bias_diff);

#endif
