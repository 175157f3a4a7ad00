/* layer_fixture.h: the fixture of the layer tests (tests/layers/<family>, tests/filler): one
 * standalone layer built from the body of a prototxt `layer { }`, with its own bottoms, tops,
 * rng and ctx, and the checks they share (shapes, gradients). */
#ifndef NR_LAYER_FIXTURE_H
#define NR_LAYER_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "gradcheck.h"
#include "layer.h"
#include "nr_test.h"
#include "rng.h"
#include "textformat.h"

#define LF_MAX 6

typedef struct lf {
  Caffe__LayerParameter *param;
  nr_rng rng;
  nr_layer_ctx ctx;
  nr_blob *bottom[LF_MAX], *top[LF_MAX];
  int nb, nt;
  nr_layer *l;
  nr_error err;
} lf;

static inline void lf_free(lf *f) {
  if (!f) return;
  nr_layer_destroy(f->l);
  for (int i = 0; i < LF_MAX; i++) {
    nr_blob_destroy(f->bottom[i]);
    if (f->top[i] != f->bottom[i]) nr_blob_destroy(f->top[i]);
  }
  nr_text_free((ProtobufCMessage *)f->param);
  free(f);
}

/* New fixture: nb bottoms, nt tops (unshaped); in_place = top[i] is bottom[i] for every i.
 * The layer is created, not set up. NULL (and the message on stderr) on failure. */
static inline lf *lf_make(const char *prototxt, int nb, int nt, int in_place) {
  lf *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  ProtobufCMessage *m = NULL;
  if (nr_text_parse(prototxt, strlen(prototxt), "<test>", &caffe__layer_parameter__descriptor,
                    &m, &f->err) != NR_OK)
    goto fail;
  f->param = (Caffe__LayerParameter *)m;
  nr_rng_seed(&f->rng, 1701);
  f->ctx.rng = &f->rng;
  f->nb = nb;
  f->nt = nt;
  for (int i = 0; i < nb; i++)
    if (nr_blob_create("bottom", NULL, &f->bottom[i], &f->err) != NR_OK) goto fail;
  for (int i = 0; i < nt; i++) {
    if (in_place && i < nb)
      f->top[i] = f->bottom[i];
    else if (nr_blob_create("top", NULL, &f->top[i], &f->err) != NR_OK)
      goto fail;
  }
  if (nr_layer_create(f->param, &f->ctx, f->bottom, nb, f->top, nt, &f->l, &f->err) != NR_OK)
    goto fail;
  return f;
fail:
  fprintf(stderr, "lf_make: %s\n", f->err.msg);
  lf_free(f);
  return NULL;
}
#define lf_new(proto, nb, nt) lf_make((proto), (nb), (nt), 0)

static inline void lf_shape_(nr_blob *b, int n, const int64_t *d) {
  nr_error e;
  if (nr_blob_reshape(b, n, d, &e) != NR_OK) fprintf(stderr, "lf_shape: %s\n", e.msg);
}
#define LF_SHAPE(b, ...)                                      \
  do {                                                        \
    const int64_t d_[] = {__VA_ARGS__};                       \
    lf_shape_((b), (int)(sizeof d_ / sizeof d_[0]), d_);      \
  } while (0)

static inline void lf_set(nr_blob *b, const float *v) {
  memcpy(b->data, v, (size_t)b->count * sizeof *v);
}

#define LF_SETUP(f) CHECK_OK(nr_layer_setup((f)->l, &(f)->err), &(f)->err)
#define LF_FORWARD(f) CHECK_OK((f)->l->type->forward((f)->l, &(f)->err), &(f)->err)
#define LF_BACKWARD(f) CHECK_OK((f)->l->type->backward((f)->l, &(f)->err), &(f)->err)
/* Setup must fail with status st and a message containing `text`. */
#define LF_SETUP_FAILS(f, st, text)                                \
  do {                                                             \
    nr_status s__ = nr_layer_setup((f)->l, &(f)->err);             \
    CHECK_INT_EQ(s__, (st));                                       \
    CHECK_CONTAINS((f)->err.msg, (text));                          \
  } while (0)

#define LF_GRAD(f, step, thr, check_bottom, mode)                                        \
  do {                                                                                   \
    nr_gradcheck_config c_ = nr_gradcheck_defaults((step), (thr));                       \
    CHECK_OK(nr_gradcheck_layer((f)->l, &c_, (check_bottom), (mode), &(f)->err), &(f)->err); \
  } while (0)
#define LF_GRAD_KINK(f, step, thr, kr, check_bottom, mode)                               \
  do {                                                                                   \
    nr_gradcheck_config c_ = nr_gradcheck_defaults((step), (thr));                       \
    c_.kink_range = (kr);                                                                \
    CHECK_OK(nr_gradcheck_layer((f)->l, &c_, (check_bottom), (mode), &(f)->err), &(f)->err); \
  } while (0)

#define LF_GRAD_CFG(f, cfg, check_bottom, mode) \
  CHECK_OK(nr_gradcheck_layer((f)->l, (cfg), (check_bottom), (mode), &(f)->err), &(f)->err)

/* Max |a - b| over n floats (NaN anywhere: infinity). */
static inline double lf_maxdiff(const float *a, const float *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (d > m || d != d) m = d != d ? INFINITY : d;
  }
  return m;
}

#define CHECK_SHAPE(b, ...)                                                  \
  do {                                                                       \
    const int64_t s_[] = {__VA_ARGS__};                                      \
    const int n_ = (int)(sizeof s_ / sizeof s_[0]);                          \
    CHECK_INT_EQ((b)->num_axes, n_);                                         \
    for (int i_ = 0; i_ < n_; i_++) CHECK_INT_EQ((b)->shape[i_], s_[i_]);    \
  } while (0)

#endif
