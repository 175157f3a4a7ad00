#include "runner.h"

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "locate.h"

#ifndef NR_PYTHON_EXE
#define NR_PYTHON_EXE "/usr/bin/python3"
#endif

struct nr_rt_layer {
  PyObject *obj;     /* new: the user's layer object */
  PyObject *bottom;  /* new: list of Blob */
  PyObject *top;     /* new: list of Blob */
  PyObject *blobs;   /* new: BlobVec of params */
  PyObject *prop;    /* new: list of bools, reused for every backward */
  PyObject *handle;  /* new: capsule naming this layer (Blob._layer) */
  PyObject *winfo;   /* new: caffe.WorkerInfo of a prefetched data layer, or None */
  void *hl;          /* host's handle */
};

static struct {
  nr_rt_host host;
  PyObject *dirty;       /* new: _netrun.dirty, Blobs reshaped by Python since last take */
  PyObject *create_fn;   /* new: caffe._runtime.create_layer */
  PyObject *describe_fn; /* new: caffe._runtime.describe */
  PyObject *names[4];    /* new: interned method names */
  PyObject *s_nr_set, *s_kind, *s_idx, *s_shape, *s_dirty, *s_layer;
  PyObject *blob_type;   /* new: caffe._blob.Blob */
  PyObject *caffe_mod;   /* new: the caffe package (its _worker_info is set per call) */
  PyObject *s_winfo;     /* new: interned "_worker_info" */
  PyObject *cur_winfo;   /* borrowed: what caffe._worker_info holds now (kept alive by it) */
} rt;

/* ---------- errors ---------- */

void nr_rt_err_clear(nr_rt_err *e) {
  free(e->type);
  free(e->msg);
  free(e->tb);
  e->type = e->msg = e->tb = NULL;
}

void nr_rt_err_set(nr_rt_err *e, const char *type, const char *msg) {
  nr_rt_err_clear(e);
  e->type = strdup(type);
  e->msg = strdup(msg);
}

static char *utf8_dup(PyObject *s) { /* s borrowed; NULL-safe */
  if (!s || !PyUnicode_Check(s)) return NULL;
  const char *c = PyUnicode_AsUTF8(s);
  if (!c) {
    PyErr_Clear();
    return NULL;
  }
  return strdup(c);
}

/* Takes the pending Python exception into e (never PyErr_Print: it would exit on
 * SystemExit). Python 3.11: PyErr_Fetch + PyErr_NormalizeException. */
static void capture(nr_rt_err *e) {
  PyObject *t = NULL, *v = NULL, *tb = NULL; /* new (owned after Fetch) */
  nr_rt_err_clear(e);
  PyErr_Fetch(&t, &v, &tb);
  if (!t) {
    nr_rt_err_set(e, "SystemError", "error without a Python exception");
    return;
  }
  PyErr_NormalizeException(&t, &v, &tb);
  if (tb && v) PyException_SetTraceback(v, tb);
  PyObject *r = rt.describe_fn ? PyObject_CallFunctionObjArgs(rt.describe_fn, t,
                                                             v ? v : Py_None,
                                                             tb ? tb : Py_None, NULL)
                               : NULL; /* new */
  if (r && PyTuple_Check(r) && PyTuple_GET_SIZE(r) == 3) {
    e->type = utf8_dup(PyTuple_GET_ITEM(r, 0));
    e->msg = utf8_dup(PyTuple_GET_ITEM(r, 1));
    e->tb = utf8_dup(PyTuple_GET_ITEM(r, 2));
  } else {
    PyErr_Clear();
    e->type = strdup(PyExceptionClass_Check(t) ? PyExceptionClass_Name(t) : "Exception");
    PyObject *s = v ? PyObject_Str(v) : NULL; /* new */
    if (!s) PyErr_Clear();
    e->msg = s ? utf8_dup(s) : strdup("(exception could not be formatted)");
    Py_XDECREF(s);
  }
  Py_XDECREF(r);
  Py_XDECREF(t);
  Py_XDECREF(v);
  Py_XDECREF(tb);
  if (!e->type) e->type = strdup("Exception");
  if (!e->msg) e->msg = strdup("");
}

/* ---------- the mapping type ---------- */

typedef struct {
  PyObject_HEAD
  void *ptr;
  size_t size;
  bool owned;
} Mapping;

static void mapping_dealloc(PyObject *self) {
  Mapping *m = (Mapping *)self;
  if (m->owned && m->ptr) munmap(m->ptr, m->size);
  Py_TYPE(self)->tp_free(self);
}

