/* idx.c: IDX reader (plain or gzip, through zlib) and Caffe's convert_mnist_data. */
#include "idx.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "caffe.pb-c.h"
#include "db_lmdb.h"

#define NR_IDX_UBYTE 0x08
#define NR_IDX_IMAGES 2051
#define NR_IDX_LABELS 2049

/* Reads exactly n bytes; returns the number read (short at end of file), -1 on error. */
static long long read_full(gzFile f, void *buf, uint64_t n) {
  uint64_t got = 0;
  while (got < n) {
    uint64_t want = n - got;
    if (want > (1u << 30)) want = 1u << 30;
    int r = gzread(f, (char *)buf + got, (unsigned)want);
    if (r < 0) return -1;
    if (r == 0) break;
    got += (uint64_t)r;
  }
  return (long long)got;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

nr_status nr_idx_read(const char *path, nr_idx **out, nr_error *err) {
  nr_status s = NR_OK;
  nr_idx *idx = NULL;
  errno = 0;
  gzFile f = gzopen(path, "rb");
  if (!f)
    return nr_err_set(err, errno ? NR_ERR_IO : NR_ERR_NOMEM, "cannot open '%s': %s", path,
                      errno ? strerror(errno) : "out of memory");
  idx = calloc(1, sizeof *idx);
  if (!idx) {
    s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    goto fail;
  }
  uint8_t hdr[4 + 4 * NR_IDX_MAX_DIMS];
  long long r = read_full(f, hdr, 4);
  if (r < 0) goto fail_read;
  if (r < 4 || hdr[0] != 0 || hdr[1] != 0) {
    s = nr_err_set(err, NR_ERR_INPUT, "'%s' is not an IDX file (it does not start with two "
                   "zero bytes and a type)", path);
    goto fail;
  }
  if (hdr[2] != NR_IDX_UBYTE) {
    s = nr_err_set(err, NR_ERR_INPUT, "'%s': IDX value type 0x%02x is not supported "
                   "(only unsigned byte, 0x08)", path, hdr[2]);
    goto fail;
  }
  idx->magic = be32(hdr);
  idx->ndims = hdr[3];
  if (idx->ndims < 1 || idx->ndims > NR_IDX_MAX_DIMS) {
    s = nr_err_set(err, NR_ERR_INPUT, "'%s': IDX header has %d dimensions (1 to %d expected)",
                   path, idx->ndims, NR_IDX_MAX_DIMS);
    goto fail;
  }
  r = read_full(f, hdr + 4, 4 * (uint64_t)idx->ndims);
  if (r < 0) goto fail_read;
  if (r < 4 * idx->ndims) {
    s = nr_err_set(err, NR_ERR_INPUT, "'%s': truncated IDX header", path);
    goto fail;
  }
  idx->count = 1;
  for (int i = 0; i < idx->ndims; i++) {
    idx->dims[i] = be32(hdr + 4 + 4 * i);
    idx->count *= idx->dims[i];
    if (idx->count > ((uint64_t)1 << 36)) {
      s = nr_err_set(err, NR_ERR_INPUT, "'%s': IDX dimensions are absurdly large", path);
      goto fail;
    }
  }
  idx->data = malloc(idx->count ? idx->count : 1);
  if (!idx->data) {
    s = nr_err_set(err, NR_ERR_NOMEM, "'%s': out of memory for %llu bytes", path,
                   (unsigned long long)idx->count);
    goto fail;
  }
  r = read_full(f, idx->data, idx->count);
  if (r < 0) goto fail_read;
  if ((uint64_t)r < idx->count) {
    s = nr_err_set(err, NR_ERR_INPUT, "'%s': truncated: %lld of %llu values", path, r,
                   (unsigned long long)idx->count);
    goto fail;
  }
  gzclose(f);
  *out = idx;
  return NR_OK;
fail_read:;
  int zerr = 0;
  const char *msg = gzerror(f, &zerr);
  s = nr_err_set(err, zerr == Z_ERRNO ? NR_ERR_IO : NR_ERR_INPUT, "cannot read '%s': %s", path,
                 zerr == Z_ERRNO ? strerror(errno) : msg);
fail:
  gzclose(f);
  nr_idx_free(idx);
  return s;
}

void nr_idx_free(nr_idx *idx) {
  if (!idx) return;
  free(idx->data);
  free(idx);
}

/* Removes a database directory this conversion created (data.mdb, lock.mdb, the dir). */
nr_status nr_convert_mnist(const char *images, const char *labels, const char *db_path,
                           FILE *log, nr_error *err) {
  nr_status s;
  nr_idx *im = NULL, *lb = NULL;
  nr_lmdb_writer *w = NULL;
  uint8_t *buf = NULL;
  bool created = false;
  if ((s = nr_idx_read(images, &im, err)) != NR_OK) goto fail;
  if ((s = nr_idx_read(labels, &lb, err)) != NR_OK) goto fail;
  if (im->magic != NR_IDX_IMAGES || im->ndims != 3) {
    s = nr_err_set(err, NR_ERR_INPUT, "'%s': magic number %u, expected %d (an image file: "
                   "unsigned bytes, 3 dimensions)", images, im->magic, NR_IDX_IMAGES);
    goto fail;
  }
  if (lb->magic != NR_IDX_LABELS || lb->ndims != 1) {
    s = nr_err_set(err, NR_ERR_INPUT, "'%s': magic number %u, expected %d (a label file: "
                   "unsigned bytes, 1 dimension)", labels, lb->magic, NR_IDX_LABELS);
    goto fail;
  }
  const uint32_t n = im->dims[0], rows = im->dims[1], cols = im->dims[2];
  if (lb->dims[0] != n) {
    s = nr_err_set(err, NR_ERR_INPUT, "'%s' has %u images but '%s' has %u labels", images, n,
                   labels, lb->dims[0]);
    goto fail;
  }
  if (rows == 0 || cols == 0 || rows > INT32_MAX / cols) {
    s = nr_err_set(err, NR_ERR_INPUT, "'%s': bad image size %ux%u", images, rows, cols);
    goto fail;
  }
  if ((s = nr_lmdb_writer_create(db_path, &w, err)) != NR_OK) goto fail;
  created = true;
  if (log) {
    fprintf(log, "A total of %u items.\n", n);
    fprintf(log, "Rows: %u Cols: %u\n", rows, cols);
  }
  const size_t pixels = (size_t)rows * cols;
  Caffe__Datum d = CAFFE__DATUM__INIT;
  d.has_channels = d.has_height = d.has_width = d.has_data = d.has_label = 1;
  d.channels = 1;
  d.height = (int32_t)rows;
  d.width = (int32_t)cols;
  d.data.len = pixels;
  buf = malloc(pixels + 64);
  if (!buf) {
    s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    goto fail;
  }
  for (uint32_t i = 0; i < n; i++) {
    d.data.data = im->data + (size_t)i * pixels;
    d.label = lb->data[i];
    size_t len = caffe__datum__get_packed_size(&d);
    if (len > pixels + 64) {
      s = nr_err_set(err, NR_ERR_INTERNAL, "Datum larger than expected (%zu bytes)", len);
      goto fail;
    }
    caffe__datum__pack(&d, buf);
    char key[32];
    int klen = snprintf(key, sizeof key, "%08u", i);
    if ((s = nr_lmdb_writer_put(w, key, (size_t)klen, buf, len, err)) != NR_OK) goto fail;
    if (log && (i + 1) % 10000 == 0) fprintf(log, "Processed %u files.\n", i + 1);
  }
  if ((s = nr_lmdb_writer_commit(w, err)) != NR_OK) goto fail;
  if (log && n % 10000 != 0) fprintf(log, "Processed %u files.\n", n);
  nr_lmdb_writer_close(w);
  free(buf);
  nr_idx_free(im);
  nr_idx_free(lb);
  return NR_OK;
fail:
  nr_lmdb_writer_close(w);
  if (created) nr_lmdb_remove(db_path);
  free(buf);
  nr_idx_free(im);
  nr_idx_free(lb);
  return s;
}
