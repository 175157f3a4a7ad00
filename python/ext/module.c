/* module.c: caffe._caffe, the module: its types, exceptions (raised by errors.c), seeds
 * and the log. */
#include "ext.h"

#include <stdatomic.h>

#define PY_ARRAY_UNIQUE_SYMBOL nr_ext_ARRAY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include "glog.h"
#include "inproc_abi.h"

const nr_inproc_so *nr_inproc_so_create(void); /* worker/inproc.c, compiled in */
int ext_blob_ready(void);
extern unsigned long ext_main_thread;

/* ---- seeds ---- */

static _Atomic uint64_t seed_next; /* 0: from the clock */

uint64_t ext_next_seed(void) {
  uint64_t s = atomic_load(&seed_next);
  if (!s) return 0;
  /* each net of a seeded process gets the next value: repeatable, yet two nets differ */
  return atomic_fetch_add(&seed_next, 0x9e3779b97f4a7c15ull);
}

static PyObject *set_random_seed(PyObject *m, PyObject *arg) {
  unsigned long long s = PyLong_AsUnsignedLongLongMask(arg);
  if (PyErr_Occurred()) return NULL;
  atomic_store(&seed_next, s ? s : 1);
  Py_RETURN_NONE;
}

/* ---- the log: netrun train's lines, with glog's prefix, on stderr ---- */

FILE *ext_log(void) {
  static FILE *log;
  if (!log && !(log = nr_glog_open(2, -1))) return stderr;
  return log;
}

static PyObject *set_net_class(PyObject *m, PyObject *cls) {
  if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &ext_net_type))
    return PyErr_Format(PyExc_TypeError, "expected a subclass of caffe._caffe.Net");
  Py_INCREF(cls);
  Py_XSETREF(ext_net_class, cls);
  Py_RETURN_NONE;
}

static PyObject *layer_type_list(PyObject *m, PyObject *unused) {
  PyObject *l = PyList_New(0);
  for (int i = 0; l && nr_layer_types[i]; i++) {
    PyObject *s = PyUnicode_FromString(nr_layer_types[i]->name);
    if (!s || PyList_Append(l, s) < 0) Py_CLEAR(l);
    Py_XDECREF(s);
  }
  return l;
}

static PyMethodDef methods[] = {
    {"set_random_seed", set_random_seed, METH_O,
     "seed every net and solver made from now on (solvers whose random_seed is unset)"},
    {"_set_net_class", set_net_class, METH_O, "the class of solver.net / test_nets"},
    {"layer_type_list", layer_type_list, METH_NOARGS, "every layer type the engine knows"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "caffe._caffe",
                                    "netrun's engine, driven from Python (pycaffe's C half)",
                                    -1, methods, NULL, NULL, NULL, NULL};

static int add_type(PyObject *m, const char *name, PyTypeObject *t) {
  if (PyType_Ready(t) < 0) return -1;
  Py_INCREF(t);
  if (PyModule_AddObject(m, name, (PyObject *)t) < 0) {
    Py_DECREF(t);
    return -1;
  }
  return 0;
}

static PyObject *new_error(PyObject *m, const char *name, PyObject *base, const char *doc) {
  char full[128];
  snprintf(full, sizeof full, "caffe.%s", name);
  PyObject *e = PyErr_NewExceptionWithDoc(full, doc, base, NULL);
  if (e && PyModule_AddObject(m, name, e) < 0) return NULL;
  Py_XINCREF(e);
  return e;
}

PyMODINIT_FUNC PyInit__caffe(void) {
  import_array();
  PyObject *m = PyModule_Create(&moddef);
  if (!m) return NULL;
  ext_main_thread = PyThread_get_thread_ident();
  {
    PyObject *threading = PyImport_ImportModule("threading");
    PyObject *mt = threading ? PyObject_CallMethod(threading, "main_thread", NULL) : NULL;
    PyObject *id = mt ? PyObject_GetAttrString(mt, "ident") : NULL;
    if (id) ext_main_thread = PyLong_AsUnsignedLong(id);
    Py_XDECREF(id);
    Py_XDECREF(mt);
    Py_XDECREF(threading);
    PyErr_Clear();
  }
  nr_inproc_use(nr_inproc_so_create()); /* py_workers=0: layers run in this interpreter */
  if (ext_blob_ready() < 0 || add_type(m, "Runtime", &ext_runtime_type) < 0 ||
      add_type(m, "Blob", &ext_blob_type) < 0 || add_type(m, "Layer", &ext_layer_type) < 0 ||
      add_type(m, "Net", &ext_net_type) < 0 || add_type(m, "Solver", &ext_solver_type) < 0)
    goto fail;
  if (!(ext_LayerError = new_error(m, "LayerError", PyExc_RuntimeError,
                                   "A Python layer failed: it raised, its worker died or hung. "
                                   "The message names the layer, its module.class.method, the "
                                   "phase and iteration, and carries the traceback or signal.")) ||
      !(ext_LayerRaised = new_error(m, "LayerRaised", ext_LayerError,
                                    "A Python layer raised an exception (its traceback is in "
                                    "the message).")) ||
      !(ext_WorkerError = new_error(m, "WorkerError", ext_LayerError,
                                    "A Python layer's worker process died (signal, exit) or "
                                    "hung past py_timeout; the caller's process is unharmed.")))
    goto fail;
  return m;
fail:
  Py_DECREF(m);
  return NULL;
}
