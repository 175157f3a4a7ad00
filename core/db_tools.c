/* db_tools.c: convert_cifar_data and compute_image_mean (see db_tools.h). */
#include "db_tools.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "binary.h"
#include "caffe.pb-c.h"
#include "db_lmdb.h"

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_BATCH 10000

/* Appends the records of one CIFAR batch file to w, keys from first_key on. */
static nr_status cifar_batch(const char *path, nr_lmdb_writer *w, int first_key, int *n,
                             nr_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return nr_err_set(err, NR_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  uint8_t rec[1 + CIFAR_PIXELS], buf[CIFAR_PIXELS + 64];
  Caffe__Datum d = CAFFE__DATUM__INIT;
  d.has_channels = d.has_height = d.has_width = d.has_data = d.has_label = 1;
  d.channels = 3;
  d.height = d.width = CIFAR_SIDE;
  d.data.len = CIFAR_PIXELS;
  d.data.data = rec + 1;
  nr_status s = NR_OK;
  size_t got;
  *n = 0;
  while ((got = fread(rec, 1, sizeof rec, f)) == sizeof rec) {
    if (*n == CIFAR_BATCH) {
      s = nr_err_set(err, NR_ERR_INPUT, "'%s' holds more than %d records", path, CIFAR_BATCH);
      break;
    }
    d.label = rec[0];
    caffe__datum__pack(&d, buf);
    char key[16];
    int klen = snprintf(key, sizeof key, "%05d", first_key + *n);
    if ((s = nr_lmdb_writer_put(w, key, (size_t)klen, buf, caffe__datum__get_packed_size(&d),
                                err)) != NR_OK)
      break;
    ++*n;
  }
  if (s == NR_OK && ferror(f))
    s = nr_err_set(err, NR_ERR_IO, "reading '%s': %s", path, strerror(errno));
  else if (s == NR_OK && got != 0)
    s = nr_err_set(err, NR_ERR_INPUT, "'%s' is truncated: record %d has %zu of %d bytes", path,
                   *n, got, 1 + CIFAR_PIXELS);
  else if (s == NR_OK && *n == 0)
    s = nr_err_set(err, NR_ERR_INPUT, "'%s' holds no record", path);
  fclose(f);
  return s;
}

/* One LMDB from the given batch files (names relative to in_dir). */
static nr_status cifar_db(const char *in_dir, const char *const *files, int nfiles,
                          const char *db, FILE *log, nr_error *err) {
  nr_lmdb_writer *w = NULL;
  NR_TRY(nr_lmdb_writer_create(db, &w, err));
  nr_status s = NR_OK;
  for (int i = 0; i < nfiles && s == NR_OK; i++) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", in_dir, files[i]);
    if (log && nfiles > 1) fprintf(log, "Training Batch %d\n", i + 1);
    int n = 0;
    s = cifar_batch(path, w, i * CIFAR_BATCH, &n, err);
  }
  if (s == NR_OK) s = nr_lmdb_writer_commit(w, err);
  nr_lmdb_writer_close(w);
  if (s != NR_OK) nr_lmdb_remove(db);
  return s;
}

nr_status nr_convert_cifar(const char *in_dir, const char *out_dir, FILE *log, nr_error *err) {
  static const char *const train[] = {"data_batch_1.bin", "data_batch_2.bin",
                                      "data_batch_3.bin", "data_batch_4.bin",
                                      "data_batch_5.bin"};
  static const char *const test[] = {"test_batch.bin"};
  /* Every batch is there before anything is written; OUT_DIR is made if it is missing. */
  for (int i = 0; i < 6; i++) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", in_dir, i < 5 ? train[i] : test[0]);
    if (access(path, R_OK) != 0)
      return nr_err_set(err, NR_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  }
  if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
    return nr_err_set(err, NR_ERR_IO, "cannot create '%s': %s", out_dir, strerror(errno));
  char train_db[PATH_MAX], test_db[PATH_MAX];
  snprintf(train_db, sizeof train_db, "%s/cifar10_train_lmdb", out_dir);
  snprintf(test_db, sizeof test_db, "%s/cifar10_test_lmdb", out_dir);
  if (log) fprintf(log, "Writing Training data\n");
  NR_TRY(cifar_db(in_dir, train, 5, train_db, log, err));
  if (log) fprintf(log, "Writing Testing data\n");
  nr_status s = cifar_db(in_dir, test, 1, test_db, log, err);
  if (s != NR_OK) nr_lmdb_remove(train_db);
  return s;
}

