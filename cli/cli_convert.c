/* cli_convert.c: Caffe's data-set tools.
 * `netrun convert-mnist IMAGES LABELS DB`, Caffe's convert_mnist_data: an IDX image file and
 * label file (gzip or not) become an LMDB of Datum records that Caffe's
 * lenet_train_test.prototxt reads unchanged but for its source paths.
 * `netrun convert-cifar IN_DIR OUT_DIR`, Caffe's convert_cifar_data, and
 * `netrun compute-image-mean DB [MEAN_FILE]`, Caffe's compute_image_mean (core/db_tools.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "db_tools.h"
#include "idx.h"

static bool lmdb_only(const char *cmd, const char *backend) {
  if (strcasecmp(backend, "lmdb") == 0) return true;
  nr_cli_error("%s: --backend %s is not supported: netrun writes and reads LMDB only "
               "(--backend lmdb)", cmd, backend);
  return false;
}

int nr_cmd_convert_mnist(int argc, char **argv) {
  const char *backend = "lmdb";
  const nr_flag flags[] = {
      {"backend", NR_FLAG_STR, &backend, "database to write: lmdb (the only one supported)"},
      {NULL, 0, NULL, NULL}};
  const char *usage = "netrun convert-mnist IMAGES LABELS DB [--backend lmdb]\n\n"
                      "IMAGES and LABELS are IDX files (e.g. train-images-idx3-ubyte.gz and\n"
                      "train-labels-idx1-ubyte.gz); DB is the LMDB directory to create.";
  const char *pos[3];
  int npos = 0;
  int r = nr_cli_parse("convert-mnist", usage, flags, argc, argv, pos, &npos, 3);
  if (r) return r;
  if (npos != 3) {
    nr_cli_error("convert-mnist: expected IMAGES LABELS DB (see netrun convert-mnist --help)");
    return 2;
  }
  if (!lmdb_only("convert-mnist", backend)) return 2;
  nr_error err = {0};
  FILE *log = nr_cli_log();
  if (nr_convert_mnist(pos[0], pos[1], pos[2], log, &err) != NR_OK) {
    nr_cli_error("convert-mnist: %s", err.msg);
    return 1;
  }
  return 0;
}

int nr_cmd_convert_cifar(int argc, char **argv) {
  const char *backend = "lmdb";
  const nr_flag flags[] = {
      {"backend", NR_FLAG_STR, &backend, "database to write: lmdb (the only one supported)"},
      {NULL, 0, NULL, NULL}};
  const char *usage = "netrun convert-cifar IN_DIR OUT_DIR [--backend lmdb]\n\n"
                      "IN_DIR holds CIFAR-10's binary batches (data_batch_1.bin .. "
                      "data_batch_5.bin,\ntest_batch.bin); OUT_DIR gets cifar10_train_lmdb and "
                      "cifar10_test_lmdb.";
  const char *pos[2];
  int npos = 0;
  int r = nr_cli_parse("convert-cifar", usage, flags, argc, argv, pos, &npos, 2);
  if (r) return r;
  if (npos != 2) {
    nr_cli_error("convert-cifar: expected IN_DIR OUT_DIR (see netrun convert-cifar --help)");
    return 2;
  }
  if (!lmdb_only("convert-cifar", backend)) return 2;
  nr_error err = {0};
  if (nr_convert_cifar(pos[0], pos[1], nr_cli_log(), &err) != NR_OK) {
    nr_cli_error("convert-cifar: %s", err.msg);
    return 1;
  }
  return 0;
}

int nr_cmd_compute_image_mean(int argc, char **argv) {
  const char *backend = "lmdb";
  const nr_flag flags[] = {
      {"backend", NR_FLAG_STR, &backend, "database to read: lmdb (the only one supported)"},
      {NULL, 0, NULL, NULL}};
  const char *usage = "netrun compute-image-mean DB [MEAN_FILE] [--backend lmdb]\n\n"
                      "Averages every Datum of the LMDB DB and writes the mean image to "
                      "MEAN_FILE\n(a .binaryproto for transform_param.mean_file); without "
                      "MEAN_FILE only the\nper-channel means are printed.";
  const char *pos[2];
  int npos = 0;
  int r = nr_cli_parse("compute-image-mean", usage, flags, argc, argv, pos, &npos, 2);
  if (r) return r;
  if (npos < 1) {
    nr_cli_error("compute-image-mean: expected DB [MEAN_FILE] (see netrun compute-image-mean "
                 "--help)");
    return 2;
  }
  if (!lmdb_only("compute-image-mean", backend)) return 2;
  nr_error err = {0};
  if (nr_compute_image_mean(pos[0], npos > 1 ? pos[1] : NULL, nr_cli_log(), &err) != NR_OK) {
    nr_cli_error("compute-image-mean: %s", err.msg);
    return 1;
  }
  return 0;
}
