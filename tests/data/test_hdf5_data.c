/* Tests of the HDF5Data layer: rows across files in order, wrap-around, float/double/int
 * datasets, shuffle determinism, and the errors a user would see. The .h5 fixtures are
 * written here with the HDF5 C API. */
#include <hdf5.h>

#include "data_util.h"

/* Writes one dataset `name` of the given type and dims to an open file. */
static int put(hid_t file, const char *name, hid_t type, int nd, const hsize_t *dims,
               const void *data) {
  hid_t space = H5Screate_simple(nd, dims, NULL);
  hid_t ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int rc = ds >= 0 && H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0 ? 0 : -1;
  if (ds >= 0) H5Dclose(ds);
  H5Sclose(space);
  return rc;
}

/* A file of `rows` rows: data rows x 2 x 3 (float) = base + row*10 + k, label rows (double)
 * = base + row. `label_name` lets a test leave the label out or rename it. */
static int write_h5(const char *path, int rows, int base, const char *label_name) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return -1;
  float data[64 * 6];
  double label[64];
  for (int r = 0; r < rows; r++) {
    label[r] = base + r;
    for (int k = 0; k < 6; k++) data[r * 6 + k] = (float)(base + r * 10 + k);
  }
  const hsize_t dd[3] = {(hsize_t)rows, 2, 3}, ld[1] = {(hsize_t)rows};
  int rc = put(f, "data", H5T_NATIVE_FLOAT, 3, dd, data);
  if (label_name) rc |= put(f, label_name, H5T_NATIVE_DOUBLE, 1, ld, label);
  H5Fclose(f);
  return rc;
}

static const char *write_list(const char *name, const char *content) {
  const char *p = du_path("%s", name);
  FILE *f = fopen(p, "w");
  if (!f) return NULL;
  fputs(content, f);
  fclose(f);
  return p;
}

static du_layer *h5_layer(const char *list, int batch, int shuffle, uint64_t seed) {
  return du_make(2, seed, NR_TRAIN,
                 "name: 'h5' type: 'HDF5Data' top: 'data' top: 'label' "
                 "hdf5_data_param { source: '%s' batch_size: %d shuffle: %s }",
                 list, batch, shuffle ? "true" : "false");
}

/* The rows in read order over the files a (3 rows, base 100) then b (2 rows, base 200). */
static int expected_row_base(int k) {
  static const int seq[5] = {100, 101, 102, 200, 201};
  int s = seq[k % 5];
  return s;
}

static void test_rows_across_files(void) {
  const char *a = du_path("a.h5"), *b = du_path("b.h5");
  CHECK_INT_EQ(write_h5(a, 3, 100, "label"), 0);
  CHECK_INT_EQ(write_h5(b, 2, 200, "label"), 0);
  char content[1200];
  snprintf(content, sizeof content, "  %s  \n\n%s\n", a, b);
  const char *list = write_list("list.txt", content);
  du_layer *f = h5_layer(list, 4, 0, 1);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->num_axes, 3);
  CHECK_INT_EQ(f->top[0]->shape[0], 4);
  CHECK_INT_EQ(f->top[0]->shape[1], 2);
  CHECK_INT_EQ(f->top[0]->shape[2], 3);
  CHECK_INT_EQ(f->top[1]->num_axes, 1);
  CHECK_INT_EQ(f->top[1]->shape[0], 4);
  for (int batch = 0; batch < 5; batch++) { /* 20 rows over 5 per pass: 4 passes */
    CHECK_OK(f->l->type->reshape(f->l, &f->err), &f->err);
    CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
    for (int i = 0; i < 4; i++) {
      int k = batch * 4 + i, base = expected_row_base(k);
      int filebase = base / 100 * 100, row = base - filebase;
      CHECK_NEAR(f->top[1]->data[i], base, 0);
      for (int e = 0; e < 6; e++)
        CHECK_NEAR(f->top[0]->data[i * 6 + e], filebase + row * 10 + e, 0);
    }
  }
  du_free(f);
}

static void test_single_file_wrap_and_int(void) {
  const char *p = du_path("int.h5");
  hid_t file = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  CHECK(file >= 0);
  int vals[3] = {7, 8, 9};
  const hsize_t d[2] = {3, 1};
  CHECK_INT_EQ(put(file, "v", H5T_NATIVE_INT, 2, d, vals), 0);
  H5Fclose(file);
  char content[600];
  snprintf(content, sizeof content, "%s\n", p);
  const char *list = write_list("int.txt", content);
  du_layer *f = du_make(1, 1, NR_TEST, "name: 'h' type: 'HDF5Data' top: 'v' hdf5_data_param "
                        "{ source: '%s' batch_size: 2 }", list);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->num_axes, 2);
  CHECK_INT_EQ(f->top[0]->shape[1], 1);
  const float want[6] = {7, 8, 9, 7, 8, 9};
  for (int b = 0; b < 3; b++) {
    CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
    CHECK_NEAR(f->top[0]->data[0], want[(b * 2) % 6], 0);
    CHECK_NEAR(f->top[0]->data[1], want[(b * 2 + 1) % 6], 0);
  }
  du_free(f);
}

