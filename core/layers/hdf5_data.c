/* HDF5Data: rows of HDF5 datasets (Caffe's HDF5DataLayer).
 *
 * hdf5_data_param: source (a text file listing .h5 files, one path per line; blank lines
 * are skipped, surrounding spaces trimmed; relative paths are relative to the working
 * directory, as in Caffe), batch_size, shuffle. Each top reads the dataset of the same
 * name from every file; datasets are float, double or integer (converted to float), and
 * their first axis counts rows: all tops' datasets in a file have the same number of rows,
 * and a top is batch_size x (the dataset's other axes), which every file must agree on.
 *
 * One file is in memory at a time. Batches take rows in order across the files, going back
 * to the first file after the last. With shuffle, as Caffe: the file order is shuffled at
 * setup and at each pass over the list, and the row order is shuffled whenever a file is
 * (re)loaded — in either phase (put shuffle in the TRAIN layer only to shuffle only when
 * training). The rng is the layer's own, seeded from the net's, so the same seed gives the
 * same batches.
 */
#include <ctype.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

#define H5_MAX_DIMS 32

typedef struct h5_priv {
  char **files;
  int nfiles;
  int *file_perm;
  int cur_file;       /* position in file_perm */
  int64_t cur_row;    /* position in row_perm */
  int64_t nrows;      /* rows of the loaded file */
  int64_t *row_perm;
  float **rows;       /* per top: nrows * row_size[i] floats of the loaded file */
  int64_t *row_size;  /* per top */
  int64_t (*dims)[H5_MAX_DIMS]; /* per top: the non-row axes (from the first file) */
  int *ndims;         /* per top, including the row axis */
  int batch_size;
  bool shuffle;
  int stride;         /* rows per row taken: solver_count (1 in one process) */
  nr_rng rng;
} h5_priv;

static void shuffle_ints(nr_rng *r, int *v, int n) {
  for (int i = n - 1; i > 0; i--) {
    int j = (int)nr_rng_below(r, (uint64_t)i + 1), t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
}

static void shuffle_rows(nr_rng *r, int64_t *v, int64_t n) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)nr_rng_below(r, (uint64_t)i + 1), t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
}

/* Reads the source list into p->files. */
static nr_status read_list(h5_priv *p, const char *source, nr_error *err) {
  FILE *f = fopen(source, "r");
  if (!f)
    return nr_err_set(err, NR_ERR_IO, "cannot open hdf5_data_param.source '%s': %s", source,
                      strerror(errno));
  nr_status s = NR_OK;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, f)) >= 0) {
    char *b = line, *e = line + len;
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    if (b == e) continue;
    char **v = realloc(p->files, (size_t)(p->nfiles + 1) * sizeof *v);
    if (!v) {
      s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
      break;
    }
    p->files = v;
    if (!(p->files[p->nfiles] = strndup(b, (size_t)(e - b)))) {
      s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
      break;
    }
    p->nfiles++;
  }
  if (s == NR_OK && ferror(f))
    s = nr_err_set(err, NR_ERR_IO, "cannot read '%s': %s", source, strerror(errno));
  free(line);
  fclose(f);
  if (s == NR_OK && p->nfiles == 0)
    s = nr_err_set(err, NR_ERR_INPUT, "hdf5_data_param.source '%s' lists no files", source);
  return s;
}

/* Reads one dataset into *out (new) as float; gives its dims. */
static nr_status read_dataset(hid_t file, const char *path, const char *name, int *ndims,
                              hsize_t *dims, float **out, nr_error *err) {
  nr_status s = NR_OK;
  hid_t ds = -1, space = -1, type = -1;
  float *buf = NULL;
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0 || (ds = H5Dopen2(file, name, H5P_DEFAULT)) < 0)
    return nr_err_set(err, NR_ERR_INPUT, "HDF5 file '%s' has no dataset '%s' (each top reads "
                      "the dataset of its name)", path, name);
  type = H5Dget_type(ds);
  H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) {
    s = nr_err_set(err, NR_ERR_INPUT, "HDF5 file '%s': dataset '%s' is not numeric (float, "
                   "double or integer expected)", path, name);
    goto done;
  }
  space = H5Dget_space(ds);
  int nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  if (nd < 1 || nd > H5_MAX_DIMS) {
    s = nr_err_set(err, NR_ERR_INPUT, "HDF5 file '%s': dataset '%s' has %d axes (1 to %d "
                   "expected; the first counts rows)", path, name, nd, H5_MAX_DIMS);
    goto done;
  }
  H5Sget_simple_extent_dims(space, dims, NULL);
  uint64_t count = 1;
  for (int i = 0; i < nd; i++) {
    count *= dims[i];
    if (count > ((uint64_t)1 << 34)) {
      s = nr_err_set(err, NR_ERR_INPUT, "HDF5 file '%s': dataset '%s' is too large", path, name);
      goto done;
    }
  }
  buf = malloc((count ? count : 1) * sizeof *buf);
  if (!buf) {
    s = nr_err_set(err, NR_ERR_NOMEM, "out of memory reading dataset '%s' of '%s'", name, path);
    goto done;
  }
  if (count && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    s = nr_err_set(err, NR_ERR_IO, "HDF5 file '%s': cannot read dataset '%s'", path, name);
    goto done;
  }
  *ndims = nd;
  *out = buf;
  buf = NULL;
