/* Tests of IDX reading, convert-mnist (nr_convert_mnist), the LMDB wrapper, the
 * DataTransformer and the Data layer: values, labels, transforms, wrap-around, prefetch,
 * determinism and the errors a user would see. Fixtures are written by the tests. */
#include <sys/stat.h>
#include <time.h>

#include "binary.h"
#include "data_util.h"
#include "db_lmdb.h"
#include "idx.h"

#define N 10
#define ROWS 4
#define COLS 5
#define PIX (ROWS * COLS)

static const char *db10; /* the converted 10-item data set, shared by most cases */

static void make_db10(void) {
  nr_error err = {0};
  const char *im = du_path("im.gz"), *lb = du_path("lb.gz");
  if (du_write_mnist(im, lb, 1, N, ROWS, COLS) != 0) {
    fprintf(stderr, "cannot write the IDX fixture\n");
    exit(100);
  }
  static char db[512];
  snprintf(db, sizeof db, "%s", du_path("db10"));
  if (nr_convert_mnist(im, lb, db, NULL, &err) != NR_OK) {
    fprintf(stderr, "nr_convert_mnist: %s\n", err.msg);
    exit(100);
  }
  db10 = db;
}

/* A Data layer over `db` with extra text inside the layer (transform_param, ...). */
static du_layer *data_layer(const char *db, int ntop, int batch, int phase, uint64_t seed,
                            const char *extra_data_param, const char *transform) {
  return du_make(ntop, seed, phase,
                 "name: 'mnist' type: 'Data' top: 'data' top: 'label' "
                 "data_param { source: '%s' batch_size: %d backend: LMDB %s } %s",
                 db, batch, extra_data_param ? extra_data_param : "",
                 transform ? transform : "");
}

