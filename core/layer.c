#include "layer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NR_LAYER(sym) extern const nr_layer_type sym;
#include "layers/layer_list.h"
#undef NR_LAYER

const nr_layer_type *const nr_layer_types[] = {
#define NR_LAYER(sym) &sym,
#include "layers/layer_list.h"
#undef NR_LAYER
    NULL};

const nr_layer_type *nr_layer_type_find(const char *name) {
  if (!name) return NULL;
  for (int i = 0; nr_layer_types[i]; i++)
    if (strcmp(nr_layer_types[i]->name, name) == 0) return nr_layer_types[i];
  return NULL;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void nr_layer_seed_own_rng(const nr_layer *l, nr_rng *rng) {
  nr_rng copy = {{0x9e3779b97f4a7c15ull, 1, 2, 3}};
  if (l->ctx && l->ctx->rng) copy = *l->ctx->rng;
  nr_rng_seed(rng, nr_rng_next(&copy) + 0x9e3779b97f4a7c15ull * (uint64_t)(l->index + 1));
}

nr_status nr_layer_reshape_data_tops(nr_layer *l, int64_t n, int64_t c, int64_t h, int64_t w,
                                     nr_error *err) {
  NR_TRY(nr_blob_reshape4(l->top[0], n, c, h, w, err));
  return l->ntop > 1 ? nr_blob_reshape(l->top[1], 1, &n, err) : NR_OK;
}

void nr_layer_type_list(char *buf, size_t len) {
  const char *names[256];
  int n = 0;
  for (; n < 256 && nr_layer_types[n]; n++) names[n] = nr_layer_types[n]->name;
  qsort(names, (size_t)n, sizeof names[0], cmp_names);
  size_t off = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && off < len; i++)
    off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", names[i]);
}

nr_status nr_layer_add_param(nr_layer *l, int naxes, const int64_t *dims, nr_blob **out,
                             nr_error *err) {
  nr_blob **nb = realloc(l->blobs, (size_t)(l->nblobs + 1) * sizeof *nb);
  if (!nb) return nr_err_set(err, NR_ERR_NOMEM, "out of memory adding a parameter blob");
  l->blobs = nb;
  nr_blob *b = NULL;
  char name[64];
  snprintf(name, sizeof name, "param%d", l->nblobs);
  NR_TRY(nr_blob_create(name, l->ctx ? l->ctx->alloc : NULL, &b, err));
  nr_status s = nr_blob_reshape(b, naxes, dims, err);
  if (s != NR_OK) {
    nr_blob_destroy(b);
    return s;
  }
  l->blobs[l->nblobs++] = b;
  if (out) *out = b;
  return NR_OK;
}

nr_status nr_layer_create(const Caffe__LayerParameter *param, const nr_layer_ctx *ctx,
                          nr_blob **bottom, int nbottom, nr_blob **top, int ntop,
                          nr_layer **out, nr_error *err) {
  const nr_layer_type *t = nr_layer_type_find(param->type);
  if (!t) {
    char known[4096];
    nr_layer_type_list(known, sizeof known);
    return nr_err_set(err, NR_ERR_INPUT, "unknown layer type '%s' (known types: %s)",
                      param->type ? param->type : "", known);
  }
  nr_layer *l = calloc(1, sizeof *l);
  if (!l) goto nomem;
  l->type = t;
  l->param = param;
  l->name = param->name ? param->name : "";
  l->ctx = ctx;
  l->phase = param->has_phase ? (int)param->phase : NR_TRAIN;
  l->nbottom = nbottom;
  l->ntop = ntop;
  l->bottom = calloc((size_t)nbottom + 1, sizeof *l->bottom);
  l->top = calloc((size_t)ntop + 1, sizeof *l->top);
  l->prop_down = calloc((size_t)nbottom + 1, sizeof *l->prop_down);
  if (!l->bottom || !l->top || !l->prop_down) goto nomem;
  for (int i = 0; i < nbottom; i++) l->bottom[i] = bottom[i];
  for (int i = 0; i < ntop; i++) l->top[i] = top[i];
  *out = l;
  return NR_OK;
nomem:
  nr_layer_destroy(l);
  return nr_err_set(err, NR_ERR_NOMEM, "out of memory creating layer");
}

void nr_layer_destroy(nr_layer *l) {
  if (!l) return;
  if (l->type && l->type->destroy) l->type->destroy(l);
  for (int i = 0; i < l->nblobs; i++) nr_blob_destroy(l->blobs[i]);
  free(l->blobs);
  free(l->bottom);
  free(l->top);
  free(l->prop_down);
  free(l);
}

static nr_status check_count(const char *what, int n, int lo, int hi, nr_error *err) {
  if ((lo >= 0 && n < lo) || (hi >= 0 && n > hi)) {
    if (lo == hi)
      return nr_err_set(err, NR_ERR_INPUT, "takes %d %s blob%s, got %d", lo, what,
                        lo == 1 ? "" : "s", n);
    if (hi < 0)
      return nr_err_set(err, NR_ERR_INPUT, "takes at least %d %s blobs, got %d", lo, what, n);
    return nr_err_set(err, NR_ERR_INPUT, "takes %d to %d %s blobs, got %d", lo, hi, what, n);
  }
  return NR_OK;
}

nr_status nr_layer_setup(nr_layer *l, nr_error *err) {
  const nr_layer_type *t = l->type;
  NR_TRY(check_count("bottom", l->nbottom, t->min_bottoms, t->max_bottoms, err));
  NR_TRY(check_count("top", l->ntop, t->min_tops, t->max_tops, err));
  NR_TRY(t->setup ? t->setup(l, err) : NR_OK);
  NR_TRY(t->reshape ? t->reshape(l, err) : NR_OK);
  return NR_OK;
}
