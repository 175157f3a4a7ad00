/* blob.c: caffe._caffe.Blob — a net's blob seen from the caller's Python. `data` and `diff`
 * are float32 NumPy views over the engine's own memory (no copy either way), cached until
 * the blob moves or changes shape. Each view's base holds a reference on the blob's buffer
 * and on the runtime, so a view outlives a reshape that moved the blob, the net and the
 * solver (it then no longer shows the blob, as in Caffe, but never dangles). */
#include "ext.h"

#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL nr_ext_ARRAY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

void ext_rt_release_buf(ext_runtime *r, nr_buf *buf);

/* ---- BufRef: the base object of every view ---- */

typedef struct {
  PyObject_HEAD
  nr_buf *buf;
  ext_runtime *r;
} bufref;

static void bufref_dealloc(bufref *o) {
  if (o->buf) ext_rt_release_buf(o->r, o->buf);
  Py_XDECREF(o->r);
  PyObject_Free(o);
}

static PyTypeObject bufref_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caffe._caffe._BufRef",
    .tp_basicsize = sizeof(bufref),
    .tp_dealloc = (destructor)bufref_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "keeps a blob's memory alive for the NumPy views over it",
};

/* ---- Blob ---- */

typedef struct {
  PyObject_HEAD
  nr_blob *b;
  PyObject *owner;     /* keeps b alive */
  ext_runtime *r;
  PyObject *data, *diff;
  uint64_t data_gen, diff_gen;
} ext_blob;

PyObject *ext_blob_new(nr_blob *b, PyObject *owner, ext_runtime *r) {
  ext_blob *o = PyObject_GC_New(ext_blob, &ext_blob_type);
  if (!o) return NULL;
  o->b = b;
  o->owner = owner;
  Py_INCREF(owner);
  o->r = r;
  Py_INCREF(r);
  o->data = o->diff = NULL;
  PyObject_GC_Track(o);
  return (PyObject *)o;
}

/* A Blob keeps its owner (the net) alive, and a Python Net keeps its Blob objects: the
 * cycle is the collector's (tp_traverse / tp_clear). */
static int blob_traverse(ext_blob *o, visitproc visit, void *arg) {
  Py_VISIT(o->owner);
  Py_VISIT(o->data);
  Py_VISIT(o->diff);
  return 0;
}

static int blob_clear(ext_blob *o) {
  Py_CLEAR(o->data);
  Py_CLEAR(o->diff);
  Py_CLEAR(o->owner);
  return 0;
}

static void blob_dealloc(ext_blob *o) {
  PyObject_GC_UnTrack(o);
  blob_clear(o);
  Py_XDECREF(o->r);
  PyObject_GC_Del(o);
}

static PyObject *make_view(ext_blob *o, bool diff) {
  const nr_blob *b = o->b;
  npy_intp dims[NR_MAX_AXES];
  int nd = b->shaped ? b->num_axes : 1;
  for (int i = 0; i < nd; i++) dims[i] = b->shaped ? (npy_intp)b->shape[i] : 0;
  float *ptr = diff ? b->diff : b->data;
  if (!ptr || !b->buf) /* nothing allocated: an empty (or zero-sized) array */
    return PyArray_ZEROS(nd, dims, NPY_FLOAT32, 0);
  PyObject *a = PyArray_New(&PyArray_Type, nd, dims, NPY_FLOAT32, NULL, ptr, 0,
                            NPY_ARRAY_CARRAY, NULL);
  if (!a) return NULL;
  bufref *ref = PyObject_New(bufref, &bufref_type);
  if (!ref) {
    Py_DECREF(a);
    return NULL;
  }
  ref->buf = nr_buf_retain(b->buf);
  ref->r = o->r;
  Py_INCREF(o->r);
  if (PyArray_SetBaseObject((PyArrayObject *)a, (PyObject *)ref) < 0) { /* steals ref */
    Py_DECREF(a);
    return NULL;
  }
  return a;
}

static PyObject *view(ext_blob *o, bool diff) {
  PyObject **slot = diff ? &o->diff : &o->data;
  uint64_t *gen = diff ? &o->diff_gen : &o->data_gen;
  if (!*slot || *gen != o->b->generation) {
    PyObject *v = make_view(o, diff);
    if (!v) return NULL;
    Py_XSETREF(*slot, v);
    *gen = o->b->generation;
  }
  Py_INCREF(*slot);
  return *slot;
}

static PyObject *blob_data(ext_blob *o, void *c) { return view(o, false); }
static PyObject *blob_diff(ext_blob *o, void *c) { return view(o, true); }

/* blob.data = value: copies (broadcasts) numbers into the blob, as the worker-side Blob. */
static int assign(ext_blob *o, PyObject *value, bool diff) {
  if (!value) {
    PyErr_SetString(PyExc_AttributeError, "cannot delete a blob's data or diff");
    return -1;
  }
  if (!o->b->shaped) {
    PyErr_SetString(PyExc_ValueError, "cannot assign to the blob: it has no shape yet");
    return -1;
  }
  PyObject *arr = PyArray_FROM_O(value); /* new */
  if (!arr) return -1;
  int t = PyArray_TYPE((PyArrayObject *)arr);
  if (!PyTypeNum_ISBOOL(t) && !PyTypeNum_ISINTEGER(t) && !PyTypeNum_ISFLOAT(t)) {
    PyErr_Format(PyExc_TypeError, "cannot assign a value of type %s to blob %s: expected "
                 "numbers", Py_TYPE(value)->tp_name, diff ? "diff" : "data");
    Py_DECREF(arr);
    return -1;
  }
  PyObject *v = view(o, diff);
  int rc = v ? PyArray_CopyInto((PyArrayObject *)v, (PyArrayObject *)arr) : -1;
  Py_XDECREF(v);
  Py_DECREF(arr);
  return rc;
}