static void test_idx_read(void) {
  nr_error err = {0};
  const char *im = du_path("plain_im"), *lb = du_path("plain_lb");
  CHECK_INT_EQ(du_write_mnist(im, lb, 0, 3, 2, 2), 0);
  nr_idx *idx = NULL;
  CHECK_OK(nr_idx_read(im, &idx, &err), &err);
  CHECK_INT_EQ(idx->magic, 2051);
  CHECK_INT_EQ(idx->ndims, 3);
  CHECK_INT_EQ(idx->dims[0], 3);
  CHECK_INT_EQ(idx->count, 12);
  CHECK_INT_EQ(idx->data[11], du_pixel(2, 1, 1, 2));
  nr_idx_free(idx);
  idx = NULL;
  CHECK_INT_EQ(nr_idx_read(du_path("nope.gz"), &idx, &err), NR_ERR_IO);
  CHECK_CONTAINS(err.msg, "nope.gz': No such file or directory");
  CHECK(idx == NULL);
  /* truncated: the header promises more than the file holds */
  const uint8_t short_file[] = {0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4};
  gzFile gz = gzopen(du_path("short.gz"), "wb");
  CHECK(gz != NULL);
  CHECK_INT_EQ(gzwrite(gz, short_file, sizeof short_file), sizeof short_file);
  CHECK_INT_EQ(gzclose(gz), Z_OK);
  CHECK_INT_EQ(nr_idx_read(du_path("short.gz"), &idx, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "truncated: 4 of 20 values");
  /* not an IDX file at all */
  FILE *f = fopen(du_path("text.gz"), "w");
  fputs("hello world", f);
  fclose(f);
  CHECK_INT_EQ(nr_idx_read(du_path("text.gz"), &idx, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "is not an IDX file");
}

static void test_convert_errors(void) {
  nr_error err = {0};
  const char *im = du_path("ce_im.gz"), *lb = du_path("ce_lb.gz");
  CHECK_INT_EQ(du_write_mnist(im, lb, 1, 4, 2, 3), 0);
  /* images and labels swapped: magic numbers say so */
  CHECK_INT_EQ(nr_convert_mnist(lb, im, du_path("ce_db1"), NULL, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "magic number 2049, expected 2051");
  struct stat st;
  CHECK(stat(du_path("ce_db1"), &st) != 0); /* nothing left behind */
  /* differing counts */
  const char *lb3 = du_path("ce_lb3.gz");
  const uint32_t d3[1] = {3};
  const uint8_t l3[3] = {1, 2, 3};
  CHECK_INT_EQ(du_write_idx(lb3, 1, 1, d3, l3), 0);
  CHECK_INT_EQ(nr_convert_mnist(im, lb3, du_path("ce_db2"), NULL, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "has 4 images but");
  CHECK_CONTAINS(err.msg, "has 3 labels");
  /* an existing database is never overwritten */
  CHECK_INT_EQ(nr_convert_mnist(im, lb, db10, NULL, &err), NR_ERR_IO);
  CHECK_CONTAINS(err.msg, "already exists");
  /* plain (not gzip) files convert too, and the records are Caffe's */
  const char *pim = du_path("ce_pim"), *plb = du_path("ce_plb");
  CHECK_INT_EQ(du_write_mnist(pim, plb, 0, 4, 2, 3), 0);
  CHECK_OK(nr_convert_mnist(pim, plb, du_path("ce_plain"), NULL, &err), &err);
  nr_lmdb_reader *r = NULL;
  CHECK_OK(nr_lmdb_reader_open(du_path("ce_plain"), &r, &err), &err);
  const void *k, *v;
  size_t kl, vl;
  bool wrapped = false;
  CHECK_OK(nr_lmdb_reader_next(r, &wrapped, &err), &err);
  nr_lmdb_reader_get(r, &k, &kl, &v, &vl);
  CHECK_INT_EQ(kl, 8);
  CHECK(memcmp(k, "00000001", 8) == 0);
  Caffe__Datum *d = caffe__datum__unpack(NULL, vl, v);
  CHECK(d != NULL);
  CHECK_INT_EQ(d->channels, 1);
  CHECK_INT_EQ(d->height, 2);
  CHECK_INT_EQ(d->width, 3);
  CHECK_INT_EQ(d->label, 1);
  CHECK_INT_EQ(d->data.len, 6);
  CHECK_INT_EQ(d->data.data[5], du_pixel(1, 1, 2, 3));
  CHECK(!d->encoded);
  caffe__datum__free_unpacked(d, NULL);
  for (int i = 0; i < 3; i++) CHECK_OK(nr_lmdb_reader_next(r, &wrapped, &err), &err);
  CHECK(wrapped); /* 4 records: the 4th next is back at the first */
  nr_lmdb_reader_get(r, &k, &kl, &v, &vl);
  CHECK(memcmp(k, "00000000", 8) == 0);
  nr_lmdb_reader_close(r);
}

/* Checks batch `b` (of size bs) of the plain data set: item (b*bs + i) % N. */
#define CHECK_PLAIN_BATCH(f, b, bs)                                                               \
  do {                                                                                            \
    for (int i_ = 0; i_ < (bs); i_++) {                                                           \
      int item_ = ((b) * (bs) + i_) % N;                                                          \
      for (int p_ = 0; p_ < PIX; p_++)                                                            \
        CHECK_NEAR((f)->top[0]->data[i_ * PIX + p_], du_pixel(item_, p_ / COLS, p_ % COLS, COLS), \
                   0);                                                                            \
      CHECK_NEAR((f)->top[1]->data[i_], item_ % 10, 0);                                           \
    }                                                                                             \
  } while (0)

static void test_values_labels_wrap(void) {
  du_layer *f = data_layer(db10, 2, 4, NR_TRAIN, 1, NULL, NULL);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->num_axes, 4);
  CHECK_INT_EQ(f->top[0]->shape[0], 4);
  CHECK_INT_EQ(f->top[0]->shape[1], 1);
  CHECK_INT_EQ(f->top[0]->shape[2], ROWS);
  CHECK_INT_EQ(f->top[0]->shape[3], COLS);
  CHECK_INT_EQ(f->top[1]->num_axes, 1);
  CHECK_INT_EQ(f->top[1]->shape[0], 4);
  for (int b = 0; b < 6; b++) { /* 24 items over a 10-item set: wraps twice */
    CHECK_OK(f->l->type->reshape(f->l, &f->err), &f->err);
    CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
    CHECK_PLAIN_BATCH(f, b, 4);
  }
  du_free(f);
  /* one top: data only */
  f = du_make(1, 1, NR_TEST, "name: 'd' type: 'Data' top: 'data' data_param { source: '%s' "
              "batch_size: 3 backend: LMDB }", db10);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  CHECK_NEAR(f->top[0]->data[PIX], du_pixel(1, 0, 0, COLS), 0);
  du_free(f);
}

static void test_prefetch_depths(void) {
  const int depths[] = {1, 2, 4};
  for (size_t d = 0; d < sizeof depths / sizeof *depths; d++) {
    char extra[64];
    snprintf(extra, sizeof extra, "prefetch: %d", depths[d]);
    du_layer *f = data_layer(db10, 2, 3, NR_TRAIN, 1, extra, NULL);
    CHECK(f != NULL);
    CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
    for (int b = 0; b < 9; b++) {
      if (b % 3 == 2) { /* let the thread fill the whole ring and block */
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
      }
      CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
      CHECK_PLAIN_BATCH(f, b, 3);
    }
    du_free(f); /* joins a thread blocked on a full ring */
  }
  /* destroyed right after setup, before any forward */
  du_layer *f = data_layer(db10, 2, 3, NR_TRAIN, 1, "prefetch: 4", NULL);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  du_free(f);
}

static void test_scale_mean_value(void) {
  du_layer *f = data_layer(db10, 2, 2, NR_TEST, 1, NULL,
                           "transform_param { scale: 0.5 mean_value: 10 }");
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  for (int i = 0; i < 2; i++)
    for (int p = 0; p < PIX; p++)
      CHECK_NEAR(f->top[0]->data[i * PIX + p],
                 (du_pixel(i, p / COLS, p % COLS, COLS) - 10.0f) * 0.5f, 0);
  du_free(f);
  /* Caffe's LeNet scale alone */
  f = data_layer(db10, 2, 2, NR_TEST, 1, NULL, "transform_param { scale: 0.00390625 }");
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  CHECK_NEAR(f->top[0]->data[PIX + 7], du_pixel(1, 1, 2, COLS) * 0.00390625f, 0);
  du_free(f);
  /* one value per channel is required for several values (1 channel here: 2 is wrong) */
  f = data_layer(db10, 2, 2, NR_TEST, 1, NULL, "transform_param { mean_value: 1 mean_value: 2 }");
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "mean_value has 2 values for 1 channels");
  du_free(f);
}

static void write_mean(const char *path, int h, int w) {
  Caffe__BlobProto bp = CAFFE__BLOB_PROTO__INIT;
  bp.has_num = bp.has_channels = bp.has_height = bp.has_width = 1;
  bp.num = 1;
  bp.channels = 1;
  bp.height = h;
  bp.width = w;
  float *v = malloc((size_t)h * w * sizeof *v);
  for (int i = 0; i < h * w; i++) v[i] = (float)i * 0.25f;
  bp.n_data = (size_t)h * w;
  bp.data = v;
  nr_error err = {0};
  if (nr_proto_save_binary(path, &bp.base, &err) != NR_OK) fprintf(stderr, "%s\n", err.msg);
  free(v);
}

static void test_mean_file(void) {
  const char *mean = du_path("mean.binaryproto");
  write_mean(mean, ROWS, COLS);
  char tp[600];
  snprintf(tp, sizeof tp, "transform_param { scale: 2 mean_file: '%s' }", mean);
  du_layer *f = data_layer(db10, 2, 2, NR_TEST, 1, NULL, tp);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  for (int i = 0; i < 2; i++)
    for (int p = 0; p < PIX; p++)
      CHECK_NEAR(f->top[0]->data[i * PIX + p],
                 (du_pixel(i, p / COLS, p % COLS, COLS) - p * 0.25f) * 2.0f, 0);
  du_free(f);
  /* a mean of another shape */
  const char *bad = du_path("mean33.binaryproto");
  write_mean(bad, 3, 3);
  snprintf(tp, sizeof tp, "transform_param { mean_file: '%s' }", bad);
  f = data_layer(db10, 2, 2, NR_TEST, 1, NULL, tp);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "has shape 1x1x3x3, but the data is 1x4x5");
  du_free(f);
  /* a missing mean file, and both kinds of mean */
  snprintf(tp, sizeof tp, "transform_param { mean_file: '%s' }", du_path("nomean"));
  f = data_layer(db10, 2, 2, NR_TEST, 1, NULL, tp);
  CHECK(f != NULL);
  CHECK(nr_layer_setup(f->l, &f->err) != NR_OK);
  CHECK_CONTAINS(f->err.msg, "nomean");
  du_free(f);
  snprintf(tp, sizeof tp, "transform_param { mean_file: '%s' mean_value: 3 }", mean);
  f = data_layer(db10, 2, 2, NR_TEST, 1, NULL, tp);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "both mean_file and mean_value");
  du_free(f);
}

