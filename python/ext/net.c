/* net.c: caffe._caffe.Net and Layer — a net of the engine driven from Python. pycaffe.py
 * subclasses Net with the Pythonic surface (blobs, params, forward(**inputs), ...), as
 * Caffe's pycaffe.py does over its _caffe.Net. */
#include "ext.h"

#include <string.h>

#include "binary.h"
#include "load.h"

/* ---- Layer: a layer of a net (type, name, its parameter blobs) ---- */

typedef struct {
  PyObject_HEAD
  nr_layer *l;
  ext_net *net; /* keeps l alive */
  PyObject *blobs;
} ext_layer;

static int layer_traverse(ext_layer *o, visitproc visit, void *arg) {
  Py_VISIT(o->net);
  Py_VISIT(o->blobs);
  return 0;
}

static int layer_clear(ext_layer *o) {
  Py_CLEAR(o->blobs);
  Py_CLEAR(o->net);
  return 0;
}

static void layer_dealloc(ext_layer *o) {
  PyObject_GC_UnTrack(o);
  layer_clear(o);
  PyObject_GC_Del(o);
}

static PyObject *layer_blobs(ext_layer *o, void *c) {
  if (!o->blobs) {
    o->blobs = PyList_New(0);
    for (int i = 0; o->blobs && i < o->l->nblobs; i++) {
      PyObject *b = ext_blob_new(o->l->blobs[i], (PyObject *)o->net, o->net->r);
      if (!b || PyList_Append(o->blobs, b) < 0) {
        Py_XDECREF(b);
        Py_CLEAR(o->blobs);
        return NULL;
      }
      Py_DECREF(b);
    }
  }
  Py_XINCREF(o->blobs);
  return o->blobs;
}

static PyObject *layer_type(ext_layer *o, void *c) {
  return PyUnicode_FromString(o->l->type->name);
}

static PyObject *layer_name(ext_layer *o, void *c) { return PyUnicode_FromString(o->l->name); }

static PyGetSetDef layer_getset[] = {
    {"blobs", (getter)layer_blobs, NULL, "the layer's learnable parameter blobs", NULL},
    {"type", (getter)layer_type, NULL, "the layer's type string", NULL},
    {"name", (getter)layer_name, NULL, "the layer's name", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject ext_layer_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caffe._caffe.Layer",
    .tp_basicsize = sizeof(ext_layer),
    .tp_dealloc = (destructor)layer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)layer_traverse,
    .tp_clear = (inquiry)layer_clear,
    .tp_doc = "A layer of a net.",
    .tp_getset = layer_getset,
};

/* ---- Net ---- */

static int net_traverse(ext_net *o, visitproc visit, void *arg) {
  Py_VISIT(o->owner);
  Py_VISIT(o->blobs);
  Py_VISIT(o->layers);
  Py_VISIT(o->r);
  return 0;
}

static int net_clear(ext_net *o) {
  Py_CLEAR(o->blobs);
  Py_CLEAR(o->layers);
  return 0;
}

static void net_dealloc(ext_net *o) {
  PyObject_GC_UnTrack(o);
  if (o->weakrefs) PyObject_ClearWeakRefs((PyObject *)o);
  net_clear(o);
  if (o->net && !o->owner && o->r) ext_rt_destroy(o->r, o->net, NULL);
  Py_CLEAR(o->owner);
  Py_CLEAR(o->r);
  Py_TYPE(o)->tp_free((PyObject *)o);
}

static PyObject *net_py_new(PyTypeObject *t, PyObject *args, PyObject *kw) {
  ext_net *o = (ext_net *)t->tp_alloc(t, 0);
  return (PyObject *)o;
}

