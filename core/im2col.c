#include "im2col.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

#include "nr_math.h"
#include "parallel.h"
#include "winograd.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* The 1×1 path multiplies NCHW data image by image; below this many pixels per image the
 * GEMMs get too thin and the batched column path (a plain copy for 1×1) wins. */
#define NR_CONV_1X1_MIN_PIXELS 256

int64_t nr__conv_workspace_floats = (int64_t)1 << 22;
bool nr__conv_panels = true; /* columns as GEMM panels (use_panels) */

static _Thread_local float *tls_ws;
static _Thread_local int64_t tls_ws_cap;
/* The weight gradient's chunk products (nr__conv_weight_grad), the calling thread's. */
static _Thread_local float *tls_wpart;
static _Thread_local int64_t tls_wpart_cap;
/* The columns in this thread's workspace: those nr__conv_forward built over all
 * tls_cols_num images of `tls_cols_im` for the convolution numbered tls_cols_id (renewed
 * at each reshape, so each pass), or none (id 0). The count matters: the net runs a
 * convolution on a part of its batch, from the same first image (layer.h's
 * forward_samples). The weight gradient then reuses them instead of running im2col again
 * (for LeNet's conv2 that is a 2-million-float rebuild per iteration). This relies on the
 * layer contract that the bottoms do not change between a forward and its backward; every
 * other use of the workspace forgets them. */
static _Thread_local uint64_t tls_cols_id;
static _Thread_local const float *tls_cols_im;
static _Thread_local int64_t tls_cols_num;
/* ... and in which form: 0 a plain column matrix, else the panel width of GEMM panels. */
static _Thread_local int tls_cols_nr;
static _Atomic uint64_t conv_ids;

/* What a column row r = (c, ki, kj) reads: the image row oh·sh + dy of channel c, from
 * column ow·sw + off − c·H·W... (off includes c·H·W and the kj shift), for output columns
 * [vlo, vhi) (the others are padding). */
typedef struct panel_row {
  int64_t off, dy, vlo, vhi;
} panel_row;
/* This thread's table of them (panels_chunk). */
static _Thread_local panel_row *tls_prow;
static _Thread_local int64_t tls_prow_cap;

/* n floats from s to d: short rows (8 floats for LeNet's conv2) copied inline, not by a
 * memcpy call per row. */
static inline void copy_floats(float *restrict d, const float *restrict s, int64_t n) {
  int64_t i = 0;
#ifdef __SSE2__
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(d + i, _mm_loadu_ps(s + i));
#endif
  for (; i < n; i++) d[i] = s[i];
}

/* d[i] += s[i] for n floats. */
static inline void add_floats(float *restrict d, const float *restrict s, int64_t n) {
  int64_t i = 0;
#ifdef __SSE2__
  for (; i + 4 <= n; i += 4)
    _mm_storeu_ps(d + i, _mm_add_ps(_mm_loadu_ps(d + i), _mm_loadu_ps(s + i)));
#endif
  for (; i < n; i++) d[i] += s[i];
}

static inline int64_t out_dim(int64_t in, int64_t k, int64_t p, int64_t s, int64_t d) {
  return (in + 2 * p - (d * (k - 1) + 1)) / s + 1;
}

/* Output positions [lo, hi) along one axis whose input index ow*s + off lies in [0, n). */
static inline void valid_range(int64_t n, int64_t off, int64_t s, int64_t outn, int64_t *lo,
                               int64_t *hi) {
  int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
  int64_t b = (n - 1 - off) < 0 ? 0 : (n - 1 - off) / s + 1;
  if (a > outn) a = outn;
  if (b > outn) b = outn;
  if (b < a) b = a;
  *lo = a;
  *hi = b;
}

void nr_im2col(const float *im, int64_t channels, int64_t height, int64_t width, int64_t kh,
               int64_t kw, int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t dh,
               int64_t dw, float *col, int64_t ld) {
  const int64_t oh_n = out_dim(height, kh, ph, sh, dh), ow_n = out_dim(width, kw, pw, sw, dw);
  for (int64_t c = 0; c < channels; c++) {
    const float *src = im + c * height * width;
    for (int64_t i = 0; i < kh; i++) {
      for (int64_t j = 0; j < kw; j++) {
        float *row = col + ((c * kh + i) * kw + j) * ld;
        const int64_t woff = j * dw - pw;
        int64_t lo, hi;
        valid_range(width, woff, sw, ow_n, &lo, &hi);
        for (int64_t oh = 0; oh < oh_n; oh++) {
          float *dst = row + oh * ow_n;
          const int64_t ih = oh * sh - ph + i * dh;
          if (ih < 0 || ih >= height) {
            for (int64_t ow = 0; ow < ow_n; ow++) dst[ow] = 0;
            continue;
          }
          const float *s = src + ih * width + woff;
          for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0;
          if (sw == 1)
            copy_floats(dst + lo, s + lo, hi - lo);
          else
            for (int64_t ow = lo; ow < hi; ow++) dst[ow] = s[ow * sw];
          for (int64_t ow = hi; ow < ow_n; ow++) dst[ow] = 0;
        }
      }
    }
  }
}

void nr_col2im(const float *col, int64_t channels, int64_t height, int64_t width, int64_t kh,
               int64_t kw, int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t dh,
               int64_t dw, float *im, int64_t ld) {
  const int64_t oh_n = out_dim(height, kh, ph, sh, dh), ow_n = out_dim(width, kw, pw, sw, dw);
  for (int64_t c = 0; c < channels; c++) {
    float *dst = im + c * height * width;
    for (int64_t i = 0; i < kh; i++) {
      for (int64_t j = 0; j < kw; j++) {
        const float *row = col + ((c * kh + i) * kw + j) * ld;
        const int64_t woff = j * dw - pw;
        int64_t lo, hi;
        valid_range(width, woff, sw, ow_n, &lo, &hi);
        for (int64_t oh = 0; oh < oh_n; oh++) {
          const int64_t ih = oh * sh - ph + i * dh;
          if (ih < 0 || ih >= height) continue;
          const float *s = row + oh * ow_n;
          float *d = dst + ih * width + woff;
          if (sw == 1)
            add_floats(d + lo, s + lo, hi - lo);
          else
            for (int64_t ow = lo; ow < hi; ow++) d[ow * sw] += s[ow];
        }
      }
    }
  }
}

