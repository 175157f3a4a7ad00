/* lb_util.h: a standalone-layer fixture for the layer tests in this folder: a
 * LayerParameter parsed from prototxt, bottoms and tops, an rng-carrying ctx, and the
 * layer created (not set up) over them. */
#ifndef LB_UTIL_H
#define LB_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "gradcheck.h"
#include "layer.h"
#include "nr_test.h"
#include "rng.h"
#include "textformat.h"

#define LB_MAX 6

typedef struct lb {
  Caffe__LayerParameter *param;
  nr_rng rng;
  nr_layer_ctx ctx;
  nr_blob *bottom[LB_MAX], *top[LB_MAX];
  int nb, nt;
  nr_layer *l;
  nr_error err;
} lb;

static void lb_free(lb *f) {
  if (!f) return;
  nr_layer_destroy(f->l);
  for (int i = 0; i < LB_MAX; i++) {
    nr_blob_destroy(f->bottom[i]);
    nr_blob_destroy(f->top[i]);
  }
  nr_text_free((ProtobufCMessage *)f->param);
  free(f);
}

/* New fixture for a layer given as prototxt (the body of a `layer { }`), with nb bottoms and
 * nt tops (all unshaped). NULL (and a message on stderr) on failure. */
static lb *lb_new(const char *prototxt, int nb, int nt) {
  lb *f = calloc(1, sizeof *f);
  ProtobufCMessage *m = NULL;
  if (nr_text_parse(prototxt, strlen(prototxt), "<test>", &caffe__layer_parameter__descriptor, &m,
                    &f->err) != NR_OK)
    goto fail;
  f->param = (Caffe__LayerParameter *)m;
  nr_rng_seed(&f->rng, 1701);
  f->ctx.rng = &f->rng;
  f->nb = nb;
  f->nt = nt;
  for (int i = 0; i < nb; i++)
    if (nr_blob_create("bottom", NULL, &f->bottom[i], &f->err) != NR_OK) goto fail;
  for (int i = 0; i < nt; i++)
    if (nr_blob_create("top", NULL, &f->top[i], &f->err) != NR_OK) goto fail;
  if (nr_layer_create(f->param, &f->ctx, f->bottom, nb, f->top, nt, &f->l, &f->err) != NR_OK)
    goto fail;
  return f;
fail:
  fprintf(stderr, "lb_new: %s\n", f->err.msg);
  lb_free(f);
  return NULL;
}

static void lb_shape(nr_blob *b, int n, const int64_t *d) {
  nr_error e;
  if (nr_blob_reshape(b, n, d, &e) != NR_OK) fprintf(stderr, "lb_shape: %s\n", e.msg);
}
#define LB_SHAPE(b, ...)                                              \
  do {                                                                \
    const int64_t d_[] = {__VA_ARGS__};                               \
    lb_shape((b), (int)(sizeof d_ / sizeof d_[0]), d_);               \
  } while (0)

/* Runs the gradient checker and fails the test case with its message. */
#define CHECK_GRAD(f, step, thr, check_bottom, mode)                                      \
  do {                                                                                    \
    nr_gradcheck_config c_ = nr_gradcheck_defaults((step), (thr));                        \
    CHECK_OK(nr_gradcheck_layer((f)->l, &c_, (check_bottom), (mode), &(f)->err), &(f)->err); \
  } while (0)
#define CHECK_GRAD_CFG(f, cfg, check_bottom, mode) \
  CHECK_OK(nr_gradcheck_layer((f)->l, (cfg), (check_bottom), (mode), &(f)->err), &(f)->err)

/* Max |a − b| over n floats. */
static inline double lb_maxdiff(const float *a, const float *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (d > m || d != d) m = d != d ? INFINITY : d;
  }
  return m;
}

#endif