static PyTypeObject MappingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_netrun.Mapping",
    .tp_basicsize = sizeof(Mapping),
    .tp_dealloc = mapping_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A range of netrun blob memory that NumPy views keep alive.",
};

PyObject *nr_rt_mapping_new(void *ptr, size_t size, bool owned) {
  Mapping *m = PyObject_New(Mapping, &MappingType);
  if (!m) return NULL;
  m->ptr = ptr;
  m->size = size;
  m->owned = owned;
  return (PyObject *)m;
}

size_t nr_rt_mapping_size(PyObject *map) { return ((Mapping *)map)->size; }

/* ---------- the _netrun module ---------- */

static int dims_from(PyObject *seq, int *nd, int64_t *dims) { /* seq borrowed */
  PyObject *t = PySequence_Fast(seq, "dims must be a sequence"); /* new */
  if (!t) return -1;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(t);
  if (n > 32) {
    Py_DECREF(t);
    PyErr_Format(PyExc_ValueError, "%zd axes (at most 32 allowed)", n);
    return -1;
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    long long d = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(t, i));
    if (d == -1 && PyErr_Occurred()) {
      Py_DECREF(t);
      return -1;
    }
    dims[i] = d;
  }
  *nd = (int)n;
  Py_DECREF(t);
  return 0;
}

/* view(mapping, byte_offset, shape) -> float32 ndarray over the mapping, base = mapping. */
static PyObject *mod_view(PyObject *self, PyObject *args) {
  PyObject *mo, *shape;
  Py_ssize_t off;
  if (!PyArg_ParseTuple(args, "O!nO", &MappingType, &mo, &off, &shape)) return NULL;
  Mapping *m = (Mapping *)mo;
  int nd = 0;
  int64_t d64[32];
  if (dims_from(shape, &nd, d64) < 0) return NULL;
  npy_intp dims[32];
  size_t count = 1, bytes = 0;
  bool big = false;
  for (int i = 0; i < nd; i++) {
    dims[i] = (npy_intp)d64[i];
    big |= d64[i] < 0 || __builtin_mul_overflow(count, (size_t)d64[i], &count);
  }
  big |= __builtin_mul_overflow(count, sizeof(float), &bytes);
  if (big || off < 0 || (size_t)off > m->size || bytes > m->size - (size_t)off) {
    PyErr_Format(PyExc_RuntimeError,
                 "netrun: view of %zu floats at %zd exceeds mapping of %zu bytes", count, off,
                 m->size);
    return NULL;
  }
  PyObject *a = PyArray_SimpleNewFromData(nd, dims, NPY_FLOAT32, (char *)m->ptr + off); /* new */
  if (!a) return NULL;
  Py_INCREF(mo);
  if (PyArray_SetBaseObject((PyArrayObject *)a, mo) < 0) { /* steals mo, even on failure */
    Py_DECREF(a);
    return NULL;
  }
  return a;
}

/* The layer a Blob belongs to. A Blob can outlive its layer (user code keeps it): the
 * capsule of a destroyed layer is renamed, and growing such a Blob is an error. */
static nr_rt_layer *layer_of(PyObject *cap) {
  if (PyCapsule_IsValid(cap, "netrun.layer")) return PyCapsule_GetPointer(cap, "netrun.layer");
  PyErr_SetString(PyExc_RuntimeError, "netrun: this blob's layer was released");
  return NULL;
}

static PyObject *raise_host(const char *msg, int exc) {
  PyErr_SetString(exc == 1 ? PyExc_MemoryError : exc == 2 ? PyExc_RuntimeError : PyExc_ValueError,
                  msg);
  return NULL;
}

/* grow(layer, kind, idx, dims) -> (mapping, capacity) */
static PyObject *mod_grow(PyObject *self, PyObject *args) {
  PyObject *cap, *shape;
  int kind, idx;
  if (!PyArg_ParseTuple(args, "OiiO", &cap, &kind, &idx, &shape)) return NULL;
  nr_rt_layer *L = layer_of(cap);
  if (!L) return NULL;
  int nd;
  int64_t dims[32];
  if (dims_from(shape, &nd, dims) < 0) return NULL;
  PyObject *map = NULL; /* new on success */
  int64_t c = 0;
  char msg[2048];
  int exc = 0;
  if (rt.host.grow(rt.host.ctx, L->hl, kind, idx, nd, dims, &map, &c, msg, sizeof msg, &exc))
    return raise_host(msg, exc);
  return Py_BuildValue("(NL)", map, (long long)c); /* N steals map */
}