/* 3 passes over a (3 rows) + b (2 rows) in batches of 5, shuffled, as label sequences. */
static void shuffled(uint64_t seed, float out[15], int *ok) {
  *ok = 0;
  du_layer *f = h5_layer(du_path("list.txt"), 5, 1, seed);
  if (!f || nr_layer_setup(f->l, &f->err) != NR_OK) {
    du_free(f);
    return;
  }
  for (int b = 0; b < 3; b++) {
    if (f->l->type->forward(f->l, &f->err) != NR_OK) {
      du_free(f);
      return;
    }
    for (int i = 0; i < 5; i++) {
      out[b * 5 + i] = f->top[1]->data[i];
      /* data rows follow their label */
      int base = (int)f->top[1]->data[i], fb = base / 100 * 100;
      if (f->top[0]->data[i * 6 + 5] != fb + (base - fb) * 10 + 5) {
        du_free(f);
        return;
      }
    }
  }
  du_free(f);
  *ok = 1;
}

static void test_shuffle(void) {
  float x[15], y[15], z[15];
  int ok;
  shuffled(5, x, &ok);
  CHECK(ok);
  shuffled(5, y, &ok);
  CHECK(ok);
  int differs = 0, in_order = 1;
  for (int s = 6; s < 40 && !differs; s++) { /* some other seed gives another order */
    shuffled((uint64_t)s, z, &ok);
    CHECK(ok);
    for (int i = 0; i < 15; i++) differs += x[i] != z[i];
  }
  for (int i = 0; i < 15; i++) {
    CHECK_NEAR(x[i], y[i], 0);
    in_order &= x[i] == expected_row_base(i);
  }
  CHECK(differs);
  CHECK(!in_order);
  /* each pass is a permutation of the 5 rows, each file's rows together */
  for (int pass = 0; pass < 3; pass++) {
    int seen = 0;
    for (int i = 0; i < 5; i++) {
      int v = (int)x[pass * 5 + i];
      seen |= 1 << (v >= 200 ? 3 + v - 200 : v - 100);
    }
    CHECK_INT_EQ(seen, 0x1f);
    int first_b = x[pass * 5] >= 200;
    for (int i = 0; i < 5; i++) CHECK_INT_EQ(x[pass * 5 + i] >= 200, first_b ? i < 2 : i >= 3);
  }
}

static void test_errors(void) {
  /* the list file itself missing */
  du_layer *f = h5_layer(du_path("nolist.txt"), 2, 0, 1);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_IO);
  CHECK_CONTAINS(f->err.msg, "nolist.txt': No such file or directory");
  du_free(f);
  /* a listed .h5 missing */
  char content[1200];
  snprintf(content, sizeof content, "%s\n", du_path("gone.h5"));
  const char *list = write_list("gone.txt", content);
  f = h5_layer(list, 2, 0, 1);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_IO);
  char want[700];
  snprintf(want, sizeof want, "cannot open HDF5 file '%s': No such file or directory",
           du_path("gone.h5"));
  CHECK_CONTAINS(f->err.msg, want);
  du_free(f);
  /* not an HDF5 file */
  snprintf(content, sizeof content, "%s\n", du_path("gone.txt"));
  list = write_list("nothdf.txt", content);
  f = h5_layer(list, 2, 0, 1);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "not an HDF5 file");
  du_free(f);
  /* an empty list */
  list = write_list("empty.txt", "\n  \n");
  f = h5_layer(list, 2, 0, 1);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "lists no files");
  du_free(f);
  /* a top with no dataset of its name */
  const char *nl = du_path("nolabel.h5");
  CHECK_INT_EQ(write_h5(nl, 2, 100, "labels"), 0);
  snprintf(content, sizeof content, "%s\n", nl);
  list = write_list("nolabel.txt", content);
  f = h5_layer(list, 2, 0, 1);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "has no dataset 'label'");
  du_free(f);
  /* rows disagree between datasets */
  const char *rm = du_path("rows.h5");
  hid_t file = H5Fcreate(rm, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  float z[12] = {0};
  const hsize_t d2[3] = {2, 2, 3}, d3[1] = {3};
  CHECK_INT_EQ(put(file, "data", H5T_NATIVE_FLOAT, 3, d2, z), 0);
  CHECK_INT_EQ(put(file, "label", H5T_NATIVE_FLOAT, 1, d3, z), 0);
  H5Fclose(file);
  snprintf(content, sizeof content, "%s\n", rm);
  list = write_list("rows.txt", content);
  f = h5_layer(list, 2, 0, 1);
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "dataset 'label' has 3 rows but 'data' has 2");
  du_free(f);
  /* the second file's rows have another shape: the forward that loads it says so */
  const char *other = du_path("other.h5");
  file = H5Fcreate(other, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hsize_t d4[2] = {2, 6}, d5[1] = {2};
  CHECK_INT_EQ(put(file, "data", H5T_NATIVE_FLOAT, 2, d4, z), 0);
  CHECK_INT_EQ(put(file, "label", H5T_NATIVE_FLOAT, 1, d5, z), 0);
  H5Fclose(file);
  snprintf(content, sizeof content, "%s\n%s\n", du_path("a.h5"), other);
  list = write_list("mixed.txt", content);
  f = h5_layer(list, 3, 0, 1);
  CHECK(f != NULL);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->l->type->forward(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "rows of another shape");
  du_free(f);
  /* no source */
  f = du_make(1, 1, NR_TRAIN, "name: 'h' type: 'HDF5Data' top: 'data' hdf5_data_param { "
              "batch_size: 2 }");
  CHECK(f != NULL);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "hdf5_data_param.source is not set");
  du_free(f);
}

int main(void) {
  NR_RUN(test_rows_across_files);
  NR_RUN(test_single_file_wrap_and_int);
  NR_RUN(test_shuffle);
  NR_RUN(test_errors);
  du_cleanup();
  return NR_TEST_EXIT();
}