/* Shared walk of the N-D versions: for every column row (channel, kernel tap) and output
 * position, the image offset or -1 in the padding. */
static void nd_walk(bool to_col, const float *im_in, float *im_out, int nsp, int64_t channels,
                    const int64_t *im_sp, const int64_t *col_sp, const int64_t *kernel,
                    const int64_t *pad, const int64_t *stride, const int64_t *dil,
                    const float *col_in, float *col_out, int64_t ld) {
  int64_t kdim = 1, cdim = 1, idim = 1;
  for (int a = 0; a < nsp; a++) {
    kdim *= kernel[a];
    cdim *= col_sp[a];
    idim *= im_sp[a];
  }
  int64_t kidx[NR_CONV_MAX_SP], oidx[NR_CONV_MAX_SP];
  for (int64_t r = 0; r < channels * kdim; r++) {
    int64_t c = r / kdim, rem = r % kdim;
    for (int a = nsp - 1; a >= 0; a--) {
      kidx[a] = rem % kernel[a];
      rem /= kernel[a];
    }
    for (int a = 0; a < nsp; a++) oidx[a] = 0;
    for (int64_t p = 0; p < cdim; p++) {
      int64_t off = 0;
      bool inside = true;
      for (int a = 0; a < nsp; a++) {
        int64_t x = oidx[a] * stride[a] - pad[a] + kidx[a] * dil[a];
        if (x < 0 || x >= im_sp[a]) {
          inside = false;
          break;
        }
        off = off * im_sp[a] + x;
      }
      if (to_col)
        col_out[r * ld + p] = inside ? im_in[c * idim + off] : 0.0f;
      else if (inside)
        im_out[c * idim + off] += col_in[r * ld + p];
      for (int a = nsp - 1; a >= 0; a--) { /* odometer */
        if (++oidx[a] < col_sp[a]) break;
        oidx[a] = 0;
      }
    }
  }
}

void nr_im2col_nd(const float *im, int nsp, int64_t channels, const int64_t *im_sp,
                  const int64_t *col_sp, const int64_t *kernel, const int64_t *pad,
                  const int64_t *stride, const int64_t *dil, float *col, int64_t ld) {
  nd_walk(true, im, NULL, nsp, channels, im_sp, col_sp, kernel, pad, stride, dil, NULL, col, ld);
}

void nr_col2im_nd(const float *col, int nsp, int64_t channels, const int64_t *im_sp,
                  const int64_t *col_sp, const int64_t *kernel, const int64_t *pad,
                  const int64_t *stride, const int64_t *dil, float *im, int64_t ld) {
  nd_walk(false, NULL, im, nsp, channels, im_sp, col_sp, kernel, pad, stride, dil, col, NULL, ld);
}

/* ---- parameters ---------------------------------------------------------------------- */

/* One spatial parameter given either as a repeated field (none = default, one value for
 * every axis, or one per axis) or as the _h/_w pair. */
static nr_status spatial_param(const char *name, int nsp, size_t n, const uint32_t *vals,
                               bool has_h, uint32_t h, bool has_w, uint32_t w, int64_t def,
                               int64_t *out, nr_error *err) {
  if (has_h || has_w) {
    if (nsp != 2)
      return nr_err_set(err, NR_ERR_INPUT,
                        "%s_h/%s_w can only be used for 2 spatial axes (this input has %d)",
                        name, name, nsp);
    if (n != 0)
      return nr_err_set(err, NR_ERR_INPUT, "give either %s or %s_h/%s_w, not both", name, name,
                        name);
    if (!(has_h && has_w) && strcmp(name, "kernel") == 0)
      return nr_err_set(err, NR_ERR_INPUT, "kernel_h and kernel_w must be given together");
    out[0] = has_h ? h : def;
    out[1] = has_w ? w : def;
    return NR_OK;
  }
  if (n == 0) {
    for (int a = 0; a < nsp; a++) out[a] = def;
    return NR_OK;
  }
  if (n != 1 && n != (size_t)nsp)
    return nr_err_set(err, NR_ERR_INPUT,
                      "%s must be given once, or once per spatial axis (%d); got %zu values",
                      name, nsp, n);
  for (int a = 0; a < nsp; a++) out[a] = vals[n == 1 ? 0 : a];
  return NR_OK;
}

nr_status nr__conv_parse(nr_conv *cv, const Caffe__ConvolutionParameter *p,
                         const nr_blob *bottom, nr_error *err) {
  if (!p || !p->has_num_output || p->num_output == 0)
    return nr_err_set(err, NR_ERR_INPUT,
                      "num_output must be given and > 0 (convolution_param { num_output: N })");
  int axis = nr_blob_axis(bottom, p->axis);
  if (axis < 0)
    return nr_err_set(err, NR_ERR_INPUT, "axis %d out of range for a bottom with %d axes",
                      (int)p->axis, bottom->num_axes);
  int nsp = bottom->num_axes - axis - 1;
  if (nsp < 1)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom has %d axes and channel axis %d: no spatial axes to convolve",
                      bottom->num_axes, axis);
  if (nsp > NR_CONV_MAX_SP)
    return nr_err_set(err, NR_ERR_INPUT, "%d spatial axes; at most %d supported", nsp,
                      NR_CONV_MAX_SP);
  cv->axis = axis;
  cv->nsp = nsp;
  if (p->n_kernel_size == 0 && !p->has_kernel_h && !p->has_kernel_w)
    return nr_err_set(err, NR_ERR_INPUT, "kernel_size (or kernel_h and kernel_w) is required");
  NR_TRY(spatial_param("kernel", nsp, p->n_kernel_size, p->kernel_size, p->has_kernel_h,
                       p->kernel_h, p->has_kernel_w, p->kernel_w, 0, cv->kernel, err));
  NR_TRY(spatial_param("stride", nsp, p->n_stride, p->stride, p->has_stride_h, p->stride_h,
                       p->has_stride_w, p->stride_w, 1, cv->stride, err));
  NR_TRY(spatial_param("pad", nsp, p->n_pad, p->pad, p->has_pad_h, p->pad_h, p->has_pad_w,
                       p->pad_w, 0, cv->pad, err));
  NR_TRY(spatial_param("dilation", nsp, p->n_dilation, p->dilation, false, 0, false, 0, 1,
                       cv->dil, err));
  for (int a = 0; a < nsp; a++) {
    if (cv->kernel[a] <= 0)
      return nr_err_set(err, NR_ERR_INPUT, "kernel size of spatial axis %d must be > 0", a);
    if (cv->stride[a] <= 0)
      return nr_err_set(err, NR_ERR_INPUT, "stride of spatial axis %d must be > 0", a);
    if (cv->dil[a] <= 0)
      return nr_err_set(err, NR_ERR_INPUT, "dilation of spatial axis %d must be > 0", a);
  }
  cv->group = p->group;
  if (cv->group <= 0) return nr_err_set(err, NR_ERR_INPUT, "group must be > 0");
  cv->num_output = p->num_output;
  if (cv->num_output % cv->group != 0)
    return nr_err_set(err, NR_ERR_INPUT, "num_output %lld is not a multiple of group %lld",
                      (long long)cv->num_output, (long long)cv->group);
  cv->bias_term = p->bias_term;
  cv->force_nd = p->force_nd_im2col;
  cv->id = atomic_fetch_add(&conv_ids, 1) + 1;
  return NR_OK;
}