nr_status nr_compute_image_mean(const char *db_path, const char *out_path, FILE *log,
                                nr_error *err) {
  nr_lmdb_reader *r = NULL;
  NR_TRY(nr_lmdb_reader_open(db_path, &r, err));
  nr_status s = NR_OK;
  double *sum = NULL;
  float *mean = NULL;
  size_t size = 0;
  int64_t count = 0;
  int channels = 0, height = 0, width = 0;
  if (log) fprintf(log, "Starting iteration\n");
  for (bool wrapped = false; !wrapped && s == NR_OK;) {
    const void *key, *val;
    size_t klen, vlen;
    nr_lmdb_reader_get(r, &key, &klen, &val, &vlen);
    Caffe__Datum *d = caffe__datum__unpack(NULL, vlen, val);
    if (!d) {
      s = nr_err_set(err, NR_ERR_INPUT, "LMDB '%s': record '%.*s' is not a Datum", db_path,
                     (int)(klen > 64 ? 64 : klen), (const char *)key);
      break;
    }
    size_t n = d->data.len > d->n_float_data ? d->data.len : d->n_float_data;
    if (d->encoded) {
      s = nr_err_set(err, NR_ERR_INPUT, "LMDB '%s': record '%.*s' is an encoded image; "
                     "compute-image-mean reads raw Datums", db_path,
                     (int)(klen > 64 ? 64 : klen), (const char *)key);
    } else if (count == 0) {
      size = n;
      channels = d->channels, height = d->height, width = d->width;
      if (size == 0 || (int64_t)channels * height * width != (int64_t)size)
        s = nr_err_set(err, NR_ERR_INPUT, "LMDB '%s': the first Datum is %dx%dx%d but holds "
                       "%zu values", db_path, channels, height, width, size);
      else if (!(sum = calloc(size, sizeof *sum)))
        s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    } else if (n != size) {
      s = nr_err_set(err, NR_ERR_INPUT, "LMDB '%s': Incorrect data field size %zu in record "
                     "'%.*s' (the first has %zu)", db_path, n, (int)(klen > 64 ? 64 : klen),
                     (const char *)key, size);
    }
    if (s == NR_OK) {
      if (d->data.len)
        for (size_t i = 0; i < size; i++) sum[i] += d->data.data[i];
      else
        for (size_t i = 0; i < size; i++) sum[i] += d->float_data[i];
      if (++count % 10000 == 0 && log) fprintf(log, "Processed %lld files.\n", (long long)count);
    }
    caffe__datum__free_unpacked(d, NULL);
    if (s == NR_OK) s = nr_lmdb_reader_next(r, &wrapped, err);
  }
  nr_lmdb_reader_close(r);
  if (s == NR_OK && log && count % 10000 != 0)
    fprintf(log, "Processed %lld files.\n", (long long)count);
  if (s == NR_OK && !(mean = malloc(size * sizeof *mean)))
    s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  if (s == NR_OK) {
    for (size_t i = 0; i < size; i++) mean[i] = (float)(sum[i] / (double)count);
    Caffe__BlobProto bp = CAFFE__BLOB_PROTO__INIT;
    bp.has_num = bp.has_channels = bp.has_height = bp.has_width = 1;
    bp.num = 1, bp.channels = channels, bp.height = height, bp.width = width;
    bp.n_data = size;
    bp.data = mean;
    if (out_path) {
      if (log) fprintf(log, "Write to %s\n", out_path);
      s = nr_proto_save_binary(out_path, &bp.base, err);
    }
  }
  if (s == NR_OK && log) {
    size_t dim = size / (size_t)channels;
    fprintf(log, "Number of channels: %d\n", channels);
    for (int c = 0; c < channels; c++) {
      double m = 0;
      for (size_t i = 0; i < dim; i++) m += mean[(size_t)c * dim + i];
      fprintf(log, "mean_value channel [%d]: %g\n", c, m / (double)dim);
    }
  }
  free(sum);
  free(mean);
  return s;
}