static int blob_set_data(ext_blob *o, PyObject *v, void *c) { return assign(o, v, false); }
static int blob_set_diff(ext_blob *o, PyObject *v, void *c) { return assign(o, v, true); }

static PyObject *blob_shape(ext_blob *o, void *c) {
  const nr_blob *b = o->b;
  int nd = b->shaped ? b->num_axes : 0;
  PyObject *t = PyTuple_New(nd);
  for (int i = 0; t && i < nd; i++) PyTuple_SET_ITEM(t, i, PyLong_FromLongLong(b->shape[i]));
  return t;
}

static PyObject *blob_count(ext_blob *o, void *c) {
  return PyLong_FromLongLong(o->b->shaped ? o->b->count : 0);
}

static PyObject *legacy(ext_blob *o, int i) {
  if (o->b->num_axes > 4)
    return PyErr_Format(PyExc_ValueError, "blob has %d axes; num/channels/height/width are "
                        "defined for blobs of at most 4 axes", o->b->num_axes);
  return PyLong_FromLongLong(nr_blob_legacy_dim(o->b, i));
}
static PyObject *blob_num(ext_blob *o, void *c) { return legacy(o, 0); }
static PyObject *blob_channels(ext_blob *o, void *c) { return legacy(o, 1); }
static PyObject *blob_height(ext_blob *o, void *c) { return legacy(o, 2); }
static PyObject *blob_width(ext_blob *o, void *c) { return legacy(o, 3); }

static PyObject *blob_reshape(ext_blob *o, PyObject *args) {
  Py_ssize_t nd = PyTuple_GET_SIZE(args);
  if (nd > NR_MAX_AXES)
    return PyErr_Format(PyExc_ValueError, "Blob.reshape: %zd axes (at most %d)", nd,
                        NR_MAX_AXES);
  int64_t dims[NR_MAX_AXES];
  for (Py_ssize_t i = 0; i < nd; i++) {
    long long d = PyLong_AsLongLong(PyTuple_GET_ITEM(args, i));
    if (d == -1 && PyErr_Occurred()) return NULL;
    if (d < 0) return PyErr_Format(PyExc_ValueError, "Blob.reshape: negative dimension %lld "
                                   "at axis %zd", d, i);
    dims[i] = d;
  }
  static __thread nr_error err;
  PyThreadState *ts;
  if (ext_rt_enter(o->r, &ts) < 0) return NULL;
  nr_status s = nr_blob_reshape(o->b, (int)nd, dims, &err);
  ext_rt_leave(o->r, ts);
  if (s != NR_OK) return ext_raise(s, &err);
  Py_RETURN_NONE;
}

static PyObject *blob_repr(ext_blob *o) {
  char shape[512];
  return PyUnicode_FromFormat("<caffe.Blob '%s' %s>", o->b->name ? o->b->name : "",
                              nr_blob_shape_str(o->b, shape, sizeof shape));
}

static PyGetSetDef blob_getset[] = {
    {"data", (getter)blob_data, (setter)blob_set_data, "float32 view of the values", NULL},
    {"diff", (getter)blob_diff, (setter)blob_set_diff, "float32 view of the gradients", NULL},
    {"shape", (getter)blob_shape, NULL, "the shape (a tuple)", NULL},
    {"count", (getter)blob_count, NULL, "number of elements", NULL},
    {"num", (getter)blob_num, NULL, "axis 0 (legacy 4-axis name)", NULL},
    {"channels", (getter)blob_channels, NULL, "axis 1 (legacy)", NULL},
    {"height", (getter)blob_height, NULL, "axis 2 (legacy)", NULL},
    {"width", (getter)blob_width, NULL, "axis 3 (legacy)", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMethodDef blob_methods[] = {
    {"reshape", (PyCFunction)blob_reshape, METH_VARARGS,
     "reshape(*dims): new shape; memory grows if needed (views taken before then keep the "
     "old memory)"},
    {NULL, NULL, 0, NULL}};

PyTypeObject ext_blob_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caffe._caffe.Blob",
    .tp_basicsize = sizeof(ext_blob),
    .tp_dealloc = (destructor)blob_dealloc,
    .tp_repr = (reprfunc)blob_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)blob_traverse,
    .tp_clear = (inquiry)blob_clear,
    .tp_doc = "A blob of a net: data and diff are float32 NumPy views over the engine's "
              "memory.",
    .tp_getset = blob_getset,
    .tp_methods = blob_methods,
};

int ext_blob_ready(void) {
  return PyType_Ready(&bufref_type) < 0 || PyType_Ready(&ext_blob_type) < 0 ? -1 : 0;
}