int64_t nr__conv_extent(const nr_conv *cv, int i) {
  return cv->dil[i] * (cv->kernel[i] - 1) + 1;
}

static bool use_direct_1x1(const nr_conv *cv) {
  return cv->is_1x1 && (cv->col_dim >= NR_CONV_1X1_MIN_PIXELS || cv->num == 1);
}

/* Images per chunk: as many as keep the column + output buffers under the cap. */
static int64_t chunk_images(const nr_conv *cv) {
  int64_t per = (cv->in_ch * cv->kdim + cv->out_ch) * cv->col_dim;
  if (per <= 0) return 1;
  int64_t b = nr__conv_workspace_floats / per;
  if (b < 1) b = 1;
  if (b > cv->num) b = cv->num;
  return b;
}

static int64_t ws_need(const nr_conv *cv) {
  if (use_direct_1x1(cv) || cv->num == 0) return 0;
  /* (+ the zero columns that pad each group's panels to a whole panel, at most 31) */
  return (cv->in_ch * cv->kdim + cv->out_ch) * cv->col_dim * chunk_images(cv) +
         cv->in_ch * cv->kdim * 31;
}

/* *out = this thread's workspace, grown to at least ws_need(cv) floats. */
static nr_status ws_get(const nr_conv *cv, float **out, nr_error *err) {
  int64_t need = ws_need(cv);
  if (need > tls_ws_cap) {
    /* 64-byte aligned, as GEMM panels must be (the content need not survive) */
    float *ws = aligned_alloc(64, ((size_t)need * sizeof *ws + 63) & ~(size_t)63);
    if (!ws)
      return nr_err_set(err, NR_ERR_NOMEM,
                        "out of memory for a %lld-float convolution workspace", (long long)need);
    free(tls_ws);
    tls_ws = ws;
    tls_ws_cap = need;
    tls_cols_id = 0;
  }
  *out = tls_ws;
  return NR_OK;
}

nr_status nr__conv_shape_tops(nr_conv *cv, const nr_blob *bottom, nr_blob **tops, int ntop,
                              int naxes, const int64_t *top_sp, nr_error *err) {
  int64_t dims[NR_MAX_AXES];
  for (int a = 0; a < cv->axis; a++) dims[a] = bottom->shape[a];
  dims[cv->axis] = cv->num_output;
  for (int a = 0; a < cv->nsp; a++) dims[cv->axis + 1 + a] = top_sp[a];
  for (int i = 0; i < ntop; i++) NR_TRY(nr_blob_reshape(tops[i], naxes, dims, err));
  return nr__conv_prepare(cv, err);
}

nr_status nr__conv_prepare(nr_conv *cv, nr_error *err) {
  /* A new number for every reshape, so for every pass: columns a thread kept from an
   * earlier pass (over the same pointer, with other contents) are not taken for this one's.
   * With the net's sample slices a thread may build a slice's columns in one pass and not
   * in the next, which the thread that did then builds instead. */
  cv->id = atomic_fetch_add(&conv_ids, 1) + 1;
  cv->im_dim = cv->col_dim = cv->kdim = 1;
  cv->is_1x1 = true;
  for (int a = 0; a < cv->nsp; a++) {
    cv->im_dim *= cv->im_sp[a];
    cv->col_dim *= cv->col_sp[a];
    cv->kdim *= cv->kernel[a];
    if (cv->kernel[a] != 1 || cv->stride[a] != 1 || cv->pad[a] != 0) cv->is_1x1 = false;
  }
  float *ws;
  return ws_get(cv, &ws, err);
}

void nr__conv_workspace_release(void) {
  free(tls_ws);
  tls_ws = NULL;
  tls_ws_cap = 0;
  free(tls_prow);
  tls_prow = NULL;
  tls_prow_cap = 0;
  free(tls_wpart);
  tls_wpart = NULL;
  tls_wpart_cap = 0;
  tls_cols_id = 0;
  nr__winograd_release();
}

static void im2col_one(const nr_conv *cv, const float *im, float *col, int64_t ld) {
  if (cv->nsp == 2 && !cv->force_nd)
    nr_im2col(im, cv->in_ch, cv->im_sp[0], cv->im_sp[1], cv->kernel[0], cv->kernel[1],
              cv->pad[0], cv->pad[1], cv->stride[0], cv->stride[1], cv->dil[0], cv->dil[1], col,
              ld);
  else
    nr_im2col_nd(im, cv->nsp, cv->in_ch, cv->im_sp, cv->col_sp, cv->kernel, cv->pad, cv->stride,
                 cv->dil, col, ld);
}