/* Net(runtime, model, phase, weights=None, level=0, stages=()) */
static int net_init(ext_net *o, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"runtime", "model", "phase", "weights", "level", "stages", NULL};
  ext_runtime *r;
  PyObject *model_obj, *weights_obj = Py_None, *stages_obj = Py_None;
  int phase, level = 0;
  if (o->net) {
    PyErr_SetString(PyExc_RuntimeError, "Net is already initialized");
    return -1;
  }
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O!O&i|OiO:Net", kwlist, &ext_runtime_type, &r,
                                   PyUnicode_FSConverter, &model_obj, &phase, &weights_obj,
                                   &level, &stages_obj))
    return -1;
  int rc = -1;
  PyObject *weights_b = NULL, *stages = NULL;
  const char **stage_v = NULL;
  Caffe__NetParameter *param = NULL;
  if (phase != NR_TRAIN && phase != NR_TEST) {
    PyErr_Format(PyExc_ValueError, "phase must be caffe.TRAIN (0) or caffe.TEST (1), not %d",
                 phase);
    goto out;
  }
  if (weights_obj != Py_None && !PyUnicode_FSConverter(weights_obj, &weights_b)) goto out;
  Py_ssize_t nst = 0;
  if (stages_obj != Py_None) {
    if (!(stages = PySequence_Fast(stages_obj, "stages must be a sequence of strings")))
      goto out;
    nst = PySequence_Fast_GET_SIZE(stages);
    stage_v = calloc((size_t)nst + 1, sizeof *stage_v);
    if (!stage_v) {
      PyErr_NoMemory();
      goto out;
    }
    for (Py_ssize_t i = 0; i < nst; i++) {
      PyObject *it = PySequence_Fast_GET_ITEM(stages, i);
      if (!(stage_v[i] = PyUnicode_Check(it) ? PyUnicode_AsUTF8(it) : NULL)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "stages must be strings");
        goto out;
      }
    }
  }
  const char *model = PyBytes_AS_STRING(model_obj);
  static __thread nr_error err;
  nr_status s;
  PyThreadState *ts;
  if (ext_rt_enter(r, &ts) < 0) goto out;
  s = nr_proto_load_net_text(model, &param, &err);
  if (s == NR_OK) {
    nr_net_opts no = {0};
    no.phase = phase;
    no.level = level;
    no.stages = stage_v;
    no.nstages = (int)nst;
    no.alloc = nr_runtime_allocator(r->rt);
    no.py = nr_runtime_backend(r->rt);
    no.seed = (uint64_t)ext_next_seed();
    no.interrupt = &ext_interrupted;
    char *dir = strdup(model);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash) *slash = '\0';
    no.source_dir = slash ? dir : ".";
    s = nr_net_create(param, &no, &o->net, &err);
    free(dir);
    if (s == NR_OK && weights_b)
      s = nr_net_load_weights(o->net, PyBytes_AS_STRING(weights_b), NULL, &err);
  }
  ext_rt_leave(r, ts);
  if (s != NR_OK) {
    if (o->net) {
      ext_rt_destroy(r, o->net, NULL);
      o->net = NULL;
    }
    ext_raise(s, &err);
    goto out;
  }
  o->r = r;
  Py_INCREF(r);
  rc = 0;
out:
  if (param) protobuf_c_message_free_unpacked(&param->base, NULL);
  free(stage_v);
  Py_XDECREF(stages);
  Py_XDECREF(weights_b);
  Py_DECREF(model_obj);
  return rc;
}

PyObject *ext_net_wrap(nr_net *n, PyObject *owner, ext_runtime *r) {
  PyObject *cls = ext_net_class ? ext_net_class : (PyObject *)&ext_net_type;
  PyObject *noargs = PyTuple_New(0);
  if (!noargs) return NULL;
  ext_net *o = (ext_net *)((PyTypeObject *)cls)->tp_new((PyTypeObject *)cls, noargs, NULL);
  Py_DECREF(noargs);
  if (!o) return NULL;
  o->net = n;
  o->owner = owner;
  Py_INCREF(owner);
  o->r = r;
  Py_INCREF(r);
  return (PyObject *)o;
}

static int ready(ext_net *o) {
  if (o->net) return 0;
  PyErr_SetString(PyExc_RuntimeError, "the Net was not initialized");
  return -1;
}

