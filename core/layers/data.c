/* Data: batches of Datum records read from an LMDB (Caffe's DataLayer), transformed by
 * transform_param, computed ahead of the net by a prefetch thread.
 *
 * data_param: source (the LMDB directory), batch_size, backend (LMDB; LEVELDB is refused
 * with a hint to convert), prefetch (batches computed ahead, default 4), rand_skip (skip a
 * random number in [0, rand_skip) of records at the start). Tops: data (batch x C x H x W,
 * or the crop size), and label (batch) when there are two. The first record fixes C, H, W;
 * a later record of another shape is an error, as is an encoded (compressed image) record:
 * netrun decodes no images. At the end of the database the reader starts again from the
 * first record ("Restarting data prefetching from start.").
 *
 * Threading. setup opens the database, reads the first record and starts the prefetch
 * ring (core/prefetch.h): one thread fills `prefetch` batches ahead in order, forward takes
 * the oldest ("Waiting for data" when none is ready), a reader error is returned by the
 * forward that would have used the failed batch. destroy stops and joins the thread.
 *
 * Determinism: the thread draws mirror and crop offsets from the layer's own rng, seeded at
 * setup from the net's rng (without advancing it) and the layer index, and fills batches in
 * order, so the same seed gives the same batches whatever the timing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "binary.h"
#include "data_transformer.h"
#include "db_lmdb.h"
#include "layer.h"
#include "prefetch.h"

typedef struct data_priv {
  nr_lmdb_reader *db;
  nr_transformer *tf;
  nr_rng rng;
  char *source;
  FILE *log;
  int batch_size;
  int c, h, w;          /* record shape, from the first record */
  int64_t out[3];       /* one transformed item */
  size_t item_out;      /* floats per transformed item */
  bool has_label;
  int stride;           /* records per item taken: solver_count (1 in one process) */
  nr_prefetch *ring;
} data_priv;

static const Caffe__DataParameter data_default = CAFFE__DATA_PARAMETER__INIT;

/* Unpacks and checks one record. *out is new on success. */
static nr_status read_datum(data_priv *p, Caffe__Datum **out, nr_error *err) {
  const void *key, *val;
  size_t klen, vlen;
  nr_lmdb_reader_get(p->db, &key, &klen, &val, &vlen);
  int kl = klen > 64 ? 64 : (int)klen;
  Caffe__Datum *d = caffe__datum__unpack(NULL, vlen, val);
  if (!d) {
    /* Let the wire validator say where the bytes go wrong. */
    char name[256];
    snprintf(name, sizeof name, "record '%.*s'", kl, (const char *)key);
    if (nr_proto_validate_wire(val, vlen, &caffe__datum__descriptor, name, err) == NR_OK)
      nr_err_set(err, NR_ERR_INPUT, "%s is not a valid Datum", name);
    return nr_err_prefix(err, "LMDB '%s'", p->source);
  }
  nr_status s = NR_OK;
  if (d->encoded)
    s = nr_err_set(err, NR_ERR_INPUT,
                   "LMDB '%s' record '%.*s' is an encoded image (Datum.encoded); netrun does not "
                   "decode images: store raw pixels (convert_imageset without --encoded)",
                   p->source, kl, (const char *)key);
  else if (p->c && (d->channels != p->c || d->height != p->h || d->width != p->w))
    s = nr_err_set(err, NR_ERR_INPUT,
                   "LMDB '%s' record '%.*s' is %dx%dx%d, but the first record is %dx%dx%d; all "
                   "records must have one shape",
                   p->source, kl, (const char *)key, d->channels, d->height, d->width, p->c,
                   p->h, p->w);
  else if (d->channels <= 0 || d->height <= 0 || d->width <= 0 ||
           (int64_t)d->channels * d->height * d->width > ((int64_t)1 << 31))
    s = nr_err_set(err, NR_ERR_INPUT, "LMDB '%s' record '%.*s' has a bad shape %dx%dx%d",
                   p->source, kl, (const char *)key, d->channels, d->height, d->width);
  else {
    const size_t n = (size_t)d->channels * d->height * d->width;
    const size_t have = d->data.len ? d->data.len : d->n_float_data;
    if (have != n)
      s = nr_err_set(err, NR_ERR_INPUT,
                     "LMDB '%s' record '%.*s' holds %zu %s for its shape %dx%dx%d (%zu)",
                     p->source, kl, (const char *)key, have,
                     d->data.len ? "bytes" : "float_data values", d->channels, d->height,
                     d->width, n);
  }
  if (s != NR_OK) {
    caffe__datum__free_unpacked(d, NULL);
    return s;
  }
  *out = d;
  return NR_OK;
}

/* Reads batch_size records into one batch, advancing (and wrapping) the cursor. On the
 * prefetch thread. */
static nr_status fill_batch(void *ctx, float *data, float *label, nr_error *err) {
  data_priv *p = ctx;
  for (int i = 0; i < p->batch_size; i++) {
    Caffe__Datum *d = NULL;
    NR_TRY(read_datum(p, &d, err));
    nr_transformer_apply(p->tf, d->data.len ? d->data.data : NULL,
                         d->data.len ? NULL : d->float_data, &p->rng,
                         data + (size_t)i * p->item_out);
    if (label) label[i] = (float)d->label;
    caffe__datum__free_unpacked(d, NULL);
    /* Item i of the stream belongs to rank i % stride: step over the other ranks' ones. */
    for (int k = 0; k < p->stride; k++) {
      bool wrapped;
      NR_TRY(nr_lmdb_reader_next(p->db, &wrapped, err));
      if (wrapped) fprintf(p->log, "Restarting data prefetching from start.\n");
    }
  }
  return NR_OK;
}

