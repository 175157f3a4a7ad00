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

static nr_status read_jpeg(FILE *f, const char *path, bool color, uint8_t **pix, int *h,
                           int *w, nr_error *err) {
  struct jpeg_decompress_struct d;
  jerr e;
  uint8_t *volatile out = NULL;
  d.err = jpeg_std_error(&e.mgr);
  e.mgr.error_exit = jpeg_fail;
  e.mgr.emit_message = jpeg_quiet;
  e.msg[0] = '\0';
  if (setjmp(e.jump)) {
    jpeg_destroy_decompress(&d);
    free(out);
    return nr_err_set(err, NR_ERR_INPUT, "image '%s' is not a readable JPEG: %s", path, e.msg);
  }
  jpeg_create_decompress(&d);
  jpeg_stdio_src(&d, f);
  jpeg_read_header(&d, TRUE);
  if (d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&d);
    return nr_err_set(err, NR_ERR_INPUT, "image '%s' is a CMYK JPEG, which is not supported",
                      path);
  }
  d.out_color_space = color ? JCS_EXT_BGR : JCS_GRAYSCALE;
  jpeg_start_decompress(&d);
  const int64_t n = (int64_t)d.output_width * d.output_height;
  if (n <= 0 || n > NR_IMAGE_MAX_PIXELS) {
    jpeg_destroy_decompress(&d);
    return nr_err_set(err, NR_ERR_INPUT, "image '%s' is %ux%u pixels: too big", path,
                      d.output_width, d.output_height);
  }
  const size_t row = (size_t)d.output_width * (size_t)d.output_components;
  out = malloc(row * d.output_height);
  if (!out) {
    jpeg_destroy_decompress(&d);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory for image '%s'", path);
  }
  while (d.output_scanline < d.output_height) {
    JSAMPROW r = out + row * d.output_scanline;
    jpeg_read_scanlines(&d, &r, 1);
  }
  jpeg_finish_decompress(&d);
  *h = (int)d.output_height;
  *w = (int)d.output_width;
  jpeg_destroy_decompress(&d);
  *pix = out;
  return NR_OK;
}

/* ---- PNG (libpng's simplified API) ---- */

static nr_status read_png(FILE *f, const char *path, bool color, uint8_t **pix, int *h,
                          int *w, nr_error *err) {
  png_image im;
  memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_stdio(&im, f))
    return nr_err_set(err, NR_ERR_INPUT, "image '%s' is not a readable PNG: %s", path,
                      im.message);
  if ((int64_t)im.width * im.height > NR_IMAGE_MAX_PIXELS) {
    png_image_free(&im);
    return nr_err_set(err, NR_ERR_INPUT, "image '%s' is %ux%u pixels: too big", path,
                      im.width, im.height);
  }
  /* with alpha, then dropped: imread's IMREAD_COLOR strips the alpha, it does not compose */
  im.format = color ? PNG_FORMAT_BGRA : PNG_FORMAT_GA;
  const int cin = color ? 4 : 2, cout = color ? 3 : 1;
  uint8_t *out = malloc(PNG_IMAGE_SIZE(im));
  if (!out) {
    png_image_free(&im);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory for image '%s'", path);
  }
  if (!png_image_finish_read(&im, NULL, out, 0, NULL)) {
    free(out);
    nr_status s = nr_err_set(err, NR_ERR_INPUT, "image '%s' is not a readable PNG: %s", path,
                             im.message);
    png_image_free(&im);
    return s;
  }
  const size_t n = (size_t)im.width * im.height;
  for (size_t i = 0; i < n; i++) memmove(out + i * cout, out + i * cin, (size_t)cout);
  *h = (int)im.height;
  *w = (int)im.width;
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

void nr_image_resize(const uint8_t *src, int h, int w, int c, uint8_t *dst, int nh, int nw) {
  if (nh == h && nw == w) {
    memcpy(dst, src, (size_t)h * w * c);
    return;
  }
  int *xi = malloc(sizeof(int) * (size_t)nw), *yi = malloc(sizeof(int) * (size_t)nh);
  short *xw = malloc(2 * sizeof(short) * (size_t)nw), *yw = malloc(2 * sizeof(short) * (size_t)nh);
  int *r0 = malloc(sizeof(int) * (size_t)nw * c), *r1 = malloc(sizeof(int) * (size_t)nw * c);
  if (!xi || !yi || !xw || !yw || !r0 || !r1) {
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
  for (int y = 0; y < nh; y++) {
    /* horizontal pass of the two source rows (values x 2048) */
    const int sy[2] = {yi[y] < 0 ? 0 : yi[y] > h - 1 ? h - 1 : yi[y],
                       yi[y] + 1 < 0 ? 0 : yi[y] + 1 > h - 1 ? h - 1 : yi[y] + 1};
    int *rows[2] = {r0, r1};
    for (int t = 0; t < 2; t++) {
      const uint8_t *s = src + (size_t)sy[t] * w * c;
      int *r = rows[t];
      for (int x = 0; x < nw; x++) {
        const int a = xw[2 * x], b = xw[2 * x + 1], sx = xi[x];
        const int sx1 = sx + 1 < w ? sx + 1 : sx;
        for (int k = 0; k < c; k++) r[x * c + k] = s[sx * c + k] * a + s[sx1 * c + k] * b;
      }
    }
    /* vertical pass with OpenCV's own rounding (VResizeLinear for uchar): each row's
     * product truncated to 16 bits of precision before the sum is rounded */
    const int a = yw[2 * y], b = yw[2 * y + 1];
    uint8_t *d = dst + (size_t)y * nw * c;
    for (int i = 0; i < nw * c; i++) {
      const int v = (((a * (r0[i] >> 4)) >> 16) + ((b * (r1[i] >> 4)) >> 16) + 2) >> 2;
      d[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  }
out:
  free(xi), free(yi), free(xw), free(yw), free(r0), free(r1);
}
