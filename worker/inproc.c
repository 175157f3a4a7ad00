/* inproc.c: libnetrun-pyinproc.so — Python layers inside the core process
 * (--py-workers 0): the pdb-friendly mode and the latency baseline. It runs the same
 * runner code as netrun-worker; blob views point straight at the blobs' memory (whatever
 * the allocator), so a view kept past a reshape that moved the blob dangles, as in Caffe.
 * The calling thread takes the GIL for each call; any thread may call, one at a time. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "inproc_abi.h"
#include "pydesc.h"
#include "runner.h"

#ifndef NR_PYTHON_PKG_DIR
#define NR_PYTHON_PKG_DIR ""
#endif

typedef struct islot {
  nr_blob *b;
  uint64_t gen;
  bool valid;
} islot;

typedef struct ilayer {
  nr_layer *l;
  nr_rt_layer *L;
  islot *bot, *top, *par;
  int npar_cap;
  int npre, bound;
} ilayer;

typedef struct ibackend {
  nr_py_backend be;
  nr_inproc_host host;
} ibackend;

static struct {
  bool inited;
  nr_inproc_host host;
  int users;
} G;

static PyObject *map_of(const nr_blob *b) { /* new, or None */
  if (!b->buf || !b->buf->base) Py_RETURN_NONE;
  return nr_rt_mapping_new(b->buf->base, (size_t)b->buf->capacity * 2 * sizeof(float), false);
}

static nr_blob *blob_of(ilayer *q, int kind, int idx) {
  nr_layer *l = q->l;
  if (kind == 0) return idx >= 0 && idx < l->nbottom ? l->bottom[idx] : NULL;
  if (kind == 1) return idx >= 0 && idx < l->ntop ? l->top[idx] : NULL;
  return idx >= 0 && idx < l->nblobs ? l->blobs[idx] : NULL;
}

static int grow_par(ilayer *q, int n) {
  if (n <= q->npar_cap) return 0;
  int nc = n < 8 ? 8 : 2 * n;
  islot *ns = realloc(q->par, (size_t)nc * sizeof *ns);
  if (!ns) return -1;
  memset(ns + q->npar_cap, 0, (size_t)(nc - q->npar_cap) * sizeof *ns);
  q->par = ns;
  q->npar_cap = nc;
  return 0;
}

static void mark_known(ilayer *q, nr_blob *b) {
  nr_layer *l = q->l;
  for (int i = 0; i < l->nbottom; i++)
    if (l->bottom[i] == b) q->bot[i] = (islot){b, b->generation, true};
  for (int i = 0; i < l->ntop; i++)
    if (l->top[i] == b) q->top[i] = (islot){b, b->generation, true};
  for (int i = 0; i < l->nblobs && i < q->npar_cap; i++)
    if (l->blobs[i] == b) q->par[i] = (islot){b, b->generation, true};
}

static int host_grow(void *ctx, void *hl, int kind, int idx, int nd, const int64_t *dims,
                     PyObject **map, int64_t *cap, char *msg, size_t msglen, int *exc) {
  ilayer *q = hl;
  nr_blob *b = blob_of(q, kind, idx);
  nr_error e;
  if (!b) {
    snprintf(msg, msglen, "no blob %d/%d", kind, idx);
    *exc = 2;
    return -1;
  }
  nr_status s = G.host.blob_reshape(b, nd, dims, &e);
  if (s != NR_OK) {
    snprintf(msg, msglen, "%s", e.msg);
    *exc = s == NR_ERR_NOMEM ? 1 : 0;
    return -1;
  }
  mark_known(q, b);
  *map = map_of(b);
  *cap = b->buf ? b->buf->capacity : 0;
  return *map ? 0 : -1;
}

static int host_add_param(void *ctx, void *hl, int nd, const int64_t *dims, PyObject **map,
                          int64_t *cap, char *msg, size_t msglen, int *exc) {
  ilayer *q = hl;
  nr_layer *l = q->l;
  nr_blob *b = NULL;
  nr_error e;
  if (q->bound < l->nblobs) {
    b = l->blobs[q->bound];
    bool same = b->num_axes == nd;
    for (int i = 0; same && i < nd; i++) same = b->shape[i] == dims[i];
    if (!same) {
      snprintf(msg, msglen, "add_blob: parameter %d of the net has another shape", q->bound);
      *exc = 0;
      return -1;
    }
  } else {
    nr_status s = G.host.layer_add_param(l, nd, dims, &b, &e);
    if (s != NR_OK) {
      snprintf(msg, msglen, "%s", e.msg);
      *exc = s == NR_ERR_NOMEM ? 1 : 0;
      return -1;
    }
  }
  if (grow_par(q, l->nblobs) < 0) {
    snprintf(msg, msglen, "out of memory");
    *exc = 1;
    return -1;
  }
  q->bound++;
  mark_known(q, b);
  *map = map_of(b);
  *cap = b->buf ? b->buf->capacity : 0;
  return *map ? 0 : -1;
}