static void col2im_one(const nr_conv *cv, const float *col, float *im, int64_t ld) {
  if (cv->nsp == 2 && !cv->force_nd)
    nr_col2im(col, cv->in_ch, cv->im_sp[0], cv->im_sp[1], cv->kernel[0], cv->kernel[1],
              cv->pad[0], cv->pad[1], cv->stride[0], cv->stride[1], cv->dil[0], cv->dil[1], im,
              ld);
  else
    nr_col2im_nd(col, cv->nsp, cv->in_ch, cv->im_sp, cv->col_sp, cv->kernel, cv->pad, cv->stride,
                 cv->dil, im, ld);
}

/* Columns of images [n0, n0+b) side by side: (in_ch·kdim) × (b·col_dim). Images are
 * spread over the GEMM's threads (each writes its own columns). */
typedef struct im2col_job {
  const nr_conv *cv;
  const float *im;
  int64_t n0, b;
  float *col;
} im2col_job;

static void im2col_range(void *ctx, int64_t lo, int64_t hi) {
  const im2col_job *j = ctx;
  const nr_conv *cv = j->cv;
  for (int64_t i = lo; i < hi; i++)
    im2col_one(cv, j->im + (j->n0 + i) * cv->in_ch * cv->im_dim, j->col + i * cv->col_dim,
               j->b * cv->col_dim);
}

static void im2col_chunk(const nr_conv *cv, const float *im, int64_t n0, int64_t b, float *col) {
  im2col_job j = {cv, im, n0, b, col};
  nr__parallel_for(b, 4, im2col_range, &j);
}

/* The adjoint for the data gradient: images [n0, n0+b) of im_diff = col2im of the chunk's
 * columns (overwritten), images spread over threads. */
typedef struct col2im_job {
  const nr_conv *cv;
  const float *col;
  int64_t n0, b;
  float *im_diff;
} col2im_job;

static void col2im_range(void *ctx, int64_t lo, int64_t hi) {
  const col2im_job *j = ctx;
  const nr_conv *cv = j->cv;
  for (int64_t i = lo; i < hi; i++) {
    float *im = j->im_diff + (j->n0 + i) * cv->in_ch * cv->im_dim;
    memset(im, 0, (size_t)(cv->in_ch * cv->im_dim) * sizeof *im);
    col2im_one(cv, j->col + i * cv->col_dim, im, j->b * cv->col_dim);
  }
}

/* (out_ch) × (b·col_dim) buffer <-> NCHW images [n0, n0+b). */
static void gather_chunk(const nr_conv *cv, const float *src, int64_t n0, int64_t b, float *buf) {
  const int64_t P = cv->col_dim;
  for (int64_t i = 0; i < b; i++)
    for (int64_t m = 0; m < cv->out_ch; m++)
      memcpy(buf + m * b * P + i * P, src + ((n0 + i) * cv->out_ch + m) * P,
             (size_t)P * sizeof *buf);
}
static void scatter_chunk(const nr_conv *cv, const float *buf, int64_t n0, int64_t b, float *dst) {
  const int64_t P = cv->col_dim;
  for (int64_t i = 0; i < b; i++)
    for (int64_t m = 0; m < cv->out_ch; m++)
      memcpy(dst + ((n0 + i) * cv->out_ch + m) * P, buf + m * b * P + i * P,
             (size_t)P * sizeof *buf);
}

/* ---- columns in GEMM panels ------------------------------------------------------------ */

/* A 2-D convolution's columns are written straight into the panels nr_gemm packs its B
 * operand into (nr__gemm_panels): the forward's GEMM then reads them as they are, where it
 * used to pack the whole column matrix again (LeNet's conv2: 8 MB read and written per
 * pass), and the weight gradient transposes them from there as it did from the plain
 * matrix. The values, and so the bits, are those of the plain column matrix. */
static bool use_panels(const nr_conv *cv, int64_t b, nr_gemm_panels *pl) {
  return nr__conv_panels && cv->nsp == 2 && !cv->force_nd &&
         nr__gemm_panels(cv->in_ch / cv->group * cv->kdim, b * cv->col_dim, pl);
}

/* Columns of images [n0, n0+b): group g's (Kg x b·P) matrix at x + g·Kg·npad. */

typedef struct panel_job {
  const nr_conv *cv;
  const float *im;
  int64_t n0;
  const nr_gemm_panels *pl;
  const panel_row *rows; /* Kg entries */
  float *x;
} panel_job;

/* len values of one column row, d[t] = image value at column ow0 + t of the input row at
 * s (NULL: a padding row), zero where the column falls into the padding. */
static inline void panel_run(float *restrict d, const float *restrict s, int64_t ow0,
                             int64_t len, int64_t lo, int64_t hi, int64_t sw) {
  int64_t a = lo > ow0 ? lo - ow0 : 0, b = hi - ow0 < len ? hi - ow0 : len;
  if (!s || b <= a) {
    for (int64_t t = 0; t < len; t++) d[t] = 0;
    return;
  }
  for (int64_t t = 0; t < a; t++) d[t] = 0;
  if (sw == 1)
    copy_floats(d + a, s + ow0 + a, b - a);
  else
    for (int64_t t = a; t < b; t++) d[t] = s[(ow0 + t) * sw];
  for (int64_t t = b; t < len; t++) d[t] = 0;
}

/* Panels [p0, p1) of every group, one after the other and each row after row, so the
 * writes run straight through memory (the image rows they read stay in cache). A panel's
 * nr columns are cut into segments that lie in one output row of one image. */
typedef struct panel_seg {
  int64_t lane, len, ow, ih0, base; /* ih0 = oh·sh, base = the image's offset */
} panel_seg;