/* add_param(layer, dims) -> (mapping, capacity) */
static PyObject *mod_add_param(PyObject *self, PyObject *args) {
  PyObject *cap, *shape;
  if (!PyArg_ParseTuple(args, "OO", &cap, &shape)) return NULL;
  nr_rt_layer *L = layer_of(cap);
  if (!L) return NULL;
  int nd;
  int64_t dims[32];
  if (dims_from(shape, &nd, dims) < 0) return NULL;
  PyObject *map = NULL;
  int64_t c = 0;
  char msg[2048];
  int exc = 0;
  if (rt.host.add_param(rt.host.ctx, L->hl, nd, dims, &map, &c, msg, sizeof msg, &exc))
    return raise_host(msg, exc);
  return Py_BuildValue("(NL)", map, (long long)c);
}

static PyMethodDef mod_methods[] = {
    {"view", mod_view, METH_VARARGS, "view(mapping, byte_offset, shape) -> float32 ndarray"},
    {"grow", mod_grow, METH_VARARGS, "grow(layer, kind, idx, dims) -> (mapping, capacity)"},
    {"add_param", mod_add_param, METH_VARARGS, "add_param(layer, dims) -> (mapping, capacity)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef mod_def = {PyModuleDef_HEAD_INIT, "_netrun",
                                     "netrun's runtime hooks for the caffe package.", -1,
                                     mod_methods, NULL, NULL, NULL, NULL};

static PyObject *init_netrun_module(void) {
  if (PyType_Ready(&MappingType) < 0) return NULL;
  PyObject *m = PyModule_Create(&mod_def); /* new */
  if (!m) return NULL;
  Py_INCREF(&MappingType);
  if (PyModule_AddObject(m, "Mapping", (PyObject *)&MappingType) < 0) { /* steals on success */
    Py_DECREF(&MappingType);
    Py_DECREF(m);
    return NULL;
  }
  PyObject *d = PyList_New(0); /* new */
  if (!d || PyModule_AddObject(m, "dirty", d) < 0) { /* steals on success */
    Py_XDECREF(d);
    Py_DECREF(m);
    return NULL;
  }
  return m;
}

/* ---------- init ---------- */

static int numpy_init(void) {
  import_array1(-1);
  return 0;
}

static int finish_init(PyObject *netrun, const char *pkg_dir, const char *layer_types,
                       nr_rt_err *e);

#ifndef NR_PYTHON_PKG_DIR
#define NR_PYTHON_PKG_DIR ""
#endif
#ifndef NR_PYTHON_PKG_DIR_INSTALL
#define NR_PYTHON_PKG_DIR_INSTALL ""
#endif
#define NR_CAFFE_INIT "/caffe/__init__.py"

void nr_rt_pkg_dir(char *out, size_t len) {
  const char *env = getenv("NETRUN_PYTHON_DIR");
  char env_init[4096];
  snprintf(env_init, sizeof env_init, "%s" NR_CAFFE_INIT, env ? env : "");
  const char *const where[] = {env && *env ? env_init : NULL,
                               "$LIB/python" NR_CAFFE_INIT,
                               "$LIB/../lib/netrun/python" NR_CAFFE_INIT,
                               NR_PYTHON_PKG_DIR NR_CAFFE_INIT,
                               NR_PYTHON_PKG_DIR_INSTALL NR_CAFFE_INIT};
  char *found = nr__locate(where, (int)(sizeof where / sizeof where[0]), R_OK);
  if (found) {
    found[strlen(found) - strlen(NR_CAFFE_INIT)] = '\0';
    char *clean = realpath(found, NULL); /* bin/../lib/netrun/python -> lib/netrun/python */
    snprintf(out, len, "%s", clean ? clean : found);
    free(clean);
    free(found);
  } else {
    snprintf(out, len, "%s", NR_PYTHON_PKG_DIR_INSTALL);
  }
}

int nr_rt_init(const nr_rt_host *host, const char *pkg_dir, const char *layer_types,
               nr_rt_err *e) {
  rt.host = *host;
  if (PyImport_AppendInittab("_netrun", init_netrun_module) < 0) {
    nr_rt_err_set(e, "RuntimeError", "cannot register the _netrun module");
    return -1;
  }
  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.install_signal_handlers = 0; /* Ctrl-C belongs to the core */
  config.parse_argv = 0;
  /* Debian's interpreter, so sys.prefix finds its stdlib and dist-packages (numpy), and
   * multiprocessing/subprocess in user code start python3, not this process. */
  PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, NR_PYTHON_EXE);
  if (!PyStatus_Exception(st))
    st = PyConfig_SetBytesString(&config, &config.executable, NR_PYTHON_EXE);
  if (!PyStatus_Exception(st)) st = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(st)) {
    char buf[512];
    snprintf(buf, sizeof buf, "cannot initialize Python: %s%s%s",
             st.func ? st.func : "", st.func ? ": " : "", st.err_msg ? st.err_msg : "");
    nr_rt_err_set(e, "RuntimeError", buf);
    return -1;
  }
  PyObject *netrun = PyImport_ImportModule("_netrun"); /* new */
  if (!netrun || numpy_init() < 0) {
    capture(e);
    Py_XDECREF(netrun);
    return -1;
  }
  int rc = finish_init(netrun, pkg_dir, layer_types, e);
  Py_DECREF(netrun);
  return rc;
}