static nr_status py_error(nr_layer *l, nr_py_method m, nr_rt_err *e, nr_error *err) {
  char desc[1024];
  nr__py_describe(l, (int)m, desc, sizeof desc);
  const char *tb = e->tb ? e->tb : "";
  size_t tl = strlen(tb);
  nr_status s = nr_err_set(err, NR_ERR_PYTHON, "%s raised %s: %s%s%.*s", desc,
                           e->type ? e->type : "Exception", e->msg ? e->msg : "",
                           tl ? "\n" : "", (int)(tl > 12000 ? 12000 : tl),
                           tl > 12000 ? tb + tl - 12000 : tb);
  nr_rt_err_clear(e);
  return s;
}

typedef struct dirty_ctx {
  ilayer *q;
  nr_status st;
  nr_error *err;
} dirty_ctx;

static void on_dirty(void *arg, int kind, int idx, int nd, const int64_t *dims) {
  dirty_ctx *d = arg;
  nr_blob *b = blob_of(d->q, kind, idx);
  if (!b || d->st != NR_OK) return;
  nr_buf *before = b->buf;
  d->st = G.host.blob_reshape(b, nd, dims, d->err);
  if (d->st == NR_OK && b->buf == before) mark_known(d->q, b);
}

static nr_status sync_slot(ilayer *q, int kind, int idx, islot *s, nr_blob *b, nr_rt_err *e) {
  if (s->valid && s->b == b && s->gen == b->generation) return NR_OK;
  PyObject *m = map_of(b); /* new */
  if (!m) return NR_ERR_NOMEM;
  int r = nr_rt_set_blob(q->L, kind, idx, m, b->buf ? b->buf->capacity : 0, b->shaped,
                         b->num_axes, b->shape, e);
  Py_DECREF(m);
  if (r < 0) return NR_ERR_PYTHON;
  *s = (islot){b, b->generation, true};
  return NR_OK;
}

