/* image_io.c: see image_io.h. */
#include "image_io.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#define NR_IMAGE_MAX_PIXELS ((int64_t)1 << 28)

/* ---- JPEG ---- */

typedef struct jerr {
  struct jpeg_error_mgr mgr;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
} jerr;

/* libjpeg's default error_exit ends the process: come back here instead. */
static void jpeg_fail(j_common_ptr c) {
  jerr *e = (jerr *)c->err;
  (*c->err->format_message)(c, e->msg);
  longjmp(e->jump, 1);
}

static void jpeg_quiet(j_common_ptr c, int level) { (void)c, (void)level; } /* warnings */

/* One row of Adobe (inverted) CMYK to B,G,R or gray, as OpenCV's icvCvt_CMYK2BGR_8u_C4C3R
 * and icvCvt_CMYK2Gray_8u_C4C1R (gray weights 0.299, 0.587, 0.114 in 14-bit fixed point). */
static void cmyk_row(const uint8_t *cmyk, int w, bool color, uint8_t *out) {
  for (int x = 0; x < w; x++, cmyk += 4) {
    const int k = cmyk[3];
    const int r = k - ((255 - cmyk[0]) * k >> 8), g = k - ((255 - cmyk[1]) * k >> 8),
              b = k - ((255 - cmyk[2]) * k >> 8);
    if (color) {
      out[3 * x] = (uint8_t)b;
      out[3 * x + 1] = (uint8_t)g;
      out[3 * x + 2] = (uint8_t)r;
    } else {
      out[x] = (uint8_t)((b * 1868 + g * 9617 + r * 4899 + (1 << 13)) >> 14);
    }
  }
}

static nr_status read_jpeg(FILE *f, const char *path, bool color, uint8_t **pix, int *h,
                           int *w, nr_error *err) {
  struct jpeg_decompress_struct d;
  jerr e;
  uint8_t *volatile out = NULL, *volatile cmyk = NULL;
  d.err = jpeg_std_error(&e.mgr);
  e.mgr.error_exit = jpeg_fail;
  e.mgr.emit_message = jpeg_quiet;
  e.msg[0] = '\0';
  if (setjmp(e.jump)) {
    jpeg_destroy_decompress(&d);
    free(out);
    free(cmyk);
    return nr_err_set(err, NR_ERR_INPUT, "image '%s' is not a readable JPEG: %s", path, e.msg);
  }
  jpeg_create_decompress(&d);
  jpeg_stdio_src(&d, f);
  jpeg_read_header(&d, TRUE);
  /* CMYK files (a few in ImageNet) are decoded to CMYK and converted as OpenCV does */
  const bool is_cmyk = d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK;
  d.out_color_space = is_cmyk ? JCS_CMYK : color ? JCS_EXT_BGR : JCS_GRAYSCALE;
  jpeg_start_decompress(&d);
  const int64_t n = (int64_t)d.output_width * d.output_height;
  if (n <= 0 || n > NR_IMAGE_MAX_PIXELS) {
    jpeg_destroy_decompress(&d);
    return nr_err_set(err, NR_ERR_INPUT, "image '%s' is %ux%u pixels: too big", path,
                      d.output_width, d.output_height);
  }
  const size_t row = (size_t)d.output_width * (color ? 3 : 1);
  out = malloc(row * d.output_height);
  if (is_cmyk) cmyk = malloc((size_t)d.output_width * 4);
  if (!out || (is_cmyk && !cmyk)) {
    jpeg_destroy_decompress(&d);
    free(out);
    free(cmyk);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory for image '%s'", path);
  }
  while (d.output_scanline < d.output_height) {
    uint8_t *dst = out + row * d.output_scanline;
    JSAMPROW r = is_cmyk ? cmyk : dst;
    jpeg_read_scanlines(&d, &r, 1);
    if (is_cmyk) cmyk_row(cmyk, (int)d.output_width, color, dst);
  }
  jpeg_finish_decompress(&d);
  *h = (int)d.output_height;
  *w = (int)d.output_width;
  jpeg_destroy_decompress(&d);
  free(cmyk);
  *pix = out;
  return NR_OK;
}

/* ---- PNG (libpng's classic API, with OpenCV's transforms) ---- */

typedef struct perr {
  char msg[256];
} perr;