int nr_rt_attach(const nr_rt_host *host, const char *layer_types, nr_rt_err *e) {
  rt.host = *host;
  PyObject *netrun = init_netrun_module(); /* new */
  PyObject *modules = PySys_GetObject("modules"); /* borrowed */
  PyObject *blob = NULL;
  int rc = -1;
  if (!netrun || !modules || numpy_init() < 0 ||
      PyDict_SetItemString(modules, "_netrun", netrun) < 0)
    goto out;
  /* caffe._blob was imported before _netrun existed in this process (as None): give it */
  if (!(blob = PyImport_ImportModule("caffe._blob")) ||
      PyObject_SetAttrString(blob, "_netrun", netrun) < 0)
    goto out;
  rc = finish_init(netrun, NULL, layer_types, e);
out:
  if (rc < 0 && PyErr_Occurred()) capture(e);
  Py_XDECREF(blob);
  Py_XDECREF(netrun);
  return rc;
}

/* What nr_rt_init and nr_rt_attach share once _netrun exists: the caffe package's runtime
 * (caffe._runtime.init sets sys.path and marks a worker; only when pkg_dir is given), the
 * functions and names the runner calls. */
static int finish_init(PyObject *netrun, const char *pkg_dir, const char *layer_types,
                       nr_rt_err *e) {
  PyObject *runtime = NULL, *blobmod = NULL, *r = NULL; /* new */
  rt.dirty = PyObject_GetAttrString(netrun, "dirty");
  if (!rt.dirty) goto fail;
  /* caffe lives in pkg_dir; put it first so a pycaffe on PYTHONPATH does not shadow it. */
  if (pkg_dir) {
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    PyObject *p = PyUnicode_FromString(pkg_dir); /* new */
    if (!path || !p || PyList_Insert(path, 0, p) < 0) {
      Py_XDECREF(p);
      goto fail;
    }
    Py_DECREF(p);
  }
  runtime = PyImport_ImportModule("caffe._runtime");
  if (!runtime) goto fail;
  rt.describe_fn = PyObject_GetAttrString(runtime, "describe");
  rt.create_fn = PyObject_GetAttrString(runtime, "create_layer");
  if (!rt.describe_fn || !rt.create_fn) goto fail;
  r = pkg_dir ? PyObject_CallMethod(runtime, "init", "ss", pkg_dir, layer_types ? layer_types : "")
              : (Py_INCREF(Py_None), Py_None);
  if (!r) goto fail;
  blobmod = PyImport_ImportModule("caffe._blob");
  if (!blobmod) goto fail;
  rt.blob_type = PyObject_GetAttrString(blobmod, "Blob");
  if (!rt.blob_type) goto fail;
  static const char *const mn[4] = {"setup", "reshape", "forward", "backward"};
  for (int i = 0; i < 4; i++)
    if (!(rt.names[i] = PyUnicode_InternFromString(mn[i]))) goto fail;
  if (!(rt.caffe_mod = PyImport_ImportModule("caffe"))) goto fail;
  rt.cur_winfo = Py_None;
  if (!(rt.s_winfo = PyUnicode_InternFromString("_worker_info")) ||
      !(rt.s_nr_set = PyUnicode_InternFromString("_nr_set")) ||
      !(rt.s_kind = PyUnicode_InternFromString("_kind")) ||
      !(rt.s_idx = PyUnicode_InternFromString("_idx")) ||
      !(rt.s_shape = PyUnicode_InternFromString("_shape")) ||
      !(rt.s_dirty = PyUnicode_InternFromString("_dirty")) ||
      !(rt.s_layer = PyUnicode_InternFromString("_layer")))
    goto fail;
  Py_DECREF(r);
  Py_DECREF(runtime);
  Py_DECREF(blobmod);
  return 0;
fail:
  capture(e);
  Py_XDECREF(r);
  Py_XDECREF(runtime);
  Py_XDECREF(blobmod);
  return -1;
}