static void test_crop_center_test_phase(void) {
  /* 4x5 images, crop 3: rows 0..2 ((4-3)/2 = 0), columns 1..3 ((5-3)/2 = 1) */
  du_layer *f = data_layer(db10, 2, 2, NR_TEST, 1, NULL, "transform_param { crop_size: 3 }");
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[2], 3);
  CHECK_INT_EQ(f->top[0]->shape[3], 3);
  for (int b = 0; b < 3; b++) {
    CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
    for (int i = 0; i < 2; i++)
      for (int y = 0; y < 3; y++)
        for (int x = 0; x < 3; x++)
          CHECK_NEAR(f->top[0]->data[(i * 3 + y) * 3 + x], du_pixel(b * 2 + i, y, x + 1, COLS), 0);
  }
  du_free(f);
  f = data_layer(db10, 2, 2, NR_TEST, 1, NULL, "transform_param { crop_size: 5 }");
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "crop_size 5 is larger than the data (4x5)");
  du_free(f);
}

/* Which (h_off, w_off, mirrored) of a 3x3 crop of item `item` gives out? -1 if none. */
static int find_crop(const float *out, int item) {
  for (int m = 0; m < 2; m++)
    for (int ho = 0; ho <= ROWS - 3; ho++)
      for (int wo = 0; wo <= COLS - 3; wo++) {
        int ok = 1;
        for (int y = 0; ok && y < 3; y++)
          for (int x = 0; ok && x < 3; x++)
            ok = out[y * 3 + (m ? 2 - x : x)] == du_pixel(item, ho + y, wo + x, COLS);
        if (ok) return (m * 16 + ho) * 16 + wo;
      }
  return -1;
}

