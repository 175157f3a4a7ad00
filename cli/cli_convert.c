/* cli_convert.c: `netrun convert-mnist IMAGES LABELS DB`, Caffe's convert_mnist_data: an
 * IDX image file and label file (gzip or not) become an LMDB of Datum records that Caffe's
 * lenet_train_test.prototxt reads unchanged but for its source paths. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "idx.h"

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
  if (strcasecmp(backend, "lmdb") != 0) {
    nr_cli_error("convert-mnist: --backend %s is not supported: netrun writes and reads LMDB "
                 "only (--backend lmdb)", backend);
    return 2;
  }
  nr_error err = {0};
  FILE *log = nr_cli_log();
  if (nr_convert_mnist(pos[0], pos[1], pos[2], log, &err) != NR_OK) {
    nr_cli_error("convert-mnist: %s", err.msg);
    return 1;
  }
  return 0;
}