void nr_rt_shutdown(void) {
  /* Python is not finalized (NumPy and user threads do not survive Py_FinalizeEx
   * reliably); the process is about to exit or keeps the interpreter for its life. */
}

/* ---------- layers ---------- */

nr_rt_layer *nr_rt_layer_create(const nr_rt_layer_info *in, void *hl, nr_rt_err *e) {
  nr_rt_layer *L = calloc(1, sizeof *L);
  PyObject *aliases = NULL, *r = NULL; /* new */
  if (!L) {
    nr_rt_err_set(e, "MemoryError", "out of memory creating a layer");
    return NULL;
  }
  L->hl = hl;
  L->handle = PyCapsule_New(L, "netrun.layer", NULL);
  aliases = PyList_New(in->ntop);
  if (!L->handle || !aliases) goto fail;
  for (int i = 0; i < in->ntop; i++)
    PyList_SET_ITEM(aliases, i, PyLong_FromLong(in->aliases ? in->aliases[i] : -1)); /* steals */
  r = PyObject_CallFunction(rt.create_fn, "OsssssiiiOiiL", L->handle, in->name ? in->name : "",
                            in->module ? in->module : "", in->cls ? in->cls : "",
                            in->param_str ? in->param_str : "",
                            in->source_dir ? in->source_dir : "", in->phase, in->nbottom,
                            in->ntop, aliases, in->replica, in->nreplicas, in->first_batch);
  rt.cur_winfo = NULL; /* create_layer set caffe._worker_info: the next call sets it again */
  if (!r) goto fail;
  if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 5) {
    PyErr_SetString(PyExc_RuntimeError, "caffe._runtime.create_layer returned garbage");
    goto fail;
  }
  L->obj = PyTuple_GET_ITEM(r, 0);
  L->bottom = PyTuple_GET_ITEM(r, 1);
  L->top = PyTuple_GET_ITEM(r, 2);
  L->blobs = PyTuple_GET_ITEM(r, 3);
  L->winfo = PyTuple_GET_ITEM(r, 4);
  Py_INCREF(L->winfo);
  Py_INCREF(L->obj);
  Py_INCREF(L->bottom);
  Py_INCREF(L->top);
  Py_INCREF(L->blobs);
  L->prop = PyList_New(in->nbottom);
  if (!L->prop) goto fail;
  for (int i = 0; i < in->nbottom; i++) {
    Py_INCREF(Py_True);
    PyList_SET_ITEM(L->prop, i, Py_True); /* steals */
  }
  Py_DECREF(r);
  Py_DECREF(aliases);
  return L;
fail:
  capture(e);
  Py_XDECREF(r);
  Py_XDECREF(aliases);
  nr_rt_layer_destroy(L);
  return NULL;
}

void nr_rt_layer_destroy(nr_rt_layer *L) {
  if (!L) return;
  if (L->handle) PyCapsule_SetName(L->handle, "netrun.layer (released)"); /* see layer_of */
  Py_XDECREF(L->obj);
  Py_XDECREF(L->bottom);
  Py_XDECREF(L->top);
  Py_XDECREF(L->blobs);
  Py_XDECREF(L->prop);
  Py_XDECREF(L->handle);
  Py_XDECREF(L->winfo);
  free(L);
}