static void panel_range(void *ctx, int64_t p0, int64_t p1) {
  const panel_job *j = ctx;
  const nr_conv *cv = j->cv;
  const nr_gemm_panels *pl = j->pl;
  const int64_t H = cv->im_sp[0], W = cv->im_sp[1], OW = cv->col_sp[1], P = cv->col_dim;
  const int64_t Cg = cv->in_ch / cv->group, Kg = Cg * cv->kdim;
  const int64_t nr = pl->nr, sw = cv->stride[1];
  panel_seg seg[64]; /* nr <= 32 columns: at most nr segments */
  for (int64_t p = p0; p < p1; p++) {
    int nseg = 0;
    for (int64_t q = p * nr; q < (p + 1) * nr && q < pl->n;) {
      const int64_t img = q / P, oh = q % P / OW, ow = q % OW;
      const int64_t end = (p + 1) * nr < pl->n ? (p + 1) * nr : pl->n;
      const int64_t len = OW - ow < end - q ? OW - ow : end - q;
      seg[nseg++] = (panel_seg){q - p * nr, len, ow, oh * cv->stride[0], img * cv->in_ch * H * W};
      q += len;
    }
    for (int64_t g = 0; g < cv->group; g++) {
      const float *im0 = j->im + (j->n0 * cv->in_ch + g * Cg) * H * W;
      for (int64_t s0 = 0; s0 < Kg; s0 += pl->kc) {
        const int64_t kcs = Kg - s0 < pl->kc ? Kg - s0 : pl->kc;
        float *d = j->x + g * Kg * pl->npad + s0 * pl->npad + p * nr * kcs;
        for (int64_t r = s0; r < s0 + kcs; r++, d += nr) {
          const panel_row *pr = &j->rows[r];
          for (int k = 0; k < nseg; k++) {
            const panel_seg *sg = &seg[k];
            const int64_t ih = sg->ih0 + pr->dy;
            const float *src =
                (uint64_t)ih < (uint64_t)H ? im0 + sg->base + pr->off + ih * W : NULL;
            if (src && sw == 1 && sg->ow >= pr->vlo && sg->ow + sg->len <= pr->vhi)
              copy_floats(d + sg->lane, src + sg->ow, sg->len); /* the common case */
            else
              panel_run(d + sg->lane, src, sg->ow, sg->len, pr->vlo, pr->vhi, sw);
          }
          for (int64_t t = seg[nseg - 1].lane + seg[nseg - 1].len; t < nr; t++) d[t] = 0;
        }
      }
    }
  }
}

/* Fills the panels of images [n0, n0+b) (b·P = pl->n columns per group, the padding
 * columns of the last panel zero), panels spread over threads. */
/* (false: out of memory) */
static bool panels_chunk(const nr_conv *cv, const float *im, int64_t n0,
                         const nr_gemm_panels *pl, float *x) {
  const int64_t H = cv->im_sp[0], W = cv->im_sp[1], kh = cv->kernel[0], kw = cv->kernel[1];
  if (tls_prow_cap < pl->k) {
    panel_row *nrw = realloc(tls_prow, (size_t)pl->k * sizeof *nrw);
    if (!nrw) return false;
    tls_prow = nrw;
    tls_prow_cap = pl->k;
  }
  for (int64_t r = 0; r < pl->k; r++) {
    const int64_t c = r / (kh * kw), ki = r / kw % kh, kj = r % kw;
    const int64_t woff = kj * cv->dil[1] - cv->pad[1];
    panel_row *pr = &tls_prow[r];
    pr->off = c * H * W + woff;
    pr->dy = ki * cv->dil[0] - cv->pad[0];
    valid_range(W, woff, cv->stride[1], cv->col_sp[1], &pr->vlo, &pr->vhi);
  }
  panel_job j = {cv, im, n0, pl, tls_prow, x};
  nr__parallel_for(pl->npad / pl->nr, 4, panel_range, &j);
  return true;
}

nr_status nr__conv_forward(const nr_conv *cv, const float *im, const float *w, float *out,
                           nr_error *err) {
  const int64_t G = cv->group, Mg = cv->out_ch / G, Kg = cv->in_ch / G * cv->kdim;
  const int64_t P = cv->col_dim;
  if (use_direct_1x1(cv)) {
    for (int64_t n = 0; n < cv->num; n++)
      for (int64_t g = 0; g < G; g++)
        nr_gemm(false, false, Mg, P, Kg, 1.0f, w + g * Mg * Kg,
                im + n * cv->in_ch * P + g * Kg * P, 0.0f, out + n * cv->out_ch * P + g * Mg * P);
    return NR_OK;
  }
  if (nr__winograd_applies(cv)) {
    tls_cols_id = 0; /* no columns kept (the weight gradient goes through Winograd too) */
    return nr__winograd_forward(cv, im, w, out, err);
  }
  float *ws;
  NR_TRY(ws_get(cv, &ws, err));
  const int64_t B = chunk_images(cv);
  nr_gemm_panels pl;
  const bool panels = use_panels(cv, B, &pl);
  for (int64_t n0 = 0; n0 < cv->num; n0 += B) {
    int64_t b = cv->num - n0 < B ? cv->num - n0 : B;
    const nr_gemm_layout lo = {P, P, cv->out_ch * P};
    float *o = out + n0 * cv->out_ch * P;
    if (panels) {
      if (b != B) nr__gemm_panels(Kg, b * P, &pl);
      if (!panels_chunk(cv, im, n0, &pl, ws))
        return nr_err_set(err, NR_ERR_NOMEM, "out of memory for the column tables");
      /* in place when the output planes suit the GEMM's grouped columns, else through a
       * buffer that is scattered */
      const bool direct = b == 1 || P % NR_GEMM_GROUP_ALIGN == 0;
      float *obuf = ws + G * Kg * pl.npad;
      for (int64_t g = 0; g < G; g++) {
        const float *x = ws + g * Kg * pl.npad, *wg = w + g * Mg * Kg;
        if (!(direct ? nr__gemm_paneled(false, false, Mg, b * P, Kg, 1.0f, wg, NULL, x, &pl,
                                        0.0f, o + g * Mg * P, &lo)
                     : nr__gemm_paneled(false, false, Mg, b * P, Kg, 1.0f, wg, NULL, x, &pl,
                                        0.0f, obuf + g * Mg * b * P, NULL)))
          return nr_err_set(err, NR_ERR_NOMEM, "out of memory for the GEMM's packing buffer");
      }
      if (!direct) scatter_chunk(cv, obuf, n0, b, out);
      continue;
    }
    float *col = ws, *obuf = ws + cv->in_ch * cv->kdim * b * P;
    im2col_chunk(cv, im, n0, b, col);
    /* The GEMM writes the N·C·spatial output in place when it can, else a buffer that is
     * scattered. */
    bool direct = true;
    for (int64_t g = 0; g < G && direct; g++)
      direct = nr__gemm_strided(false, false, Mg, b * P, Kg, 1.0f, w + g * Mg * Kg, NULL,
                                col + g * Kg * b * P, NULL, 0.0f, o + g * Mg * P, &lo);
    if (direct) continue; /* (a refusal comes at g = 0, before anything is written) */
    for (int64_t g = 0; g < G; g++)
      nr_gemm(false, false, Mg, b * P, Kg, 1.0f, w + g * Mg * Kg, col + g * Kg * b * P, 0.0f,
              obuf + g * Mg * b * P);
    scatter_chunk(cv, obuf, n0, b, out);
  }
  tls_cols_id = B == cv->num ? cv->id : 0;
  tls_cols_im = im;
  tls_cols_num = cv->num;
  tls_cols_nr = panels ? pl.nr : 0;
  return NR_OK;
}