static int layer_arg(ext_net *o, PyObject *v, int dflt, int *out) {
  if (v == Py_None) {
    *out = dflt;
    return 0;
  }
  long i = PyLong_AsLong(v);
  if (i == -1 && PyErr_Occurred()) return -1;
  if (i < 0 || i >= o->net->nlayers) {
    PyErr_Format(PyExc_IndexError, "layer index %ld out of range (the net has %d layers)", i,
                 o->net->nlayers);
    return -1;
  }
  *out = (int)i;
  return 0;
}

/* _forward(start=None, end=None) -> loss: layers start..end (indices, inclusive). */
static PyObject *net_forward(ext_net *o, PyObject *args) {
  PyObject *sv = Py_None, *ev = Py_None;
  int start, end;
  if (ready(o) || !PyArg_ParseTuple(args, "|OO:_forward", &sv, &ev) ||
      layer_arg(o, sv, 0, &start) || layer_arg(o, ev, o->net->nlayers - 1, &end))
    return NULL;
  static __thread nr_error err;
  nr_status s = NR_OK;
  double loss = 0;
  PyThreadState *ts;
  if (ext_rt_enter(o->r, &ts) < 0) return NULL;
  for (int i = start; i <= end && s == NR_OK; i++) {
    float l = 0;
    if ((s = nr_net_forward_layer(o->net, i, &l, &err)) != NR_OK)
      nr_err_prefix(&err, "net '%s'", o->net->name);
    loss += l;
  }
  ext_rt_leave(o->r, ts);
  if (s != NR_OK) return ext_raise(s, &err);
  return PyFloat_FromDouble(loss);
}

/* _backward(start=None, end=None): layers start down to end (indices, inclusive). */
static PyObject *net_backward(ext_net *o, PyObject *args) {
  PyObject *sv = Py_None, *ev = Py_None;
  int start, end;
  if (ready(o) || !PyArg_ParseTuple(args, "|OO:_backward", &sv, &ev) ||
      layer_arg(o, sv, o->net->nlayers - 1, &start) || layer_arg(o, ev, 0, &end))
    return NULL;
  static __thread nr_error err;
  nr_status s = NR_OK;
  PyThreadState *ts;
  if (ext_rt_enter(o->r, &ts) < 0) return NULL;
  for (int i = start; i >= end && s == NR_OK; i--)
    if ((s = nr_net_backward_layer(o->net, i, &err)) != NR_OK)
      nr_err_prefix(&err, "net '%s'", o->net->name);
  ext_rt_leave(o->r, ts);
  if (s != NR_OK) return ext_raise(s, &err);
  Py_RETURN_NONE;
}

static PyObject *net_reshape(ext_net *o, PyObject *unused) {
  if (ready(o)) return NULL;
  static __thread nr_error err;
  PyThreadState *ts;
  if (ext_rt_enter(o->r, &ts) < 0) return NULL;
  nr_status s = nr_net_reshape(o->net, &err);
  ext_rt_leave(o->r, ts);
  if (s != NR_OK) return ext_raise(s, &err);
  Py_RETURN_NONE;
}

/* _memory_data_dims() -> (batch_size, channels, height, width) of the first layer. */
static PyObject *net_memory_data_dims(ext_net *o, PyObject *unused) {
  (void)unused;
  if (ready(o)) return NULL;
  static __thread nr_error err;
  int64_t d[4];
  if (nr_net_memory_data_dims(o->net, NULL, d, &err) != NR_OK)
    return ext_raise(NR_ERR_INPUT, &err);
  return Py_BuildValue("(LLLL)", (long long)d[0], (long long)d[1], (long long)d[2],
                       (long long)d[3]);
}

/* _set_input_arrays(data, labels): C-contiguous float32 buffers, checked by pycaffe.py
 * (which also keeps them referenced while the net may read them). */