/* Runs 5 batches of 4 (TRAIN, mirror + crop 3) and records each item's crop code. */
static void run_random(uint64_t seed, int codes[20], int *ok) {
  *ok = 0;
  du_layer *f = data_layer(db10, 2, 4, NR_TRAIN, seed, "prefetch: 2",
                           "transform_param { mirror: true crop_size: 3 }");
  if (!f) return;
  if (nr_layer_setup(f->l, &f->err) != NR_OK) {
    fprintf(stderr, "%s\n", f->err.msg);
    du_free(f);
    return;
  }
  for (int b = 0; b < 5; b++) {
    if (f->l->type->forward(f->l, &f->err) != NR_OK) {
      du_free(f);
      return;
    }
    for (int i = 0; i < 4; i++)
      codes[b * 4 + i] = find_crop(f->top[0]->data + i * 9, (b * 4 + i) % N);
  }
  du_free(f);
  *ok = 1;
}

static void test_mirror_crop_determinism(void) {
  int a[20], b[20], c[20], ok;
  run_random(7, a, &ok);
  CHECK(ok);
  run_random(7, b, &ok);
  CHECK(ok);
  run_random(8, c, &ok);
  CHECK(ok);
  int mirrored = 0, offsets = 0, differs = 0;
  for (int i = 0; i < 20; i++) {
    CHECK(a[i] >= 0); /* every item is a crop (maybe flipped) of the right image */
    CHECK_INT_EQ(a[i], b[i]);
    mirrored += a[i] >= 256;
    offsets |= 1 << (a[i] % 256 % 16) | 1 << (4 + a[i] % 256 / 16);
    differs += a[i] != c[i];
  }
  CHECK(mirrored > 0 && mirrored < 20); /* both flipped and unflipped items */
  CHECK_INT_EQ(offsets, 0x37);          /* w_off 0,1,2 and h_off 0,1 all drawn */
  CHECK(differs > 0);                   /* another seed, other draws */
}