done:
  free(buf);
  if (space >= 0) H5Sclose(space);
  if (type >= 0) H5Tclose(type);
  H5Dclose(ds);
  return s;
}

/* Loads file p->files[idx] (replacing the loaded one). The first load fixes the shapes. */
static nr_status load_file(nr_layer *l, h5_priv *p, int idx, bool first, nr_error *err) {
  const char *path = p->files[idx];
  FILE *probe = fopen(path, "rb");
  if (!probe)
    return nr_err_set(err, NR_ERR_IO, "cannot open HDF5 file '%s': %s", path, strerror(errno));
  fclose(probe);
  /* HDF5 prints its error stack by default; our messages say what went wrong. */
  H5E_auto2_t old_fn;
  void *old_data;
  H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  nr_status s = NR_OK;
  float **rows = calloc((size_t)l->ntop, sizeof *rows);
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  int64_t nrows = -1;
  if (!rows) {
    s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    goto done;
  }
  if (file < 0) {
    s = nr_err_set(err, NR_ERR_INPUT, "cannot open HDF5 file '%s': not an HDF5 file", path);
    goto done;
  }
  for (int i = 0; i < l->ntop; i++) {
    const char *name = l->param->top[i];
    hsize_t dims[H5_MAX_DIMS];
    int nd = 0;
    if ((s = read_dataset(file, path, name, &nd, dims, &rows[i], err)) != NR_OK) goto done;
    if (i == 0) nrows = (int64_t)dims[0];
    if ((int64_t)dims[0] != nrows) {
      s = nr_err_set(err, NR_ERR_INPUT, "HDF5 file '%s': dataset '%s' has %lld rows but '%s' "
                     "has %lld", path, name, (long long)dims[0], l->param->top[0],
                     (long long)nrows);
      goto done;
    }
    bool same = nd == p->ndims[i];
    for (int k = 1; same && k < nd; k++) same = (int64_t)dims[k] == p->dims[i][k];
    if (first) {
      p->ndims[i] = nd;
      p->row_size[i] = 1;
      for (int k = 1; k < nd; k++) p->row_size[i] *= (int64_t)(p->dims[i][k] = (int64_t)dims[k]);
    } else if (!same) {
      s = nr_err_set(err, NR_ERR_INPUT, "HDF5 file '%s': dataset '%s' has rows of another "
                     "shape than in '%s' (every file must agree)", path, name, p->files[0]);
      goto done;
    }
  }
  if (nrows < 1) {
    s = nr_err_set(err, NR_ERR_INPUT, "HDF5 file '%s' has no rows", path);
    goto done;
  }
  int64_t *perm = realloc(p->row_perm, (size_t)nrows * sizeof *perm);
  if (!perm) {
    s = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    goto done;
  }
  p->row_perm = perm;
  for (int64_t r = 0; r < nrows; r++) perm[r] = r;
  if (p->shuffle) shuffle_rows(&p->rng, perm, nrows);
  for (int i = 0; i < l->ntop; i++) {
    free(p->rows[i]);
    p->rows[i] = rows[i];
    rows[i] = NULL;
  }
  p->nrows = nrows;
done:
  if (rows)
    for (int i = 0; i < l->ntop; i++) free(rows[i]);
  free(rows);
  if (file >= 0) H5Fclose(file);
  H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
  return s;
}

static void h5_destroy(nr_layer *l) {
  h5_priv *p = l->priv;
  if (!p) return;
  for (int i = 0; i < p->nfiles; i++) free(p->files[i]);
  free(p->files);
  free(p->file_perm);
  free(p->row_perm);
  if (p->rows)
    for (int i = 0; i < l->ntop; i++) free(p->rows[i]);
  free(p->rows);
  free(p->row_size);
  free(p->dims);
  free(p->ndims);
  free(p);
  l->priv = NULL;
}

