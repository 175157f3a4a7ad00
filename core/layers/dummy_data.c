/* DummyData: tops filled by fillers (data_filler: none = constant 0, one for every top, or
 * one per top) with shapes from `shape` (one, or one per top) or the legacy
 * num/channels/height/width lists. As Caffe, constant fillers fill once at setup, other
 * fillers refill at every forward (from l->ctx->rng). */
#include <string.h>

#include "filler.h"
#include "layer.h"

static const Caffe__DummyDataParameter dummy_default = CAFFE__DUMMY_DATA_PARAMETER__INIT;

static const Caffe__DummyDataParameter *params(const nr_layer *l) {
  return l->param->dummy_data_param ? l->param->dummy_data_param : &dummy_default;
}

/* The filler of top i (NULL = constant 0). */
static const Caffe__FillerParameter *filler_of(const Caffe__DummyDataParameter *p, int i) {
  if (p->n_data_filler == 0) return NULL;
  return p->data_filler[p->n_data_filler == 1 ? 0 : i];
}

static bool is_constant(const Caffe__FillerParameter *f) {
  return !f || !f->type || strcmp(f->type, "constant") == 0;
}

static nr_status check_n(const char *what, size_t n, int ntop, bool allow_zero, nr_error *err) {
  if ((n == 0 && allow_zero) || n == 1 || (int)n == ntop) return NR_OK;
  return nr_err_set(err, NR_ERR_INPUT,
                    "dummy_data_param has %d %s for %d tops: give one, or one per top",
                    (int)n, what, ntop);
}

static nr_status dummy_setup(nr_layer *l, nr_error *err) {
  const Caffe__DummyDataParameter *p = params(l);
  const int ntop = l->ntop;
  NR_TRY(check_n("data_filler", p->n_data_filler, ntop, true, err));
  const bool legacy = p->n_num || p->n_channels || p->n_height || p->n_width;
  if (legacy) {
    if (p->n_shape)
      return nr_err_set(err, NR_ERR_INPUT,
                        "dummy_data_param gives both shape and the legacy "
                        "num/channels/height/width; use one");
    NR_TRY(check_n("num", p->n_num, ntop, false, err));
    NR_TRY(check_n("channels", p->n_channels, ntop, false, err));
    NR_TRY(check_n("height", p->n_height, ntop, false, err));
    NR_TRY(check_n("width", p->n_width, ntop, false, err));
  } else {
    NR_TRY(check_n("shape", p->n_shape, ntop, false, err));
  }
  for (int i = 0; i < ntop; i++) {
    nr_blob *t = l->top[i];
    nr_status s;
    if (legacy) {
      s = nr_blob_reshape4(t, p->num[p->n_num == 1 ? 0 : i],
                           p->channels[p->n_channels == 1 ? 0 : i],
                           p->height[p->n_height == 1 ? 0 : i],
                           p->width[p->n_width == 1 ? 0 : i], err);
    } else {
      const Caffe__BlobShape *bs = p->shape[p->n_shape == 1 ? 0 : i];
      if (bs->n_dim > (size_t)NR_MAX_AXES)
        s = nr_err_set(err, NR_ERR_INPUT, "shape has %d dims (at most %d)", (int)bs->n_dim,
                       NR_MAX_AXES);
      else
        s = nr_blob_reshape(t, (int)bs->n_dim, bs->dim, err);
    }
    if (s != NR_OK) return nr_err_prefix(err, "top %d", i);
    const Caffe__FillerParameter *f = filler_of(p, i);
    /* Constant tops are filled here once; the rest are checked by a first fill. */
    s = nr_fill(t, f, l->ctx ? l->ctx->rng : NULL, err);
    if (s != NR_OK) return nr_err_prefix(err, "data_filler for top %d", i);
  }
  return NR_OK;
}

static nr_status dummy_forward(nr_layer *l, nr_error *err) {
  const Caffe__DummyDataParameter *p = params(l);
  for (int i = 0; i < l->ntop; i++) {
    const Caffe__FillerParameter *f = filler_of(p, i);
    if (is_constant(f)) continue;
    nr_status s = nr_fill(l->top[i], f, l->ctx ? l->ctx->rng : NULL, err);
    if (s != NR_OK) return nr_err_prefix(err, "data_filler for top %d", i);
  }
  return NR_OK;
}

const nr_layer_type nr_layer_dummy_data = {
    .name = "DummyData", .min_bottoms = 0, .max_bottoms = 0, .min_tops = 1, .max_tops = -1,
    .setup = dummy_setup, .forward = dummy_forward};