static nr_status ip_call(void *ctx, nr_layer *l, nr_py_method m, nr_error *err) {
  ilayer *q = l->priv;
  nr_rt_err e = {0};
  nr_status s = NR_OK;
  PyGILState_STATE gs = PyGILState_Ensure();
  if (!q) {
    if (m != NR_PY_SETUP) {
      s = nr_err_set(err, NR_ERR_INTERNAL, "Python layer '%s' called before setup", l->name);
      goto out;
    }
    q = calloc(1, sizeof *q);
    if (q) {
      q->bot = calloc((size_t)l->nbottom + 1, sizeof *q->bot);
      q->top = calloc((size_t)l->ntop + 1, sizeof *q->top);
    }
    if (!q || !q->bot || !q->top || grow_par(q, l->nblobs) < 0) goto nomem;
    q->l = l;
    q->npre = q->bound = l->nblobs;
    int *aliases = calloc((size_t)l->ntop + 1, sizeof *aliases);
    if (!aliases) goto nomem;
    for (int i = 0; i < l->ntop; i++) {
      aliases[i] = -1;
      for (int j = 0; j < l->nbottom && aliases[i] < 0; j++)
        if (l->bottom[j] == l->top[i]) aliases[i] = j;
    }
    const Caffe__PythonParameter *pp = l->param->python_param;
    nr_rt_layer_info info = {l->name, pp->module, pp->layer, pp->param_str,
                             l->ctx ? l->ctx->source_dir : NULL, l->phase, l->nbottom, l->ntop,
                             aliases, 0, 0, 0};
    q->L = nr_rt_layer_create(&info, q, &e);
    free(aliases);
    if (!q->L) {
      s = py_error(l, m, &e, err);
      free(q->bot);
      free(q->top);
      free(q->par);
      free(q);
      goto out;
    }
    l->priv = q;
  }
  for (int i = 0; i < l->nbottom && s == NR_OK; i++)
    s = sync_slot(q, 0, i, &q->bot[i], l->bottom[i], &e);
  for (int i = 0; i < l->ntop && s == NR_OK; i++) s = sync_slot(q, 1, i, &q->top[i], l->top[i], &e);
  if (s == NR_OK && grow_par(q, l->nblobs) < 0) goto nomem;
  for (int i = 0; i < q->bound && i < l->nblobs && s == NR_OK; i++)
    s = sync_slot(q, 2, i, &q->par[i], l->blobs[i], &e);
  if (s == NR_ERR_NOMEM) goto nomem;
  if (s != NR_OK) {
    s = py_error(l, m, &e, err);
    goto out;
  }
  if (m == NR_PY_BACKWARD && l->nbottom > 0) {
    uint8_t *pd = malloc((size_t)l->nbottom);
    if (!pd) goto nomem;
    for (int i = 0; i < l->nbottom; i++) pd[i] = l->prop_down[i];
    int r = nr_rt_call(q->L, (int)m, l->nbottom, pd, &e);
    free(pd);
    if (r < 0) {
      nr_rt_take_dirty(q->L, on_dirty, &(dirty_ctx){q, NR_ERR_INTERNAL, NULL});
      s = py_error(l, m, &e, err);
      goto out;
    }
  } else if (nr_rt_call(q->L, (int)m, 0, NULL, &e) < 0) {
    nr_rt_take_dirty(q->L, on_dirty, &(dirty_ctx){q, NR_ERR_INTERNAL, NULL});
    s = py_error(l, m, &e, err);
    goto out;
  }
  dirty_ctx d = {q, NR_OK, err};
  nr_rt_take_dirty(q->L, on_dirty, &d);
  s = d.st;
out:
  PyGILState_Release(gs);
  return s;
nomem:
  PyGILState_Release(gs);
  return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
}

static void ip_release(void *ctx, nr_layer *l) {
  ilayer *q = l->priv;
  if (!q) return;
  PyGILState_STATE gs = PyGILState_Ensure();
  nr_rt_layer_destroy(q->L);
  PyGILState_Release(gs);
  free(q->bot);
  free(q->top);
  free(q->par);
  free(q);
  l->priv = NULL;
}

static nr_status so_create(const nr_inproc_host *h, nr_py_backend **out, nr_error *err) {
  if (h->abi != NR_INPROC_ABI)
    return nr_err_set(err, NR_ERR_INTERNAL, "libnetrun-pyinproc: ABI %d, netrun expects %d",
                      NR_INPROC_ABI, h->abi);
  if (!G.inited) {
    G.host = *h;
    /* netrun dlopen()ed us RTLD_LOCAL, so libpython's symbols are not global and NumPy's
     * extension modules could not resolve them: promote the already-loaded libpython. */
    Dl_info di;
    if (dladdr((void *)Py_InitializeFromConfig, &di) && di.dli_fname)
      dlopen(di.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    nr_rt_host host = {NULL, host_grow, host_add_param};
    nr_rt_err e = {0};
    const char *env = getenv("NETRUN_PYTHON_DIR");
    if (nr_rt_init(&host, env && *env ? env : NR_PYTHON_PKG_DIR, h->layer_types, &e) < 0) {
      nr_status s = nr_err_set(err, NR_ERR_PYTHON, "cannot start Python in process: %s: %s%s%s",
                               e.type ? e.type : "", e.msg ? e.msg : "", e.tb ? "\n" : "",
                               e.tb ? e.tb : "");
      nr_rt_err_clear(&e);
      return s;
    }
    PyEval_SaveThread(); /* callers take the GIL per call */
    G.inited = true;
  }
  ibackend *b = calloc(1, sizeof *b);
  if (!b) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  b->be = (nr_py_backend){b, ip_call, ip_release};
  b->host = *h;
  G.users++;
  *out = &b->be;
  return NR_OK;
}

static void so_destroy(nr_py_backend *be) {
  if (!be) return;
  G.users--;
  free(be->ctx);
}

__attribute__((visibility("default"))) const nr_inproc_so *nr_inproc_so_create(void);
const nr_inproc_so *nr_inproc_so_create(void) {
  static const nr_inproc_so so = {so_create, so_destroy};
  return &so;
}
