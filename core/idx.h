/* idx.h: IDX files (the MNIST / Fashion-MNIST format) and their conversion to LMDB.
 *
 * An IDX file is a 4-byte magic (two zero bytes, a type byte, the number of dimensions), one
 * big-endian uint32 per dimension, then the values in row-major order. netrun reads the
 * unsigned-byte type (0x08) only, which is what the MNIST family uses, from plain or gzip
 * files alike (zlib reads both).
 *
 * nr_convert_mnist() is Caffe's tools/convert_mnist_data: a 3-D image file (magic 2051) and
 * a 1-D label file (magic 2049) of the same length become an LMDB whose keys are "%08d" and
 * whose values are Datum{channels 1, height rows, width cols, data = the pixel bytes, label}.
 * The `netrun convert-mnist` command and the tests share it.
 *
 * Ownership: nr_idx_read returns a new nr_idx, freed with nr_idx_free. No global state.
 */
#ifndef NR_IDX_H
#define NR_IDX_H

#include <stdint.h>
#include <stdio.h>

#include "nr_status.h"

#define NR_IDX_MAX_DIMS 8

typedef struct nr_idx {
  uint32_t magic; /* e.g. 2051 (0x00000803) for images, 2049 for labels */
  int ndims;
  uint32_t dims[NR_IDX_MAX_DIMS];
  uint64_t count; /* product of dims */
  uint8_t *data;  /* count bytes, owned */
} nr_idx;

/* Reads a whole unsigned-byte IDX file (gzip or not). Errors: NR_ERR_IO naming the path
 * when it cannot be opened or read; NR_ERR_INPUT for a bad magic, a type other than
 * unsigned byte, a file shorter than its header says ("truncated: N of M values"). */
nr_status nr_idx_read(const char *path, nr_idx **out, nr_error *err);
void nr_idx_free(nr_idx *idx);

/* Converts an image IDX and a label IDX into a new LMDB at db_path (a directory that must
 * not exist yet). log (optional) gets Caffe's progress lines. Errors: the IDX errors above,
 * NR_ERR_INPUT for wrong magics (2051 / 2049) or differing counts, NR_ERR_IO when db_path
 * exists or cannot be written. On failure the half-written database is removed. */
nr_status nr_convert_mnist(const char *images, const char *labels, const char *db_path,
                           FILE *log, nr_error *err);

#endif
