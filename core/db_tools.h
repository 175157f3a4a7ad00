/* db_tools.h: Caffe's data-set tools over LMDB, for the CLI and the tests.
 *
 * nr_convert_cifar() is Caffe's examples/cifar10/convert_cifar_data: the CIFAR-10 binary
 * batches (data_batch_1.bin .. data_batch_5.bin and test_batch.bin; each record one label
 * byte then 3072 pixel bytes, 3 planes of 32x32) in `in_dir` become the LMDBs
 * `out_dir`/cifar10_train_lmdb and `out_dir`/cifar10_test_lmdb that Caffe's cifar10 nets read.
 * Keys are Caffe's: "%05d" of batch * 10000 + item. A batch may hold fewer than CIFAR's
 * 10 000 records (a file of any whole number of records), so small generated sets work.
 *
 * nr_compute_image_mean() is Caffe's tools/compute_image_mean: the mean of every Datum of an
 * LMDB (raw bytes or float_data, all of one size), written as a BlobProto with num 1 and
 * the Datum's channels, height and width, as the data layers' transform_param.mean_file
 * reads it (out_path NULL: nothing is written). log (optional) gets Caffe's lines, ending
 * with the mean of each channel.
 *
 * Errors, not aborts: a missing or short batch file names the file and the record; a
 * database that exists already (OUT_DIR itself is created if missing), Datums of different
 * sizes or encoded (compressed) Datums are NR_ERR_INPUT / NR_ERR_IO naming the path. A
 * failed conversion removes what it wrote.
 */
#ifndef NR_DB_TOOLS_H
#define NR_DB_TOOLS_H

#include <stdio.h>

#include "nr_status.h"

nr_status nr_convert_cifar(const char *in_dir, const char *out_dir, FILE *log, nr_error *err);
nr_status nr_compute_image_mean(const char *db_path, const char *out_path, FILE *log,
                                nr_error *err);

#endif
