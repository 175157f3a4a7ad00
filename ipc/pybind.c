/* pybind.c: the binding of a layer's Python object to the layer, shared by the worker pool
 * and the in-process library (see pybind.h). Calls no engine function directly. */
#include "pybind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nr_status nr__pybind_init(nr_pybind *s, nr_layer *l, nr_error *err) {
  *s = (nr_pybind){.l = l};
  s->bot = calloc((size_t)l->nbottom + 1, sizeof *s->bot);
  s->top = calloc((size_t)l->ntop + 1, sizeof *s->top);
  if (!s->bot || !s->top) {
    nr__pybind_free(s);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  }
  return NR_OK;
}

void nr__pybind_free(nr_pybind *s) {
  free(s->bot);
  free(s->top);
  free(s->par);
  s->bot = s->top = s->par = NULL;
  s->npar_cap = 0;
}

/* Room for n parameter slots (new ones unseen). */
static nr_status grow_par(nr_pybind *s, int n, nr_error *err) {
  if (n <= s->npar_cap) return NR_OK;
  int nc = n < 8 ? 8 : 2 * n;
  nr_pybind_slot *ns = realloc(s->par, (size_t)nc * sizeof *ns);
  if (!ns) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  memset(ns + s->npar_cap, 0, (size_t)(nc - s->npar_cap) * sizeof *ns);
  s->par = ns;
  s->npar_cap = nc;
  return NR_OK;
}

nr_status nr__pybind_fresh(nr_pybind *s, bool first, nr_error *err) {
  const nr_layer *l = s->l;
  for (int i = 0; i < l->nbottom; i++) s->bot[i].valid = false;
  for (int i = 0; i < l->ntop; i++) s->top[i].valid = false;
  for (int i = 0; i < s->npar_cap; i++) s->par[i].valid = false;
  if (first) s->npre = l->nblobs;
  s->bound = s->npre;
  return grow_par(s, l->nblobs, err);
}

static bool stale(const nr_pybind_slot *s, const nr_blob *b) {
  return !s->valid || s->b != b || s->gen != b->generation;
}

/* Slot (kind, idx), for idx below the count of that kind the Python side knows of. */
static nr_pybind_slot *slot_at(nr_pybind *s, int kind, int idx) {
  return kind == NR_SLOT_BOTTOM ? &s->bot[idx] : kind == NR_SLOT_TOP ? &s->top[idx]
                                                                    : &s->par[idx];
}

/* How many slots of kind the Python side knows of. */
static int nslots(const nr_pybind *s, int kind) {
  int npar = nr__pybind_npar(s);
  return kind == NR_SLOT_BOTTOM ? s->l->nbottom
         : kind == NR_SLOT_TOP  ? s->l->ntop
                                : (npar < s->npar_cap ? npar : s->npar_cap);
}

int nr__pybind_nstale(const nr_pybind *s) { /* every call: plain loops */
  const nr_layer *l = s->l;
  int n = 0, npar = nslots(s, NR_SLOT_PARAM);
  for (int i = 0; i < l->nbottom; i++) n += stale(&s->bot[i], l->bottom[i]);
  for (int i = 0; i < l->ntop; i++) n += stale(&s->top[i], l->top[i]);
  for (int i = 0; i < npar; i++) n += stale(&s->par[i], l->blobs[i]);
  return n;
}

nr_status nr__pybind_sync(nr_pybind *s, nr_pybind_visit fn, void *arg, nr_error *err) {
  for (int kind = NR_SLOT_BOTTOM; kind <= NR_SLOT_PARAM; kind++)
    for (int i = 0, k = nslots(s, kind); i < k; i++) {
      nr_pybind_slot *sl = slot_at(s, kind, i);
      nr_blob *b = nr__pybind_blob(s, kind, i);
      if (!stale(sl, b)) continue;
      NR_TRY(fn(arg, kind, i, b, err));
      *sl = (nr_pybind_slot){b, b->generation, true};
    }
  return NR_OK;
}

void nr__pybind_mark(nr_pybind *s, nr_blob *b) {
  const nr_layer *l = s->l;
  for (int i = 0; i < l->nbottom; i++)
    if (l->bottom[i] == b) s->bot[i] = (nr_pybind_slot){b, b->generation, true};
  for (int i = 0; i < l->ntop; i++)
    if (l->top[i] == b) s->top[i] = (nr_pybind_slot){b, b->generation, true};
  for (int i = 0; i < l->nblobs && i < s->npar_cap; i++)
    if (l->blobs[i] == b) s->par[i] = (nr_pybind_slot){b, b->generation, true};
}

nr_status nr__pybind_apply_shape(nr_pybind *s, const nr_pybind_engine *eng, int kind, int idx,
                                 int nd, const int64_t *dims, nr_error *err) {
  nr_blob *b = nr__pybind_blob(s, kind, idx);
  if (!b) return NR_OK;
  nr_buf *before = b->buf;
  NR_TRY(eng->blob_reshape(b, nd, dims, err));
  if (b->buf == before) nr__pybind_mark(s, b);
  return NR_OK;
}

nr_status nr__pybind_add_param(nr_pybind *s, const nr_pybind_engine *eng, int nd,
                               const int64_t *dims, nr_blob **out, nr_error *err) {
  nr_layer *l = s->l;
  nr_blob *b = NULL;
  if (s->bound < l->nblobs) {
    b = l->blobs[s->bound];
    bool same = b->num_axes == nd;
    for (int i = 0; same && i < nd; i++) same = b->shape[i] == dims[i];
    if (!same) {
      char sh[256];
      return nr_err_set(err, NR_ERR_INPUT,
                        "add_blob: parameter %d has shape %s in the net, Python asks for "
                        "%d axes", s->bound, eng->blob_shape_str(b, sh, sizeof sh), nd);
    }
  } else {
    NR_TRY(eng->layer_add_param(l, nd, dims, &b, err));
  }
  NR_TRY(grow_par(s, l->nblobs, err));
  s->bound++;
  *out = b;
  return NR_OK;
}

void nr__pybind_aliases(const nr_layer *l, int *out) {
  for (int i = 0; i < l->ntop; i++) {
    out[i] = -1;
    for (int j = 0; j < l->nbottom && out[i] < 0; j++)
      if (l->bottom[j] == l->top[i]) out[i] = j;
  }
}

void nr__pybind_describe(const nr_layer *l, nr_py_method m, char *buf, size_t len) {
  const Caffe__PythonParameter *pp = l->param ? l->param->python_param : NULL;
  char iter[48] = "";
  if (l->ctx && l->ctx->iter)
    snprintf(iter, sizeof iter, ", iteration %lld", (long long)*l->ctx->iter);
  snprintf(buf, len, "%s.%s.%s (layer '%s', phase %s%s)",
           pp && pp->module ? pp->module : "?", pp && pp->layer ? pp->layer : "?",
           nr_py_method_name(m), l->name ? l->name : "", l->phase == NR_TEST ? "TEST" : "TRAIN",
           iter);
}

nr_status nr__pybind_py_error(const nr_layer *l, nr_py_method m, const char *type,
                              const char *msg, const char *tb, nr_error *err) {
  char desc[1024];
  nr__pybind_describe(l, m, desc, sizeof desc);
  if (!tb) tb = "";
  size_t tl = strlen(tb);
  return nr_err_set(err, NR_ERR_PYTHON, "%s raised %s: %s%s%.*s", desc,
                    type && *type ? type : "Exception", msg ? msg : "", tl ? "\n" : "",
                    (int)(tl > 12000 ? 12000 : tl), tl > 12000 ? tb + tl - 12000 : tb);
}
