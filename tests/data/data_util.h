/* data_util.h: fixtures of the data-layer tests: a scratch directory per test process,
 * tiny IDX files written with zlib, PNG images written with libpng, and one standalone
 * layer built from the body of a prototxt `layer { }` (tops only: data layers have no
 * bottoms). */
#ifndef DATA_UTIL_H
#define DATA_UTIL_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <png.h>
#include <zlib.h>

#include "blob.h"
#include "layer.h"
#include "nr_test.h"
#include "rng.h"
#include "textformat.h"

static char du_dir[256];

/* Creates the scratch directory (once); removed by du_cleanup. */
static inline const char *du_tmpdir(void) {
  if (!du_dir[0]) {
    snprintf(du_dir, sizeof du_dir, "/tmp/nr_data_test_XXXXXX");
    if (!mkdtemp(du_dir)) {
      perror("mkdtemp");
      exit(100);
    }
  }
  return du_dir;
}

static inline void du_cleanup(void) {
  if (!du_dir[0]) return;
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", du_dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", du_dir);
}

/* A path inside the scratch directory (static buffer rotation: up to 8 live at once). */
static inline const char *du_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline const char *du_path(const char *fmt, ...) {
  static char bufs[8][512];
  static int next;
  char *b = bufs[next++ % 8];
  int o = snprintf(b, 512, "%s/", du_tmpdir());
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b + o, 512 - (size_t)o, fmt, ap);
  va_end(ap);
  return b;
}

/* Writes an IDX file: magic bytes 0 0 0x08 ndims, big-endian dims, then the bytes. */
static inline int du_write_idx(const char *path, int gzip, int ndims, const uint32_t *dims,
                               const uint8_t *data) {
  uint8_t hdr[4 + 4 * 8] = {0, 0, 0x08, (uint8_t)ndims};
  size_t n = 1;
  for (int i = 0; i < ndims; i++) {
    hdr[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
    hdr[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
    hdr[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
    hdr[7 + 4 * i] = (uint8_t)dims[i];
    n *= dims[i];
  }
  const size_t hl = 4 + 4 * (size_t)ndims;
  if (gzip) {
    gzFile f = gzopen(path, "wb");
    if (!f) return -1;
    int ok = gzwrite(f, hdr, (unsigned)hl) == (int)hl &&
             (n == 0 || gzwrite(f, data, (unsigned)n) == (int)n);
    return gzclose(f) == Z_OK && ok ? 0 : -1;
  }
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int ok = fwrite(hdr, 1, hl, f) == hl && fwrite(data, 1, n, f) == n;
  return fclose(f) == 0 && ok ? 0 : -1;
}

/* The pixel of item i at (r, c) in the test data set (distinct across a small set). */
static inline uint8_t du_pixel(int i, int r, int c, int cols) {
  return (uint8_t)((i * 23 + r * cols + c) % 251);
}

/* Writes images (n x rows x cols, du_pixel) and labels (i % 10) as IDX files. */
static inline int du_write_mnist(const char *images, const char *labels, int gzip, uint32_t n,
                                 uint32_t rows, uint32_t cols) {
  uint8_t *px = malloc((size_t)n * rows * cols + 1), *lb = malloc(n + 1);
  for (uint32_t i = 0; i < n; i++) {
    lb[i] = (uint8_t)(i % 10);
    for (uint32_t r = 0; r < rows; r++)
      for (uint32_t c = 0; c < cols; c++)
        px[((size_t)i * rows + r) * cols + c] = du_pixel((int)i, (int)r, (int)c, (int)cols);
  }
  const uint32_t idims[3] = {n, rows, cols}, ldims[1] = {n};
  int rc = du_write_idx(images, gzip, 3, idims, px) | du_write_idx(labels, gzip, 1, ldims, lb);
  free(px);
  free(lb);
  return rc;
}

/* Writes a w x h PNG (libpng's simplified API; format PNG_FORMAT_RGB, _GRAY, _RGBA, ...,
 * rows top to bottom). 0 on success. */
static inline int du_write_png(const char *path, int w, int h, int format, const void *pix) {
  png_image im;
  memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  im.width = (png_uint_32)w;
  im.height = (png_uint_32)h;
  im.format = (png_uint_32)format;
  return png_image_write_to_file(&im, path, 0, pix, 0, NULL) ? 0 : -1;
}

/* Writes text (printf-style) to path. 0 on success. */
static inline int du_write_text(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline int du_write_text(const char *path, const char *fmt, ...) {
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  return fclose(f) == 0 ? 0 : -1;
}

typedef struct du_layer {
  Caffe__LayerParameter *param;
  nr_rng rng;
  nr_layer_ctx ctx;
  nr_blob *top[4];
  int nt;
  nr_layer *l;
  nr_error err;
} du_layer;

static inline void du_free(du_layer *f) {
  if (!f) return;
  nr_layer_destroy(f->l);
  for (int i = 0; i < 4; i++) nr_blob_destroy(f->top[i]);
  nr_text_free((ProtobufCMessage *)f->param);
  free(f);
}

/* A layer from prototxt text (printf-style), with nt tops named after param->top, seed and
 * phase; created, not set up. NULL (message on stderr) when the text does not parse. */
static inline du_layer *du_make(int nt, uint64_t seed, int phase, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline du_layer *du_make(int nt, uint64_t seed, int phase, const char *fmt, ...) {
  char text[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  du_layer *f = calloc(1, sizeof *f);
  ProtobufCMessage *m = NULL;
  if (nr_text_parse(text, strlen(text), "<test>", &caffe__layer_parameter__descriptor, &m,
                    &f->err) != NR_OK)
    goto fail;
  f->param = (Caffe__LayerParameter *)m;
  nr_rng_seed(&f->rng, seed);
  f->ctx.rng = &f->rng;
  f->nt = nt;
  for (int i = 0; i < nt; i++)
    if (nr_blob_create(i < (int)f->param->n_top ? f->param->top[i] : "top", NULL, &f->top[i],
                       &f->err) != NR_OK)
      goto fail;
  if (nr_layer_create(f->param, &f->ctx, NULL, 0, f->top, nt, &f->l, &f->err) != NR_OK)
    goto fail;
  f->l->phase = phase;
  return f;
fail:
  fprintf(stderr, "du_make: %s\n", f->err.msg);
  du_free(f);
  return NULL;
}

/* Sets up f and runs `good` forwards that must succeed; then the next forward (or, with
 * good < 0, the setup itself) must fail with a message holding want. Frees f. */
static inline void du_expect_fail(du_layer *f, int good, const char *want) {
  CHECK(f != NULL);
  nr_status s = nr_layer_setup(f->l, &f->err);
  if (good >= 0) {
    CHECK_OK(s, &f->err);
    for (int i = 0; i < good; i++) CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
    s = f->l->type->forward(f->l, &f->err);
  }
  CHECK(s != NR_OK);
  CHECK_CONTAINS(f->err.msg, want);
  du_free(f);
}

#endif