static nr_status h5_reshape(nr_layer *l, nr_error *err) {
  const h5_priv *p = l->priv;
  for (int i = 0; i < l->ntop; i++) {
    int64_t shape[H5_MAX_DIMS];
    shape[0] = p->batch_size;
    for (int k = 1; k < p->ndims[i]; k++) shape[k] = p->dims[i][k];
    NR_TRY(nr_blob_reshape(l->top[i], p->ndims[i], shape, err));
  }
  return NR_OK;
}

static nr_status h5_setup(nr_layer *l, nr_error *err) {
  static const Caffe__HDF5DataParameter defaults = CAFFE__HDF5_DATA_PARAMETER__INIT;
  const Caffe__HDF5DataParameter *hp =
      l->param->hdf5_data_param ? l->param->hdf5_data_param : &defaults;
  if (!hp->source || !*hp->source)
    return nr_err_set(err, NR_ERR_INPUT,
                      "hdf5_data_param.source is not set (a text file listing .h5 files)");
  if (hp->batch_size == 0)
    return nr_err_set(err, NR_ERR_INPUT, "hdf5_data_param.batch_size must be positive");
  if (hp->batch_size > (1u << 24))
    return nr_err_set(err, NR_ERR_INPUT, "hdf5_data_param.batch_size %u is absurd",
                      hp->batch_size);
  h5_priv *p = calloc(1, sizeof *p);
  if (!p) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = p; /* h5_destroy frees whatever is set */
  p->batch_size = (int)hp->batch_size;
  p->shuffle = hp->shuffle;
  nr_layer_seed_own_rng(l, &p->rng);
  p->rows = calloc((size_t)l->ntop, sizeof *p->rows);
  p->row_size = calloc((size_t)l->ntop, sizeof *p->row_size);
  p->dims = calloc((size_t)l->ntop, sizeof *p->dims);
  p->ndims = calloc((size_t)l->ntop, sizeof *p->ndims);
  if (!p->rows || !p->row_size || !p->dims || !p->ndims)
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  NR_TRY(read_list(p, hp->source, err));
  p->file_perm = malloc((size_t)p->nfiles * sizeof *p->file_perm);
  if (!p->file_perm) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  for (int i = 0; i < p->nfiles; i++) p->file_perm[i] = i;
  if (p->shuffle) shuffle_ints(&p->rng, p->file_perm, p->nfiles);
  NR_TRY(load_file(l, p, p->file_perm[0], true, err));
  return h5_reshape(l, err);
}

static nr_status next_row(nr_layer *l, h5_priv *p, nr_error *err);

/* Data-parallel training: this rank starts at row `rank` of the stream and takes every
 * count-th one (Caffe's DataLayer::Skip); the ranks together read each row once per pass. */
static nr_status h5_setup_sharded(nr_layer *l, nr_error *err) {
  NR_TRY(h5_setup(l, err));
  h5_priv *p = l->priv;
  p->stride = 1;
  if (l->ctx && l->ctx->solver_count > 1) {
    p->stride = l->ctx->solver_count;
    for (int i = 0; i < l->ctx->solver_rank; i++) NR_TRY(next_row(l, p, err));
  }
  return NR_OK;
}

/* Past the last row of the loaded file: the next file (or the first again), new row order. */
static nr_status next_row(nr_layer *l, h5_priv *p, nr_error *err) {
  if (++p->cur_row < p->nrows) return NR_OK;
  p->cur_row = 0;
  if (p->nfiles > 1) {
    if (++p->cur_file == p->nfiles) {
      p->cur_file = 0;
      if (p->shuffle) shuffle_ints(&p->rng, p->file_perm, p->nfiles);
    }
    return load_file(l, p, p->file_perm[p->cur_file], false, err); /* shuffles rows */
  }
  if (p->shuffle) shuffle_rows(&p->rng, p->row_perm, p->nrows);
  return NR_OK;
}

static nr_status h5_forward(nr_layer *l, nr_error *err) {
  h5_priv *p = l->priv;
  for (int b = 0; b < p->batch_size; b++) {
    const int64_t row = p->row_perm[p->cur_row];
    for (int i = 0; i < l->ntop; i++) {
      const int64_t n = p->row_size[i];
      memcpy(l->top[i]->data + b * n, p->rows[i] + row * n, (size_t)n * sizeof(float));
    }
    for (int k = 0; k < p->stride; k++) NR_TRY(next_row(l, p, err));
  }
  return NR_OK;
}

const nr_layer_type nr_layer_hdf5_data = {
    .name = "HDF5Data", .min_bottoms = 0, .max_bottoms = 0, .min_tops = 1, .max_tops = -1,
    .setup = h5_setup_sharded, .reshape = h5_reshape, .forward = h5_forward, .destroy = h5_destroy};