static void test_rand_skip(void) {
  du_layer *f = data_layer(db10, 2, 3, NR_TRAIN, 3, "rand_skip: 6", NULL);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  int first = (int)f->top[1]->data[0];
  CHECK(first >= 0 && first < 6);
  CHECK_NEAR(f->top[1]->data[1], (first + 1) % 10, 0);
  CHECK_NEAR(f->top[1]->data[2], (first + 2) % 10, 0);
  du_free(f);
}

/* Writes an LMDB of the given Datums (keys %08d). */
static int write_datums(const char *path, Caffe__Datum **d, int n) {
  nr_error err = {0};
  nr_lmdb_writer *w = NULL;
  if (nr_lmdb_writer_create(path, &w, &err) != NR_OK) return -1;
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    uint8_t buf[4096];
    size_t len = caffe__datum__pack(d[i], buf);
    char key[16];
    snprintf(key, sizeof key, "%08d", i);
    rc = nr_lmdb_writer_put(w, key, 8, buf, len, &err) == NR_OK ? 0 : -1;
  }
  if (rc == 0 && nr_lmdb_writer_commit(w, &err) != NR_OK) rc = -1;
  nr_lmdb_writer_close(w);
  return rc;
}

static void test_float_data(void) {
  float v0[6] = {0.5f, -1, 2, 3, 4, 5}, v1[6] = {6, 7, 8, 9, 10, 11.25f};
  Caffe__Datum d0 = CAFFE__DATUM__INIT, d1 = CAFFE__DATUM__INIT;
  Caffe__Datum *ds[2] = {&d0, &d1};
  for (int i = 0; i < 2; i++) {
    ds[i]->has_channels = ds[i]->has_height = ds[i]->has_width = ds[i]->has_label = 1;
    ds[i]->channels = 2;
    ds[i]->height = 1;
    ds[i]->width = 3;
    ds[i]->label = 5 + i;
    ds[i]->n_float_data = 6;
    ds[i]->float_data = i ? v1 : v0;
  }
  const char *db = du_path("floats");
  CHECK_INT_EQ(write_datums(db, ds, 2), 0);
  /* two channels, per-channel means, mirror off */
  du_layer *f = data_layer(db, 2, 2, NR_TEST, 1, NULL,
                           "transform_param { mean_value: 1 mean_value: 2 }");
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[1], 2);
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < 6; k++)
      CHECK_NEAR(f->top[0]->data[i * 6 + k], (i ? v1 : v0)[k] - (k < 3 ? 1 : 2), 0);
  CHECK_NEAR(f->top[1]->data[1], 6, 0);
  du_free(f);
}