#define NR_CONV_BWD_COL_FLOATS ((int64_t)1 << 18)

/* Images per chunk of the data gradient: columns that stay in this core's cache until
 * col2im reads them back, about 1 MB (LeNet's conv2: 8 images, not all 64 in one 8 MB
 * matrix). Each image's gradient is its own, so the chunking does not change the bits. */
static int64_t bwd_chunk_images(const nr_conv *cv) {
  int64_t B = NR_CONV_BWD_COL_FLOATS / (cv->in_ch * cv->kdim * cv->col_dim);
  if (B < 1) B = 1;
  if (B > chunk_images(cv)) B = chunk_images(cv);
  return B;
}

/* Images [n0, n0+b) of im_diff through the columns in this thread's workspace. */
static nr_status bwd_data_chunk(const nr_conv *cv, const float *out_diff, const float *w,
                                float *im_diff, int64_t n0, int64_t b, nr_error *err) {
  const int64_t G = cv->group, Mg = cv->out_ch / G, Kg = cv->in_ch / G * cv->kdim;
  const int64_t P = cv->col_dim;
  float *ws;
  NR_TRY(ws_get(cv, &ws, err));
  tls_cols_id = 0; /* the GEMM below overwrites the columns */
  float *col = ws, *obuf = ws + cv->in_ch * cv->kdim * b * P;
  const nr_gemm_layout lo = {P, P, cv->out_ch * P};
  const float *od = out_diff + n0 * cv->out_ch * P;
  bool direct = true;
  for (int64_t g = 0; g < G && direct; g++)
    direct = nr__gemm_strided(true, false, Kg, b * P, Mg, 1.0f, w + g * Mg * Kg, NULL,
                              od + g * Mg * P, &lo, 0.0f, col + g * Kg * b * P, NULL);
  if (!direct) {
    gather_chunk(cv, out_diff, n0, b, obuf);
    for (int64_t g = 0; g < G; g++)
      nr_gemm(true, false, Kg, b * P, Mg, 1.0f, w + g * Mg * Kg, obuf + g * Mg * b * P, 0.0f,
              col + g * Kg * b * P);
  }
  col2im_job cj = {cv, col, n0, b, im_diff};
  nr__parallel_for(b, 4, col2im_range, &cj);
  return NR_OK;
}

/* Chunks side by side: each thread multiplies its own chunks and runs their col2im from
 * its own cache. Split inside the GEMM instead, col2im (CaffeNet's conv1 and conv2: one
 * image per chunk) ran on one thread and read columns half written by the other core. */
typedef struct bwd_data_job {
  const nr_conv *cv;
  const float *out_diff, *w;
  float *im_diff;
  int64_t B, chunks;
} bwd_data_job;

static bool bwd_data_part(void *ctx, int p, int parts) {
  const bwd_data_job *j = ctx;
  nr_error e;
  for (int64_t c = j->chunks * p / parts; c < j->chunks * (p + 1) / parts; c++) {
    int64_t n0 = c * j->B, b = j->cv->num - n0 < j->B ? j->cv->num - n0 : j->B;
    if (bwd_data_chunk(j->cv, j->out_diff, j->w, j->im_diff, n0, b, &e) != NR_OK) return false;
  }
  return true;
}

nr_status nr__conv_backward_data(const nr_conv *cv, const float *out_diff, const float *w,
                                 float *im_diff, nr_error *err) {
  const int64_t G = cv->group, Mg = cv->out_ch / G, Kg = cv->in_ch / G * cv->kdim;
  const int64_t P = cv->col_dim;
  if (use_direct_1x1(cv)) {
    for (int64_t n = 0; n < cv->num; n++)
      for (int64_t g = 0; g < G; g++)
        nr_gemm(true, false, Kg, P, Mg, 1.0f, w + g * Mg * Kg,
                out_diff + n * cv->out_ch * P + g * Mg * P, 0.0f,
                im_diff + n * cv->in_ch * P + g * Kg * P);
    return NR_OK;
  }
  if (nr__winograd_applies(cv)) return nr__winograd_backward_data(cv, out_diff, w, im_diff, err);
  const int64_t B = bwd_chunk_images(cv), chunks = (cv->num + B - 1) / B;
  const int64_t T = nr__parallel_threads();
  if (T > 1 && (chunks >= 2 * T || (chunks >= T && chunks % T == 0))) {
    bwd_data_job j = {cv, out_diff, w, im_diff, B, chunks};
    if (!nr__parallel_run(bwd_data_part, &j,
                          (int)(chunks < NR_PARALLEL_MAX_PARTS ? chunks : NR_PARALLEL_MAX_PARTS)))
      return nr_err_set(err, NR_ERR_NOMEM, "out of memory for a convolution workspace");
    return NR_OK;
  }
  for (int64_t n0 = 0; n0 < cv->num; n0 += B)
    NR_TRY(bwd_data_chunk(cv, out_diff, w, im_diff, n0, cv->num - n0 < B ? cv->num - n0 : B,
                          err));
  return NR_OK;
}