static void data_destroy(nr_layer *l) {
  data_priv *p = l->priv;
  if (!p) return;
  nr_prefetch_stop(p->ring);
  nr_lmdb_reader_close(p->db);
  nr_transformer_destroy(p->tf);
  free(p->source);
  free(p);
  l->priv = NULL;
}

static bool is_dir_with(const char *dir, const char *file) {
  char path[4096];
  struct stat st;
  if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path) return false;
  return stat(path, &st) == 0;
}

static nr_status data_setup(nr_layer *l, nr_error *err) {
  const Caffe__DataParameter *dp = l->param->data_param ? l->param->data_param : &data_default;
  if (!dp->source || !*dp->source)
    return nr_err_set(err, NR_ERR_INPUT, "data_param.source is not set (the LMDB to read)");
  if (dp->batch_size == 0)
    return nr_err_set(err, NR_ERR_INPUT, "data_param.batch_size must be positive");
  if (dp->batch_size > (1u << 24))
    return nr_err_set(err, NR_ERR_INPUT, "data_param.batch_size %u is absurd", dp->batch_size);
  const uint32_t prefetch = dp->has_prefetch ? dp->prefetch : 4;
  if (prefetch < 1 || prefetch > 1024)
    return nr_err_set(err, NR_ERR_INPUT, "data_param.prefetch %u: give 1 to 1024", prefetch);
  if (dp->backend == CAFFE__DATA_PARAMETER__DB__LEVELDB) {
    /* Caffe's default backend is LEVELDB; accept an unset backend that names an LMDB. */
    if (dp->has_backend || !is_dir_with(dp->source, "data.mdb"))
      return nr_err_set(err, NR_ERR_INPUT,
                        "data_param.backend LEVELDB (%s) is not supported: convert '%s' to "
                        "LMDB and set backend: LMDB",
                        dp->has_backend ? "given" : "Caffe's default", dp->source);
  }

  nr_status s;
  data_priv *p = calloc(1, sizeof *p);
  if (!p) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = p; /* from here on data_destroy frees whatever is set */
  p->log = l->ctx && l->ctx->log ? l->ctx->log : stderr; /* the net's log */
  p->batch_size = (int)dp->batch_size;
  p->has_label = l->ntop > 1;
  if (!(p->source = strdup(dp->source))) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  nr_layer_seed_own_rng(l, &p->rng);
  NR_TRY(nr_transformer_create(l->param->transform_param, l->phase, &p->tf, err));
  NR_TRY(nr_lmdb_reader_open(p->source, &p->db, err));

  /* The first record fixes the shapes (Caffe peeks at it without consuming it). */
  Caffe__Datum *first = NULL;
  NR_TRY(read_datum(p, &first, err));
  p->c = first->channels;
  p->h = first->height;
  p->w = first->width;
  caffe__datum__free_unpacked(first, NULL);
  s = nr_transformer_set_input(p->tf, p->c, p->h, p->w, p->out, err);
  if (s != NR_OK) return nr_err_prefix(err, "LMDB '%s'", p->source);
  p->item_out = (size_t)(p->out[0] * p->out[1] * p->out[2]);
  FILE *log = p->log;
  if (dp->has_scale || dp->mean_file || dp->has_crop_size || dp->has_mirror)
    fprintf(log, "Data layer '%s': data_param.scale/mean_file/crop_size/mirror are ignored "
            "(as in Caffe); put them in transform_param\n", l->name);

  if (dp->rand_skip) {
    uint64_t skip = nr_rng_below(&p->rng, dp->rand_skip);
    fprintf(log, "Skipping first %llu data points.\n", (unsigned long long)skip);
    for (uint64_t i = 0; i < skip; i++) {
      bool wrapped;
      NR_TRY(nr_lmdb_reader_next(p->db, &wrapped, err));
    }
  }

  /* Data-parallel training: this rank starts at item `rank` and takes every count-th one
   * (Caffe's DataLayer::Skip); the ranks together read each item once per pass. */
  p->stride = 1;
  if (l->ctx && l->ctx->solver_count > 1) {
    p->stride = l->ctx->solver_count;
    for (int i = 0; i < l->ctx->solver_rank; i++) {
      bool wrapped;
      NR_TRY(nr_lmdb_reader_next(p->db, &wrapped, err));
    }
  }

  NR_TRY(nr_layer_reshape_data_tops(l, p->batch_size, p->out[0], p->out[1], p->out[2], err));
  fprintf(log, "output data size: %d,%lld,%lld,%lld\n", p->batch_size, (long long)p->out[0],
          (long long)p->out[1], (long long)p->out[2]);

  return nr_prefetch_start((int)prefetch, (size_t)p->batch_size * p->item_out,
                           p->has_label ? (size_t)p->batch_size : 0, fill_batch, p, log,
                           &p->ring, err);
}

static nr_status data_reshape(nr_layer *l, nr_error *err) {
  const data_priv *p = l->priv;
  return nr_layer_reshape_data_tops(l, p->batch_size, p->out[0], p->out[1], p->out[2], err);
}

static nr_status data_forward(nr_layer *l, nr_error *err) {
  data_priv *p = l->priv;
  return nr_prefetch_take(p->ring, l->top[0]->data, p->has_label ? l->top[1]->data : NULL, err);
}

const nr_layer_type nr_layer_data = {
    .name = "Data", .min_bottoms = 0, .max_bottoms = 0, .min_tops = 1, .max_tops = 2,
    .setup = data_setup, .reshape = data_reshape, .forward = data_forward,
    .destroy = data_destroy};