static void test_errors(void) {
  /* missing database: the path and the reason */
  const char *missing = du_path("no_such_lmdb");
  du_layer *f = data_layer(missing, 2, 2, NR_TRAIN, 1, NULL, NULL);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_IO);
  char want[600];
  snprintf(want, sizeof want, "cannot open LMDB '%s': No such file or directory", missing);
  CHECK_CONTAINS(f->err.msg, want);
  du_free(f);
  /* LEVELDB, given or by Caffe's default on a non-LMDB path */
  f = du_make(2, 1, NR_TRAIN, "name: 'd' type: 'Data' top: 'data' top: 'label' data_param { "
              "source: '%s' batch_size: 2 backend: LEVELDB }", db10);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "LEVELDB (given) is not supported: convert");
  du_free(f);
  f = du_make(2, 1, NR_TRAIN, "name: 'd' type: 'Data' top: 'data' top: 'label' data_param { "
              "source: '%s' batch_size: 2 }", missing);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "LEVELDB (Caffe's default) is not supported");
  du_free(f);
  /* an unset backend naming an LMDB is read */
  f = du_make(2, 1, NR_TRAIN, "name: 'd' type: 'Data' top: 'data' top: 'label' data_param { "
              "source: '%s' batch_size: 2 }", db10);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  du_free(f);
  f = data_layer(db10, 2, 0, NR_TRAIN, 1, NULL, NULL);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "batch_size must be positive");
  du_free(f);

  /* encoded record: refused at setup */
  uint8_t jpeg[6] = {0xff, 0xd8, 0xff, 0xe0, 0, 0x10};
  Caffe__Datum e = CAFFE__DATUM__INIT;
  e.has_encoded = e.encoded = 1;
  e.has_data = 1;
  e.data.len = sizeof jpeg;
  e.data.data = jpeg;
  Caffe__Datum *es[1] = {&e};
  const char *edb = du_path("encoded");
  CHECK_INT_EQ(write_datums(edb, es, 1), 0);
  f = data_layer(edb, 2, 2, NR_TRAIN, 1, NULL, NULL);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "record '00000000' is an encoded image");
  du_free(f);

  /* a record of another shape: the forward that reaches it fails, naming it */
  uint8_t px[12] = {0};
  Caffe__Datum a = CAFFE__DATUM__INIT, b = CAFFE__DATUM__INIT;
  Caffe__Datum *ab[3] = {&a, &a, &b};
  a.has_channels = a.has_height = a.has_width = a.has_data = 1;
  a.channels = 1;
  a.height = 2;
  a.width = 3;
  a.data.len = 6;
  a.data.data = px;
  b = a;
  b.width = 6;
  b.data.len = 12;
  const char *sdb = du_path("shapes");
  CHECK_INT_EQ(write_datums(sdb, ab, 3), 0);
  f = data_layer(sdb, 2, 2, NR_TRAIN, 1, "prefetch: 3", NULL);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err); /* records 0, 1 */
  CHECK_INT_EQ(f->l->type->forward(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "record '00000002' is 1x2x6, but the first record is 1x2x3");
  CHECK_INT_EQ(f->l->type->forward(f->l, &f->err), NR_ERR_INPUT); /* stays failed */
  du_free(f);

  /* data bytes that do not match the shape */
  Caffe__Datum s = a;
  s.data.len = 5;
  Caffe__Datum *ss[1] = {&s};
  const char *bdb = du_path("short");
  CHECK_INT_EQ(write_datums(bdb, ss, 1), 0);
  f = data_layer(bdb, 2, 2, NR_TRAIN, 1, NULL, NULL);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "holds 5 bytes for its shape 1x2x3 (6)");
  du_free(f);
}

int main(void) {
  make_db10();
  NR_RUN(test_idx_read);
  NR_RUN(test_convert_errors);
  NR_RUN(test_values_labels_wrap);
  NR_RUN(test_prefetch_depths);
  NR_RUN(test_scale_mean_value);
  NR_RUN(test_mean_file);
  NR_RUN(test_crop_center_test_phase);
  NR_RUN(test_mirror_crop_determinism);
  NR_RUN(test_rand_skip);
  NR_RUN(test_float_data);
  NR_RUN(test_errors);
  du_cleanup();
  return NR_TEST_EXIT();
}