/* The weight gradient of images [0, cv->num) at `im` from panels the forward left in this
 * thread's workspace (ws) over more images around them: a chunk of the batch (the chunks
 * of nr__conv_weight_grad) inside the batch or the sample slice the forward ran on. The
 * products run over the same column ranges, B images at a time, as on columns built for
 * the chunk alone, so the bits are the same. 0, nothing done, when the workspace holds no
 * such panels; 1 done; -1 out of memory for the GEMM's packing buffer. */
static int kept_panels_from(const nr_conv *cv, const float *im, int64_t B, float *ws,
                             const float *out_diff, float *w_diff) {
  const int64_t G = cv->group, Mg = cv->out_ch / G, Kg = cv->in_ch / G * cv->kdim;
  const int64_t P = cv->col_dim, per = cv->in_ch * cv->im_dim;
  if (tls_cols_id != cv->id || !tls_cols_nr || im < tls_cols_im) return 0;
  const int64_t off = (im - tls_cols_im) / per;
  if ((im - tls_cols_im) % per || off + cv->num > tls_cols_num) return 0;
  nr_gemm_panels pk;
  if (!nr__gemm_panels(Kg, tls_cols_num * P, &pk) || pk.nr != tls_cols_nr) return 0;
  const nr_gemm_layout lo = {P, P, cv->out_ch * P};
  for (int64_t n0 = 0; n0 < cv->num; n0 += B) {
    const int64_t b = cv->num - n0 < B ? cv->num - n0 : B;
    for (int64_t g = 0; g < G; g++)
      if (!nr__gemm_paneled_cols(false, Mg, Kg, b * P, (off + n0) * P, 1.0f,
                                 out_diff + n0 * cv->out_ch * P + g * Mg * P, &lo,
                                 ws + g * Kg * pk.npad, &pk, 1.0f, w_diff + g * Mg * Kg, NULL))
        return -1; /* (the shapes suit it: only the packing buffer can fail) */
  }
  return 1;
}

/* w_diff += the weight gradient over all cv->num images, on the threads of the products. */
static nr_status weight_grad_images(const nr_conv *cv, const float *im, const float *out_diff,
                                    float *w_diff, nr_error *err) {
  const int64_t G = cv->group, Mg = cv->out_ch / G, Kg = cv->in_ch / G * cv->kdim;
  const int64_t P = cv->col_dim;
  if (use_direct_1x1(cv)) {
    for (int64_t n = 0; n < cv->num; n++)
      for (int64_t g = 0; g < G; g++)
        nr_gemm(false, true, Mg, Kg, P, 1.0f, out_diff + n * cv->out_ch * P + g * Mg * P,
                im + n * cv->in_ch * P + g * Kg * P, 1.0f, w_diff + g * Mg * Kg);
    return NR_OK;
  }
  float *ws;
  NR_TRY(ws_get(cv, &ws, err));
  const int64_t B = chunk_images(cv);
  nr_gemm_panels pl;
  const bool panels = use_panels(cv, B, &pl);
  /* panels the forward left (for these images or more) are read where they are */
  const int kept_from = panels ? kept_panels_from(cv, im, B, ws, out_diff, w_diff) : 0;
  if (kept_from < 0)
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory for the GEMM's packing buffer");
  if (kept_from) return NR_OK;
  for (int64_t n0 = 0; n0 < cv->num; n0 += B) {
    int64_t b = cv->num - n0 < B ? cv->num - n0 : B;
    const nr_gemm_layout lo = {P, P, cv->out_ch * P};
    const float *od = out_diff + n0 * cv->out_ch * P;
    if (panels) {
      if (b != B) nr__gemm_panels(Kg, b * P, &pl);
      if (!panels_chunk(cv, im, n0, &pl, ws))
        return nr_err_set(err, NR_ERR_NOMEM, "out of memory for the column tables");
      tls_cols_id = b == cv->num ? cv->id : 0;
      tls_cols_im = im;
      tls_cols_num = cv->num;
      tls_cols_nr = pl.nr;
      for (int64_t g = 0; g < G; g++)
        if (!nr__gemm_paneled(false, true, Mg, Kg, b * P, 1.0f, od + g * Mg * P, &lo,
                              ws + g * Kg * pl.npad, &pl, 1.0f, w_diff + g * Mg * Kg, NULL))
          return nr_err_set(err, NR_ERR_NOMEM, "out of memory for the GEMM's packing buffer");
      continue;
    }
    float *col = ws, *obuf = ws + cv->in_ch * cv->kdim * b * P;
    /* a plain column matrix the forward left over exactly these images */
    const bool kept = b == cv->num && tls_cols_id == cv->id && tls_cols_im == im &&
                      tls_cols_num == cv->num && tls_cols_nr == 0;
    if (!kept) {
      im2col_chunk(cv, im, n0, b, col);
      tls_cols_id = b == cv->num ? cv->id : 0;
      tls_cols_im = im;
      tls_cols_num = cv->num;
      tls_cols_nr = 0;
    }
    bool direct = true;
    for (int64_t g = 0; g < G && direct; g++)
      direct = nr__gemm_strided(false, true, Mg, Kg, b * P, 1.0f, od + g * Mg * P, &lo,
                                col + g * Kg * b * P, NULL, 1.0f, w_diff + g * Mg * Kg, NULL);
    if (direct) continue;
    gather_chunk(cv, out_diff, n0, b, obuf);
    for (int64_t g = 0; g < G; g++)
      nr_gemm(false, true, Mg, Kg, b * P, 1.0f, obuf + g * Mg * b * P, col + g * Kg * b * P, 1.0f,
              w_diff + g * Mg * Kg);
  }
  return NR_OK;
}

/* The weight gradient in image chunks: im2col.h. */
#define NR_CONV_WGRAD_COLS 1024 /* columns (images x pixels) per chunk, at least */