/* libpng's default error handler prints to stderr: keep the message, then jump back. */
static void png_fail(png_structp png, png_const_charp msg) {
  perr *e = png_get_error_ptr(png);
  snprintf(e->msg, sizeof e->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void png_quiet(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

/* The transforms are OpenCV's PngDecoder::readData for an 8-bit 3- or 1-channel image (what
 * imread gives ImageData): 16-bit samples keep their high byte (png_set_strip_16), alpha and
 * tRNS are stripped, palettes and 1/2/4-bit gray expanded, color reordered to B, G, R, gray
 * replicated to three channels, and a color file read as gray converted by libpng with
 * OpenCV's weights 0.299 R + 0.587 G + 0.114 B. No gamma correction (gAMA is ignored). */
static nr_status read_png(FILE *f, const char *path, bool color, uint8_t **pix, int *h,
                          int *w, nr_error *err) {
  perr e = {{0}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &e, png_fail, png_quiet);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  uint8_t *volatile out = NULL;
  png_bytep *volatile rows = NULL;
  if (!info) {
    png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory for image '%s'", path);
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(out);
    free(rows);
    return nr_err_set(err, NR_ERR_INPUT, "image '%s' is not a readable PNG: %s", path, e.msg);
  }
  png_init_io(png, f);
  png_read_info(png, info);
  const png_uint_32 pw = png_get_image_width(png, info), ph = png_get_image_height(png, info);
  const int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if ((int64_t)pw * ph > NR_IMAGE_MAX_PIXELS) {
    png_destroy_read_struct(&png, &info, NULL);
    return nr_err_set(err, NR_ERR_INPUT, "image '%s' is %ux%u pixels: too big", path,
                      (unsigned)pw, (unsigned)ph);
  }
  if (depth == 16) png_set_strip_16(png);
  png_set_strip_alpha(png);
  if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (!(type & PNG_COLOR_MASK_COLOR) && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if ((type & PNG_COLOR_MASK_COLOR) && color)
    png_set_bgr(png);
  else if (color)
    png_set_gray_to_rgb(png);
  else
    png_set_rgb_to_gray(png, 1, 0.299, 0.587);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const size_t row = png_get_rowbytes(png, info), want = (size_t)pw * (color ? 3 : 1);
  if (row != want) /* a transform this file needs that OpenCV's list lacks */
    png_error(png, "unexpected row size after conversion to 8 bits");
  out = malloc(row * ph);
  rows = malloc(sizeof *rows * ph);
  if (!out || !rows) {
    png_destroy_read_struct(&png, &info, NULL);
    free(out);
    free(rows);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory for image '%s'", path);
  }
  for (png_uint_32 y = 0; y < ph; y++) rows[y] = out + row * y;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  *h = (int)ph;
  *w = (int)pw;
  *pix = out;
  return NR_OK;
}

nr_status nr_image_read(const char *path, bool color, uint8_t **pix, int *h, int *w,
                        nr_error *err) {
  *pix = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return nr_err_set(err, NR_ERR_IO, "cannot open image '%s': %s", path, strerror(errno));
  unsigned char magic[8] = {0};
  size_t n = fread(magic, 1, sizeof magic, f);
  rewind(f);
  nr_status s;
  if (n >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF)
    s = read_jpeg(f, path, color, pix, h, w, err);
  else if (n == 8 && !png_sig_cmp(magic, 0, 8))
    s = read_png(f, path, color, pix, h, w, err);
  else
    s = nr_err_set(err, NR_ERR_INPUT, "image '%s' is neither a JPEG nor a PNG%s", path,
                   n == 0 ? " (the file is empty)" : "");
  fclose(f);
  return s;
}

/* ---- resize ---- */

enum { COEF_BITS = 11, COEF_ONE = 1 << COEF_BITS };

/* For each destination index d of n (source size m): the first source index and the 11-bit
 * weights of it and of the next, computed as OpenCV's resize does (cv::resize, the generic
 * INTER_LINEAR path that Debian's OpenCV takes for 8-bit images): the position in float,
 * each weight rounded on its own (they may not add up to exactly 2048). Past an edge,
 * OpenCV clamps the columns' position and weight (clamp true) but only the rows' index:
 * a row before the first keeps its weights over two copies of row 0 (clamp false, idx may
 * be -1 or m - 1; the caller clamps the rows it reads). */
static void linear_taps(int m, int n, bool clamp, int *idx, short *wt) {
  const double scale = 1.0 / ((double)n / m);
  for (int d = 0; d < n; d++) {
    float f = (float)((d + 0.5) * scale - 0.5);
    int s = (int)floorf(f);
    f -= (float)s;
    if (clamp && s < 0) {
      f = 0;
      s = 0;
    }
    if (clamp && s >= m - 1) {
      f = 0;
      s = m - 1;
    }
    idx[d] = s;
    wt[2 * d] = (short)lrintf((1.0f - f) * COEF_ONE);
    wt[2 * d + 1] = (short)lrintf(f * COEF_ONE);
  }
}

/* Horizontal pass of one source row s into r (nwc values x 2048): flat tables of the two
 * source offsets and weights of every output value (channels included). */
static void hpass(const uint8_t *s, int nwc, const int *o0, const int *o1, const short *w0,
                  const short *w1, int *r) {
  for (int i = 0; i < nwc; i++) r[i] = s[o0[i]] * w0[i] + s[o1[i]] * w1[i];
}

void nr_image_resize(const uint8_t *src, int h, int w, int c, uint8_t *dst, int nh, int nw) {
  if (nh == h && nw == w) {
    memcpy(dst, src, (size_t)h * w * c);
    return;
  }
  const int nwc = nw * c;
  int *xi = malloc(sizeof(int) * (size_t)nw), *yi = malloc(sizeof(int) * (size_t)nh);
  short *xw = malloc(2 * sizeof(short) * (size_t)nw), *yw = malloc(2 * sizeof(short) * (size_t)nh);
  int *o0 = malloc(sizeof(int) * (size_t)nwc), *o1 = malloc(sizeof(int) * (size_t)nwc);
  short *w0 = malloc(sizeof(short) * (size_t)nwc), *w1 = malloc(sizeof(short) * (size_t)nwc);
  int *r0 = malloc(sizeof(int) * (size_t)nwc), *r1 = malloc(sizeof(int) * (size_t)nwc);
  if (!xi || !yi || !xw || !yw || !o0 || !o1 || !w0 || !w1 || !r0 || !r1) {
    /* out of memory: nearest neighbour without tables */
    for (int y = 0; y < nh; y++)
      for (int x = 0; x < nw; x++)
        for (int k = 0; k < c; k++)
          dst[((size_t)y * nw + x) * c + k] =
              src[(((size_t)y * h / nh) * w + (size_t)x * w / nw) * c + k];
    goto out;
  }
  linear_taps(w, nw, true, xi, xw);
  linear_taps(h, nh, false, yi, yw);
  for (int x = 0; x < nw; x++)
    for (int k = 0; k < c; k++) {
      const int i = x * c + k, sx1 = xi[x] + 1 < w ? xi[x] + 1 : xi[x];
      o0[i] = xi[x] * c + k;
      o1[i] = sx1 * c + k;
      w0[i] = xw[2 * x];
      w1[i] = xw[2 * x + 1];
    }
  /* r0, r1 hold the horizontal passes of source rows have0, have1 (-1: none yet); when
   * shrinking or enlarging, consecutive output rows mostly share a source row */
  int have0 = -1, have1 = -1;
  const size_t row = (size_t)w * c;
  for (int y = 0; y < nh; y++) {
    const int sy0 = yi[y] < 0 ? 0 : yi[y] > h - 1 ? h - 1 : yi[y];
    const int sy1 = yi[y] + 1 < 0 ? 0 : yi[y] + 1 > h - 1 ? h - 1 : yi[y] + 1;
    if (sy0 != have0) {
      if (sy0 == have1) { /* the old second row is the new first: swap */
        int *t = r0;
        r0 = r1, r1 = t, have1 = have0;
      } else {
        hpass(src + (size_t)sy0 * row, nwc, o0, o1, w0, w1, r0);
      }
      have0 = sy0;
    }
    if (sy1 != have1) {
      if (sy1 == sy0)
        memcpy(r1, r0, sizeof(int) * (size_t)nwc);
      else
        hpass(src + (size_t)sy1 * row, nwc, o0, o1, w0, w1, r1);
      have1 = sy1;
    }
    /* vertical pass with OpenCV's own rounding (VResizeLinear for uchar): each row's
     * product truncated to 16 bits of precision before the sum is rounded */
    const int a = yw[2 * y], b = yw[2 * y + 1];
    uint8_t *d = dst + (size_t)y * nwc;
    for (int i = 0; i < nwc; i++) {
      const int v = (((a * (r0[i] >> 4)) >> 16) + ((b * (r1[i] >> 4)) >> 16) + 2) >> 2;
      d[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  }
out:
  free(xi), free(yi), free(xw), free(yw), free(o0), free(o1), free(w0), free(w1);
  free(r0), free(r1);
}