int nr_rt_set_blob(nr_rt_layer *L, int kind, int idx, PyObject *map, int64_t cap,
                   bool shaped, int nd, const int64_t *dims, nr_rt_err *e) {
  PyObject *list = kind == 0 ? L->bottom : kind == 1 ? L->top : L->blobs; /* borrowed */
  PyObject *blob = NULL, *shape = NULL, *r = NULL;                        /* new */
  Py_ssize_t n = PyList_GET_SIZE(list);
  if (idx < 0 || idx > n || (idx == n && kind != 2)) {
    PyErr_Format(PyExc_RuntimeError, "netrun: blob slot %d/%d out of range", kind, idx);
    goto fail;
  }
  if (idx == n) { /* a parameter the core has and Python does not (pre-loaded blobs) */
    blob = PyObject_CallFunction(rt.blob_type, "Oii", L->handle, kind, idx);
    if (!blob || PyList_Append(list, blob) < 0) goto fail;
  } else {
    blob = PyList_GET_ITEM(list, idx);
    Py_INCREF(blob);
  }
  shape = PyTuple_New(nd);
  if (!shape) goto fail;
  for (int i = 0; i < nd; i++) {
    PyObject *d = PyLong_FromLongLong(dims[i]);
    if (!d) goto fail;
    PyTuple_SET_ITEM(shape, i, d); /* steals */
  }
  PyObject *args[5] = {blob, map ? map : Py_None, NULL, shaped ? Py_True : Py_False, shape};
  args[2] = PyLong_FromLongLong(cap);
  if (!args[2]) goto fail;
  r = PyObject_VectorcallMethod(rt.s_nr_set, args, 5, NULL);
  Py_DECREF(args[2]);
  if (!r) goto fail;
  Py_DECREF(r);
  Py_DECREF(shape);
  Py_DECREF(blob);
  return 0;
fail:
  capture(e);
  Py_XDECREF(shape);
  Py_XDECREF(blob);
  return -1;
}

int nr_rt_call(nr_rt_layer *L, int m, int nprop, const uint8_t *prop, nr_rt_err *e) {
  PyObject *args[4]; /* borrowed; slot 0 free for PY_VECTORCALL_ARGUMENTS_OFFSET */
  /* caffe.get_worker_info() answers for the layer that runs now. Usually the same object
   * as last time (None for ordinary layers): a pointer comparison. */
  if (L->winfo && L->winfo != rt.cur_winfo) {
    if (PyObject_SetAttr(rt.caffe_mod, rt.s_winfo, L->winfo) < 0) goto fail;
    rt.cur_winfo = L->winfo;
  }
  args[0] = NULL;
  args[1] = L->obj;
  if (m == 3) {
    Py_ssize_t n = PyList_GET_SIZE(L->prop);
    for (Py_ssize_t i = 0; i < n; i++) {
      PyObject *want = (i < nprop && prop[i]) ? Py_True : Py_False;
      PyObject *old = PyList_GET_ITEM(L->prop, i);
      if (old != want) {
        Py_INCREF(want);
        PyList_SET_ITEM(L->prop, i, want); /* steals want */
        Py_DECREF(old);
      }
    }
    args[2] = L->top;
    args[3] = L->prop;
    /* backward(top, propagate_down, bottom) */
    PyObject *a4[5] = {NULL, L->obj, L->top, L->prop, L->bottom};
    PyObject *r = PyObject_VectorcallMethod(rt.names[m], a4 + 1,
                                            4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (!r) goto fail;
    Py_DECREF(r);
    return 0;
  }
  args[2] = L->bottom;
  args[3] = L->top;
  PyObject *r = PyObject_VectorcallMethod(rt.names[m], args + 1,
                                          3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
  if (!r) goto fail;
  Py_DECREF(r);
  return 0;
fail:
  capture(e);
  return -1;
}

int nr_rt_take_dirty(nr_rt_layer *L, nr_rt_dirty_fn fn, void *arg) {
  Py_ssize_t n = PyList_GET_SIZE(rt.dirty);
  if (n == 0) return 0;
  int reported = 0;
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *b = PyList_GET_ITEM(rt.dirty, i); /* borrowed */
    PyObject_SetAttr(b, rt.s_dirty, Py_False);
    PyObject *owner = PyObject_GetAttr(b, rt.s_layer); /* new */
    PyObject *kind = PyObject_GetAttr(b, rt.s_kind);   /* new */
    PyObject *idx = PyObject_GetAttr(b, rt.s_idx);     /* new */
    PyObject *shape = PyObject_GetAttr(b, rt.s_shape); /* new */
    if (owner == L->handle && kind && idx && shape && PyTuple_Check(shape)) {
      int64_t dims[32];
      int nd = (int)PyTuple_GET_SIZE(shape);
      for (int k = 0; k < nd && k < 32; k++)
        dims[k] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, k));
      fn(arg, (int)PyLong_AsLong(kind), (int)PyLong_AsLong(idx), nd > 32 ? 32 : nd, dims);
      reported++;
    }
    Py_XDECREF(owner);
    Py_XDECREF(kind);
    Py_XDECREF(idx);
    Py_XDECREF(shape);
    PyErr_Clear();
  }
  PyList_SetSlice(rt.dirty, 0, n, NULL);
  return reported;
}