int64_t nr__conv_wgrad_chunks(const nr_conv *cv) {
  if (nr__winograd_applies(cv) || use_direct_1x1(cv)) return 1;
  int64_t c = cv->num * cv->col_dim / NR_CONV_WGRAD_COLS;
  if (c > NR_CONV_WGRAD_MAX_CHUNKS) c = NR_CONV_WGRAD_MAX_CHUNKS;
  if (c > cv->num) c = cv->num;
  /* An even count: the first half of the chunks then holds half the images (to one), so
   * two threads, each taking its half (parallel.h), get the same work. CaffeNet's conv2
   * at batch 10 in 7 chunks of 1 or 2 images gave them 4 and 6. */
  if (c > 2) c &= ~(int64_t)1;
  return c < 1 ? 1 : c;
}

nr_status nr__conv_weight_grad_chunk(const nr_conv *cv, const float *im, const float *out_diff,
                                     int64_t c, float *part, nr_error *err) {
  const int64_t chunks = nr__conv_wgrad_chunks(cv);
  const int64_t n0 = cv->num * c / chunks, n1 = cv->num * (c + 1) / chunks;
  nr_conv k = *cv;
  k.num = n1 - n0;
  memset(part, 0, (size_t)nr__conv_weight_count(cv) * sizeof *part);
  return weight_grad_images(&k, im + n0 * k.in_ch * k.im_dim,
                            out_diff + n0 * k.out_ch * k.col_dim, part, err);
}

typedef struct wgrad_job {
  const nr_conv *cv;
  const float *im, *out_diff;
  float *parts; /* chunk p's gradient at parts + p·count */
} wgrad_job;

static bool wgrad_part(void *ctx, int p, int parts) {
  (void)parts;
  const wgrad_job *j = ctx;
  nr_error e;
  return nr__conv_weight_grad_chunk(j->cv, j->im, j->out_diff, p,
                                    j->parts + p * nr__conv_weight_count(j->cv), &e) == NR_OK;
}

typedef struct wgrad_sum_job {
  const nr_conv *cv;
  const float *parts;
  float *w_diff;
} wgrad_sum_job;

/* w_diff[i] += (part_0[i] + part_1[i] + ...), in chunk order. */
static void wgrad_sum(void *ctx, int64_t i0, int64_t i1) {
  const wgrad_sum_job *j = ctx;
  const int64_t parts = nr__conv_wgrad_chunks(j->cv), count = nr__conv_weight_count(j->cv);
  for (int64_t i = i0; i < i1; i++) {
    float s = j->parts[i];
    for (int64_t p = 1; p < parts; p++) s += j->parts[p * count + i];
    j->w_diff[i] += s;
  }
}

void nr__conv_weight_grad_add(const nr_conv *cv, const float *parts, float *w_diff) {
  wgrad_sum_job j = {cv, parts, w_diff};
  nr__parallel_for(nr__conv_weight_count(cv), 16384, wgrad_sum, &j);
}

nr_status nr__conv_weight_grad(const nr_conv *cv, const float *im, const float *out_diff,
                               float *w_diff, nr_error *err) {
  if (nr__winograd_applies(cv)) return nr__winograd_weight_grad(cv, im, out_diff, w_diff, err);
  const int64_t parts = nr__conv_wgrad_chunks(cv);
  if (parts < 2) return weight_grad_images(cv, im, out_diff, w_diff, err);
  const int64_t count = nr__conv_weight_count(cv);
  if (parts * count > tls_wpart_cap) {
    float *b = realloc(tls_wpart, (size_t)(parts * count) * sizeof *b);
    if (!b)
      return nr_err_set(err, NR_ERR_NOMEM,
                        "out of memory for the weight gradient's %lld chunk products",
                        (long long)parts);
    tls_wpart = b;
    tls_wpart_cap = parts * count;
  }
  wgrad_job j = {cv, im, out_diff, tls_wpart};
  if (!nr__parallel_run(wgrad_part, &j, (int)parts))
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory for a convolution workspace");
  nr__conv_weight_grad_add(cv, tls_wpart, w_diff);
  return NR_OK;
}

typedef struct bias_job {
  int64_t num, ch, sp;
  const float *in;
  float *out;
} bias_job;

/* Planes [p0, p1) (plane = n·ch + c) of data += bias. */
static void bias_add_range(void *ctx, int64_t p0, int64_t p1) {
  const bias_job *j = ctx;
  for (int64_t p = p0; p < p1; p++) {
    float *d = j->out + p * j->sp;
    const float b = j->in[p % j->ch];
    int64_t s = 0;
#ifdef __SSE2__
    const __m128 vb = _mm_set1_ps(b);
    for (; s + 4 <= j->sp; s += 4) _mm_storeu_ps(d + s, _mm_add_ps(_mm_loadu_ps(d + s), vb));
#endif
    for (; s < j->sp; s++) d[s] += b;
  }
}

void nr__conv_bias_add(int64_t num, int64_t ch, int64_t sp, const float *bias, float *data) {
  bias_job j = {num, ch, sp, bias, data};
  nr__parallel_for(num * ch, 256, bias_add_range, &j);
}

/* Channels [c0, c1) of the bias gradient. Eight running sums per plane (combined in a
 * fixed order), not one: a single chain of dependent adds ran at one add per 4 cycles
 * (about 1 ms per iteration for LeNet's conv1); eight vectorize and are no less accurate.
 * Each channel adds its planes in image order, whatever the threads. */
static void bias_grad_range(void *ctx, int64_t c0, int64_t c1) {
  const bias_job *j = ctx;
  for (int64_t c = c0; c < c1; c++)
    for (int64_t n = 0; n < j->num; n++) {
      const float *d = j->in + (n * j->ch + c) * j->sp;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t k = 0;
      for (; k + 8 <= j->sp; k += 8)
        for (int i = 0; i < 8; i++) acc[i] += d[k + i];
      for (int i = 0; k < j->sp; k++, i++) acc[i] += d[k];
      j->out[c] +=
          ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    }
}

void nr__conv_bias_grad(int64_t num, int64_t ch, int64_t sp, const float *diff,
                        float *bias_diff) {
  bias_job j = {num, ch, sp, diff, bias_diff};
  nr__parallel_for(ch, num * sp >= 16384 ? 1 : ch, bias_grad_range, &j);
}
