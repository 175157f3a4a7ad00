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
#include "pybind.h"
#include "runner.h"

/* Per Python layer, in nr_layer.priv. */
typedef struct ilayer {
  nr_pybind pb; /* what the object has seen of the layer's blobs */
  nr_rt_layer *L;
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

static int host_grow(void *ctx, void *hl, int kind, int idx, int nd, const int64_t *dims,
                     PyObject **map, int64_t *cap, char *msg, size_t msglen, int *exc) {
  ilayer *q = hl;
  nr_blob *b = nr__pybind_blob(&q->pb, kind, idx);
  nr_error e;
  if (!b) {
    snprintf(msg, msglen, "no blob %d/%d", kind, idx);
    *exc = 2;
    return -1;
  }
  nr_status s = G.host.engine.blob_reshape(b, nd, dims, &e);
  if (s != NR_OK) {
    snprintf(msg, msglen, "%s", e.msg);
    *exc = s == NR_ERR_NOMEM ? 1 : 0;
    return -1;
  }
  nr__pybind_mark(&q->pb, b);
  *map = map_of(b);
  *cap = b->buf ? b->buf->capacity : 0;
  return *map ? 0 : -1;
}

static int host_add_param(void *ctx, void *hl, int nd, const int64_t *dims, PyObject **map,
                          int64_t *cap, char *msg, size_t msglen, int *exc) {
  ilayer *q = hl;
  nr_blob *b = NULL;
  nr_error e;
  nr_status s = nr__pybind_add_param(&q->pb, &G.host.engine, nd, dims, &b, &e);
  if (s != NR_OK) {
    snprintf(msg, msglen, "%s", e.msg);
    *exc = s == NR_ERR_NOMEM ? 1 : 0;
    return -1;
  }
  nr__pybind_mark(&q->pb, b);
  *map = map_of(b);
  *cap = b->buf ? b->buf->capacity : 0;
  return *map ? 0 : -1;
}

static nr_status py_error(nr_layer *l, nr_py_method m, nr_rt_err *e, nr_error *err) {
  nr_status s = nr__pybind_py_error(l, m, e->type, e->msg, e->tb, err);
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
  if (d->st != NR_OK) return;
  d->st = nr__pybind_apply_shape(&d->q->pb, &G.host.engine, kind, idx, nd, dims, d->err);
}

typedef struct bind_ctx {
  ilayer *q;
  nr_rt_err *e;
} bind_ctx;

/* A slot the object has not seen as it is: give it the blob's memory and shape.
 * NR_ERR_PYTHON (with *e) or NR_ERR_NOMEM. */
static nr_status bind_blob(void *arg, int kind, int idx, nr_blob *b, nr_error *err) {
  bind_ctx *c = arg;
  PyObject *m = map_of(b); /* new */
  if (!m) return NR_ERR_NOMEM;
  int r = nr_rt_set_blob(c->q->L, kind, idx, m, b->buf ? b->buf->capacity : 0, b->shaped,
                         b->num_axes, b->shape, c->e);
  Py_DECREF(m);
  return r < 0 ? NR_ERR_PYTHON : NR_OK;
}

static void ilayer_free(ilayer *q) {
  if (!q) return;
  nr__pybind_free(&q->pb);
  free(q);
}

/* l's Python object (import, instantiate), at its first call (m, a setup). */
static nr_status ilayer_create(nr_layer *l, nr_py_method m, ilayer **out, nr_error *err) {
  int *aliases = NULL;
  ilayer *q = calloc(1, sizeof *q);
  if (!q || nr__pybind_init(&q->pb, l, err) != NR_OK ||
      nr__pybind_fresh(&q->pb, true, err) != NR_OK ||
      !(aliases = calloc((size_t)l->ntop + 1, sizeof *aliases))) {
    ilayer_free(q);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  }
  nr__pybind_aliases(l, aliases);
  const Caffe__PythonParameter *pp = l->param->python_param;
  nr_rt_layer_info info = {l->name, pp->module, pp->layer, pp->param_str,
                           l->ctx ? l->ctx->source_dir : NULL, l->phase, l->nbottom, l->ntop,
                           aliases, 0, 0, 0};
  nr_rt_err e = {0};
  q->L = nr_rt_layer_create(&info, q, &e);
  free(aliases);
  if (!q->L) {
    ilayer_free(q);
    return py_error(l, m, &e, err);
  }
  *out = q;
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
    if ((s = ilayer_create(l, m, &q, err)) != NR_OK) goto out;
    l->priv = q;
  }
  s = nr__pybind_sync(&q->pb, bind_blob, &(bind_ctx){q, &e}, err);
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
  ilayer_free(q);
  l->priv = NULL;
}

static nr_status so_create(const nr_inproc_host *h, nr_py_backend **out, nr_error *err) {
  if (h->abi != NR_INPROC_ABI)
    return nr_err_set(err, NR_ERR_INTERNAL, "libnetrun-pyinproc: ABI %d, netrun expects %d",
                      NR_INPROC_ABI, h->abi);
  if (!G.inited && Py_IsInitialized()) {
    /* compiled into the caller's own Python (caffe._caffe): attach to that interpreter; the
     * caller holds the GIL now and releases it around every engine call */
    G.host = *h;
    nr_rt_host host = {NULL, host_grow, host_add_param};
    nr_rt_err e = {0};
    if (nr_rt_attach(&host, h->layer_types, &e) < 0) {
      nr_status s = nr_err_set(err, NR_ERR_PYTHON, "cannot run Python layers in this "
                               "interpreter: %s: %s", e.type ? e.type : "", e.msg ? e.msg : "");
      nr_rt_err_clear(&e);
      return s;
    }
    G.inited = true;
  }
  if (!G.inited) {
    G.host = *h;
    /* netrun dlopen()ed us RTLD_LOCAL, so libpython's symbols are not global and NumPy's
     * extension modules could not resolve them: promote the already-loaded libpython. */
    Dl_info di;
    if (dladdr((void *)Py_InitializeFromConfig, &di) && di.dli_fname)
      dlopen(di.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    nr_rt_host host = {NULL, host_grow, host_add_param};
    nr_rt_err e = {0};
    char pkg_dir[4096];
    nr_rt_pkg_dir(pkg_dir, sizeof pkg_dir);
    if (nr_rt_init(&host, pkg_dir, h->layer_types, &e) < 0) {
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