static PyObject *net_set_input_arrays(ext_net *o, PyObject *args) {
  PyObject *data, *labels;
  if (ready(o) || !PyArg_ParseTuple(args, "OO:_set_input_arrays", &data, &labels)) return NULL;
  Py_buffer d, l;
  if (PyObject_GetBuffer(data, &d, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
  if (PyObject_GetBuffer(labels, &l, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
    PyBuffer_Release(&d);
    return NULL;
  }
  static __thread nr_error err;
  nr_status s = NR_OK;
  if (strcmp(d.format ? d.format : "B", "f") != 0 || strcmp(l.format ? l.format : "B", "f") != 0 ||
      d.ndim < 1 || l.ndim < 1)
    s = nr_err_set(&err, NR_ERR_INPUT, "data and labels must be float32 arrays");
  else {
    /* The engine reads n x C x H x W data and n labels: the buffers must hold that much
     * whoever calls (pycaffe.py checks shapes first; a direct call must not over-read). */
    int64_t dims[4], n = (int64_t)d.shape[0];
    s = nr_net_memory_data_dims(o->net, NULL, dims, &err);
    if (s == NR_OK && (d.len != (Py_ssize_t)(n * dims[1] * dims[2] * dims[3] * 4) ||
                       l.len != (Py_ssize_t)(n * 4)))
      s = nr_err_set(&err, NR_ERR_INPUT,
                     "data must hold %lld x %lld x %lld x %lld floats and labels %lld",
                     (long long)n, (long long)dims[1], (long long)dims[2], (long long)dims[3],
                     (long long)n);
    if (s == NR_OK)
      s = nr_net_set_input_arrays(o->net, NULL, d.buf, l.buf, n, &err);
  }
  PyBuffer_Release(&d);
  PyBuffer_Release(&l);
  if (s != NR_OK) return ext_raise(s, &err);
  Py_RETURN_NONE;
}

static PyObject *net_clear_param_diffs(ext_net *o, PyObject *unused) {
  if (ready(o)) return NULL;
  PyThreadState *ts;
  if (ext_rt_enter(o->r, &ts) < 0) return NULL;
  nr_net_clear_param_diffs(o->net);
  ext_rt_leave(o->r, ts);
  Py_RETURN_NONE;
}

static PyObject *net_copy_from(ext_net *o, PyObject *arg) {
  PyObject *path = NULL;
  if (ready(o) || !PyUnicode_FSConverter(arg, &path)) return NULL;
  static __thread nr_error err;
  PyThreadState *ts;
  if (ext_rt_enter(o->r, &ts) < 0) return NULL;
  nr_status s = nr_net_load_weights(o->net, PyBytes_AS_STRING(path), NULL, &err);
  ext_rt_leave(o->r, ts);
  Py_DECREF(path);
  if (s != NR_OK) return ext_raise(s, &err);
  Py_RETURN_NONE;
}

static PyObject *net_save(ext_net *o, PyObject *args) {
  PyObject *path = NULL;
  int diff = 0;
  if (ready(o) || !PyArg_ParseTuple(args, "O&|p:save", PyUnicode_FSConverter, &path, &diff))
    return NULL;
  static __thread nr_error err;
  PyThreadState *ts;
  if (ext_rt_enter(o->r, &ts) < 0) return NULL;
  Caffe__NetParameter *m = NULL;
  nr_status s = nr_net_to_proto(o->net, diff, &m, &err);
  if (s == NR_OK) s = nr_proto_save_binary(PyBytes_AS_STRING(path), &m->base, &err);
  if (m) protobuf_c_message_free_unpacked(&m->base, NULL);
  ext_rt_leave(o->r, ts);
  Py_DECREF(path);
  if (s != NR_OK) return ext_raise(s, &err);
  Py_RETURN_NONE;
}

static PyObject *net_share_with(ext_net *o, PyObject *arg) {
  if (ready(o)) return NULL;
  if (!PyObject_TypeCheck(arg, &ext_net_type) || !((ext_net *)arg)->net)
    return PyErr_Format(PyExc_TypeError, "share_with: expected a Net, not %s",
                        Py_TYPE(arg)->tp_name);
  ext_net *src = (ext_net *)arg;
  if (src->r != o->r)
    return PyErr_Format(PyExc_ValueError, "share_with: both nets must use the same runtime "
                        "(their parameters live in its memory)");
  static __thread nr_error err;
  PyThreadState *ts;
  if (ext_rt_enter(o->r, &ts) < 0) return NULL;
  nr_status s = nr_net_share_trained(o->net, src->net, &err);
  ext_rt_leave(o->r, ts);
  if (s != NR_OK) return ext_raise(s, &err);
  /* parameter Blob objects of this net now name shared buffers: drop cached views */
  Py_CLEAR(o->layers);
  Py_RETURN_NONE;
}

/* ---- structure ---- */

static PyObject *net_blobs(ext_net *o, void *c) {
  if (ready(o)) return NULL;
  if (!o->blobs) {
    PyObject *l = PyList_New(o->net->nblobs);
    for (int i = 0; l && i < o->net->nblobs; i++) {
      PyObject *b = ext_blob_new(o->net->blobs[i], (PyObject *)o, o->r);
      if (!b) Py_CLEAR(l);
      else PyList_SET_ITEM(l, i, b);
    }
    o->blobs = l;
  }
  Py_XINCREF(o->blobs);
  return o->blobs;
}

static PyObject *net_layers(ext_net *o, void *c) {
  if (ready(o)) return NULL;
  if (!o->layers) {
    PyObject *l = PyList_New(o->net->nlayers);
    for (int i = 0; l && i < o->net->nlayers; i++) {
      ext_layer *ly = PyObject_GC_New(ext_layer, &ext_layer_type);
      if (!ly) {
        Py_CLEAR(l);
        break;
      }
      ly->l = o->net->layers[i];
      ly->net = o;
      Py_INCREF(o);
      ly->blobs = NULL;
      PyObject_GC_Track(ly);
      PyList_SET_ITEM(l, i, (PyObject *)ly);
    }
    o->layers = l;
  }
  Py_XINCREF(o->layers);
  return o->layers;
}

static PyObject *str_list(int n, const char *(*name)(ext_net *, int), ext_net *o) {
  PyObject *l = PyList_New(n);
  for (int i = 0; l && i < n; i++) {
    const char *s = name(o, i);
    PyObject *v = PyUnicode_FromString(s ? s : "");
    if (!v) Py_CLEAR(l);
    else PyList_SET_ITEM(l, i, v);
  }
  return l;
}

static const char *blob_name_at(ext_net *o, int i) { return o->net->blobs[i]->name; }
static const char *layer_name_at(ext_net *o, int i) { return o->net->layers[i]->name; }

static PyObject *net_blob_names(ext_net *o, void *c) {
  return ready(o) ? NULL : str_list(o->net->nblobs, blob_name_at, o);
}

static PyObject *net_layer_names(ext_net *o, void *c) {
  return ready(o) ? NULL : str_list(o->net->nlayers, layer_name_at, o);
}

static int blob_index(const nr_net *n, const nr_blob *b) {
  for (int i = 0; i < n->nblobs; i++)
    if (n->blobs[i] == b) return i;
  return -1;
}

static PyObject *index_list(ext_net *o, nr_blob **v, int n) {
  PyObject *l = PyList_New(n);
  for (int i = 0; l && i < n; i++) {
    PyObject *x = PyLong_FromLong(blob_index(o->net, v[i]));
    if (!x) Py_CLEAR(l);
    else PyList_SET_ITEM(l, i, x);
  }
  return l;
}

static PyObject *net_inputs(ext_net *o, void *c) {
  return ready(o) ? NULL : index_list(o, o->net->inputs, o->net->ninputs);
}

static PyObject *net_outputs(ext_net *o, void *c) {
  return ready(o) ? NULL : index_list(o, o->net->outputs, o->net->noutputs);
}

static PyObject *net_top_ids(ext_net *o, PyObject *arg) {
  int i;
  if (ready(o) || layer_arg(o, arg, 0, &i)) return NULL;
  return index_list(o, o->net->layers[i]->top, o->net->layers[i]->ntop);
}

static PyObject *net_bottom_ids(ext_net *o, PyObject *arg) {
  int i;
  if (ready(o) || layer_arg(o, arg, 0, &i)) return NULL;
  return index_list(o, o->net->layers[i]->bottom, o->net->layers[i]->nbottom);
}

static PyObject *net_loss_weights(ext_net *o, void *c) {
  if (ready(o)) return NULL;
  PyObject *l = PyList_New(o->net->nblobs);
  for (int i = 0; l && i < o->net->nblobs; i++) {
    PyObject *x = PyFloat_FromDouble(o->net->blob_loss_weight[i]);
    if (!x) Py_CLEAR(l);
    else PyList_SET_ITEM(l, i, x);
  }
  return l;
}

static PyObject *net_name(ext_net *o, void *c) {
  return ready(o) ? NULL : PyUnicode_FromString(o->net->name ? o->net->name : "");
}

static PyObject *net_phase(ext_net *o, void *c) {
  return ready(o) ? NULL : PyLong_FromLong(o->net->phase);
}

static PyMethodDef net_methods[] = {
    {"_forward", (PyCFunction)net_forward, METH_VARARGS,
     "_forward(start=None, end=None) -> loss: forward over layers start..end"},
    {"_backward", (PyCFunction)net_backward, METH_VARARGS,
     "_backward(start=None, end=None): backward over layers start down to end"},
    {"reshape", (PyCFunction)net_reshape, METH_NOARGS, "reshape every layer (after an input "
     "changed shape)"},
    {"_set_input_arrays", (PyCFunction)net_set_input_arrays, METH_VARARGS,
     "hand data and labels to the first layer, a MemoryData layer (see set_input_arrays)"},
    {"_memory_data_dims", (PyCFunction)net_memory_data_dims, METH_NOARGS,
     "(batch_size, channels, height, width) of the first layer, a MemoryData layer"},
    {"clear_param_diffs", (PyCFunction)net_clear_param_diffs, METH_NOARGS,
     "set every parameter's diff to zero"},
    {"copy_from", (PyCFunction)net_copy_from, METH_O,
     "copy_from(path): parameters by layer name from a .caffemodel"},
    {"save", (PyCFunction)net_save, METH_VARARGS,
     "save(path, diff=False): the parameters as a .caffemodel"},
    {"share_with", (PyCFunction)net_share_with, METH_O,
     "share_with(net): use net's parameters (same memory) by layer name"},
    {"_top_ids", (PyCFunction)net_top_ids, METH_O, "blob indices of layer i's tops"},
    {"_bottom_ids", (PyCFunction)net_bottom_ids, METH_O, "blob indices of layer i's bottoms"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef net_getset[] = {
    {"_blobs", (getter)net_blobs, NULL, "every blob, in creation order", NULL},
    {"layers", (getter)net_layers, NULL, "every layer, in order", NULL},
    {"_blob_names", (getter)net_blob_names, NULL, "blob names, in creation order", NULL},
    {"_layer_names", (getter)net_layer_names, NULL, "layer names, in order", NULL},
    {"_inputs", (getter)net_inputs, NULL, "blob indices of the net's inputs", NULL},
    {"_outputs", (getter)net_outputs, NULL, "blob indices of the net's outputs", NULL},
    {"_blob_loss_weights", (getter)net_loss_weights, NULL, "loss weight of every blob", NULL},
    {"name", (getter)net_name, NULL, "the net's name", NULL},
    {"phase", (getter)net_phase, NULL, "caffe.TRAIN or caffe.TEST", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyObject *ext_net_class;

PyTypeObject ext_net_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caffe._caffe.Net",
    .tp_basicsize = sizeof(ext_net),
    .tp_dealloc = (destructor)net_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)net_traverse,
    .tp_clear = (inquiry)net_clear,
    .tp_weaklistoffset = offsetof(ext_net, weakrefs),
    .tp_doc = "A net built by the engine (see caffe.Net for the Python surface).",
    .tp_methods = net_methods,
    .tp_getset = net_getset,
    .tp_init = (initproc)net_init,
    .tp_new = net_py_new,
};
