/* HDF5Output: writes its two bottoms to an HDF5 file (Caffe's HDF5OutputLayer), as the
 * datasets "data" and "label" that HDF5Data and h5py read.
 *
 * hdf5_output_param.file_name is created (truncated) at setup. Each forward appends its
 * batch: the datasets are float, 4-D in Caffe's legacy shape (num, channels, height, width;
 * missing axes are 1) and grow along the first axis, so after k forwards of batch N they
 * hold k*N rows (Caffe rewrote the datasets at each forward and failed at the second). The
 * file is flushed after each forward and closed with the net. No tops, no backward.
 */
#include <errno.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

typedef struct h5out {
  hid_t file;
  hid_t ds[2];   /* "data", "label"; -1 until the first forward */
  hsize_t rows;  /* rows written so far */
  hsize_t dims[2][4];
} h5out;

static const char *const ds_names[2] = {"data", "label"};

static void legacy_dims(const nr_blob *b, hsize_t d[4]) {
  for (int i = 0; i < 4; i++) d[i] = (hsize_t)nr_blob_legacy_dim(b, i);
}

static nr_status out_setup(nr_layer *l, nr_error *err) {
  const Caffe__HDF5OutputParameter *p = l->param->hdf5_output_param;
  if (!p || !p->file_name || !*p->file_name)
    return nr_err_set(err, NR_ERR_INPUT, "hdf5_output_param.file_name is required");
  h5out *o = calloc(1, sizeof *o);
  if (!o) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  o->ds[0] = o->ds[1] = -1;
  o->file = -1;
  l->priv = o;
  H5E_auto2_t old_fn;
  void *old_data;
  H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  o->file = H5Fcreate(p->file_name, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
  if (o->file < 0) {
    /* The reason, from the file system (opened for appending: nothing is truncated). */
    FILE *probe = fopen(p->file_name, "ab");
    if (!probe)
      return nr_err_set(err, NR_ERR_IO, "cannot create HDF5 file '%s': %s", p->file_name,
                        strerror(errno));
    fclose(probe);
    return nr_err_set(err, NR_ERR_IO, "cannot create HDF5 file '%s' (is it open elsewhere?)",
                      p->file_name);
  }
  return NR_OK;
}

static nr_status out_reshape(nr_layer *l, nr_error *err) {
  if (nr_blob_legacy_dim(l->bottom[0], 0) != nr_blob_legacy_dim(l->bottom[1], 0))
    return nr_err_set(err, NR_ERR_INPUT, "data has %lld rows but label has %lld",
                      (long long)nr_blob_legacy_dim(l->bottom[0], 0),
                      (long long)nr_blob_legacy_dim(l->bottom[1], 0));
  for (int i = 0; i < 2; i++)
    if (l->bottom[i]->num_axes > 4)
      return nr_err_set(err, NR_ERR_INPUT, "bottom %d ('%s') has %d axes; HDF5Output writes "
                        "at most 4", i, ds_names[i], l->bottom[i]->num_axes);
  return NR_OK;
}

/* Appends bottom i's rows to dataset i (created at the first forward). */
static int append(h5out *o, int i, const nr_blob *b) {
  hsize_t d[4];
  legacy_dims(b, d);
  if (o->ds[i] < 0) {
    hsize_t max[4] = {H5S_UNLIMITED, d[1], d[2], d[3]}, zero[4] = {0, d[1], d[2], d[3]};
    hsize_t chunk[4] = {d[0] ? d[0] : 1, d[1] ? d[1] : 1, d[2] ? d[2] : 1, d[3] ? d[3] : 1};
    hid_t space = H5Screate_simple(4, zero, max), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 4, chunk) >= 0)
      o->ds[i] = H5Dcreate2(o->file, ds_names[i], H5T_NATIVE_FLOAT, space, H5P_DEFAULT, dcpl,
                            H5P_DEFAULT);
    if (space >= 0) H5Sclose(space);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (o->ds[i] < 0) return -1;
    memcpy(o->dims[i], d, sizeof d);
  }
  if (d[1] != o->dims[i][1] || d[2] != o->dims[i][2] || d[3] != o->dims[i][3]) return -2;
  hsize_t total[4] = {o->rows + d[0], d[1], d[2], d[3]}, start[4] = {o->rows, 0, 0, 0};
  if (H5Dset_extent(o->ds[i], total) < 0) return -1;
  hid_t fspace = H5Dget_space(o->ds[i]), mspace = H5Screate_simple(4, d, NULL);
  int r = -1;
  if (fspace >= 0 && mspace >= 0 &&
      H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, d, NULL) >= 0 &&
      (d[0] == 0 ||
       H5Dwrite(o->ds[i], H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, b->data) >= 0))
    r = 0;
  if (fspace >= 0) H5Sclose(fspace);
  if (mspace >= 0) H5Sclose(mspace);
  return r;
}

static nr_status out_forward(nr_layer *l, nr_error *err) {
  h5out *o = l->priv;
  const char *file = l->param->hdf5_output_param->file_name;
  H5E_auto2_t old_fn;
  void *old_data;
  H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  nr_status s = NR_OK;
  for (int i = 0; i < 2 && s == NR_OK; i++) {
    int r = append(o, i, l->bottom[i]);
    if (r == -2)
      s = nr_err_set(err, NR_ERR_INPUT, "'%s': bottom '%s' changed its shape after the first "
                     "batch (each row must keep the shape of the first)", file, ds_names[i]);
    else if (r < 0)
      s = nr_err_set(err, NR_ERR_IO, "'%s': cannot write dataset '%s' (disk full?)", file,
                     ds_names[i]);
  }
  if (s == NR_OK) {
    o->rows += (hsize_t)nr_blob_legacy_dim(l->bottom[0], 0);
    H5Fflush(o->file, H5F_SCOPE_LOCAL);
    fprintf(l->ctx && l->ctx->log ? l->ctx->log : stderr, "Successfully saved %lld rows\n",
            (long long)nr_blob_legacy_dim(l->bottom[0], 0)); /* as the Data layer logs */
  }
  H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
  return s;
}

static void out_destroy(nr_layer *l) {
  h5out *o = l->priv;
  if (!o) return;
  for (int i = 0; i < 2; i++)
    if (o->ds[i] >= 0) H5Dclose(o->ds[i]);
  if (o->file >= 0) H5Fclose(o->file);
  free(o);
  l->priv = NULL;
}

const nr_layer_type nr_layer_hdf5_output = {
    .name = "HDF5Output", .min_bottoms = 2, .max_bottoms = 2, .min_tops = 0, .max_tops = 0,
    .setup = out_setup, .reshape = out_reshape, .forward = out_forward,
    .destroy = out_destroy};
