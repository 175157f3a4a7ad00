/* solver.c: caffe._caffe.Solver — training from Python: step(n), solve(), snapshots,
 * restore, apply_update; solver.net and solver.test_nets are Net objects over the solver's
 * own nets (they keep the solver alive). The log lines are netrun train's. */
#include "ext.h"

#include <string.h>

#include "load.h"

typedef struct {
  PyObject_HEAD
  nr_solver *s;
  ext_runtime *r;
  PyObject *net, *test_nets;
  volatile sig_atomic_t stop, snap;
} ext_solver;

static int solver_traverse(ext_solver *o, visitproc visit, void *arg) {
  Py_VISIT(o->net);
  Py_VISIT(o->test_nets);
  return 0;
}

static int solver_clear(ext_solver *o) {
  Py_CLEAR(o->net);
  Py_CLEAR(o->test_nets);
  return 0;
}

static void solver_dealloc(ext_solver *o) {
  PyObject_GC_UnTrack(o);
  solver_clear(o);
  if (o->s) ext_rt_destroy(o->r, NULL, o->s);
  Py_CLEAR(o->r);
  Py_TYPE(o)->tp_free((PyObject *)o);
}

/* Solver(runtime, path, type=None): type overrides the file's (SGDSolver(path) is SGD). */
static PyObject *solver_new(PyTypeObject *t, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"runtime", "path", "type", NULL};
  ext_runtime *r;
  PyObject *path;
  const char *type = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O!O&|z:Solver", kwlist, &ext_runtime_type, &r,
                                   PyUnicode_FSConverter, &path, &type))
    return NULL;
  ext_solver *o = (ext_solver *)t->tp_alloc(t, 0);
  if (!o) {
    Py_DECREF(path);
    return NULL;
  }
  o->r = r;
  Py_INCREF(r);
  static __thread nr_error err;
  Caffe__SolverParameter *sp = NULL;
  PyThreadState *ts;
  if (ext_rt_enter(r, &ts) < 0) {
    Py_DECREF(o);
    Py_DECREF(path);
    return NULL;
  }
  nr_status s = nr_proto_load_solver_text(PyBytes_AS_STRING(path), &sp, &err);
  if (s == NR_OK && type) {
    /* an unset string field points at the schema's default: never free that one */
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field_by_name(
        &caffe__solver_parameter__descriptor, "type");
    if (sp->type && (!fd || (const void *)sp->type != fd->default_value)) free(sp->type);
    sp->type = strdup(type);
    if (!sp->type) s = nr_err_set(&err, NR_ERR_NOMEM, "out of memory");
    /* the legacy enum field must not contradict the type string */
    sp->has_solver_type = 0;
  }
  if (s == NR_OK) {
    nr_solver_opts so = {0};
    so.alloc = nr_runtime_allocator(r->rt);
    so.py = nr_runtime_backend(r->rt);
    so.log = ext_log();
    so.stop_flag = &o->stop;
    so.snapshot_flag = &o->snap;
    so.interrupt = &ext_interrupted;
    so.default_seed = ext_next_seed();
    s = nr_solver_create(sp, &so, &o->s, &err);
  }
  ext_rt_leave(r, ts);
  if (sp) protobuf_c_message_free_unpacked(&sp->base, NULL);
  Py_DECREF(path);
  if (s != NR_OK) {
    Py_DECREF(o);
    return ext_raise(s, &err);
  }
  o->net = ext_net_wrap(nr_solver_net(o->s), (PyObject *)o, r);
  o->test_nets = PyList_New(0);
  for (int i = 0; o->net && o->test_nets && i < nr_solver_num_test_nets(o->s); i++) {
    PyObject *n = ext_net_wrap(nr_solver_test_net(o->s, i), (PyObject *)o, r);
    if (!n || PyList_Append(o->test_nets, n) < 0) {
      Py_XDECREF(n);
      Py_CLEAR(o->test_nets);
    }
    Py_XDECREF(n);
  }
  if (!o->net || !o->test_nets) {
    Py_DECREF(o);
    return NULL;
  }
  return (PyObject *)o;
}

/* Runs fn on the solver with the GIL released; a Ctrl-C during it raises KeyboardInterrupt
 * (the net stops between layers: the iteration is not counted and no update is applied,
 * so the solver stays consistent). */
static PyObject *run(ext_solver *o, nr_status (*fn)(ext_solver *, void *, nr_error *),
                     void *arg) {
  static __thread nr_error err;
  PyThreadState *ts;
  if (ext_rt_enter(o->r, &ts) < 0) return NULL;
  nr_status s = fn(o, arg, &err);
  ext_rt_leave(o->r, ts); /* a Ctrl-C no layer reported is handed to Python here */
  if (s != NR_OK) return ext_raise(s, &err);
  Py_RETURN_NONE;
}

static nr_status do_step(ext_solver *o, void *arg, nr_error *err) {
  return nr_solver_step(o->s, *(int *)arg, err);
}
static nr_status do_solve(ext_solver *o, void *arg, nr_error *err) {
  const char *resume = arg;
  if (resume) NR_TRY(nr_solver_restore(o->s, resume, err));
  return nr_solver_solve(o->s, err);
}
static nr_status do_restore(ext_solver *o, void *arg, nr_error *err) {
  return nr_solver_restore(o->s, arg, err);
}
static nr_status do_snapshot(ext_solver *o, void *arg, nr_error *err) {
  return nr_solver_snapshot(o->s, err);
}
static nr_status do_apply_update(ext_solver *o, void *arg, nr_error *err) {
  nr_solver_apply_update(o->s);
  return NR_OK;
}

static PyObject *solver_step(ext_solver *o, PyObject *arg) {
  long n = PyLong_AsLong(arg);
  if (n == -1 && PyErr_Occurred()) return NULL;
  if (n < 0 || n > 2147483647L) return PyErr_Format(PyExc_ValueError, "step(%ld)", n);
  int iters = (int)n;
  return run(o, do_step, &iters);
}

static PyObject *solver_solve(ext_solver *o, PyObject *args) {
  PyObject *resume = NULL;
  if (!PyArg_ParseTuple(args, "|O&:solve", PyUnicode_FSConverter, &resume)) return NULL;
  PyObject *r = run(o, do_solve, resume ? PyBytes_AS_STRING(resume) : NULL);
  Py_XDECREF(resume);
  return r;
}

static PyObject *solver_restore(ext_solver *o, PyObject *arg) {
  PyObject *path;
  if (!PyUnicode_FSConverter(arg, &path)) return NULL;
  PyObject *r = run(o, do_restore, PyBytes_AS_STRING(path));
  Py_DECREF(path);
  return r;
}

static PyObject *solver_snapshot(ext_solver *o, PyObject *unused) {
  return run(o, do_snapshot, NULL);
}

static PyObject *solver_apply_update(ext_solver *o, PyObject *unused) {
  return run(o, do_apply_update, NULL);
}

static PyObject *solver_net(ext_solver *o, void *c) {
  Py_INCREF(o->net);
  return o->net;
}
static PyObject *solver_test_nets(ext_solver *o, void *c) {
  Py_INCREF(o->test_nets);
  return o->test_nets;
}
static PyObject *solver_iter(ext_solver *o, void *c) {
  return PyLong_FromLong(nr_solver_iter(o->s));
}
static PyObject *solver_loss(ext_solver *o, void *c) {
  return PyFloat_FromDouble(nr_solver_smoothed_loss(o->s));
}

static PyMethodDef solver_methods[] = {
    {"step", (PyCFunction)solver_step, METH_O, "step(n): n training iterations"},
    {"solve", (PyCFunction)solver_solve, METH_VARARGS,
     "solve(resume=None): train to max_iter (from a .solverstate if given)"},
    {"restore", (PyCFunction)solver_restore, METH_O, "restore(path): a .solverstate"},
    {"snapshot", (PyCFunction)solver_snapshot, METH_NOARGS,
     "write <prefix>_iter_N.caffemodel and .solverstate"},
    {"apply_update", (PyCFunction)solver_apply_update, METH_NOARGS,
     "apply one update from the current diffs (learning rate, momentum, decay)"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef solver_getset[] = {
    {"net", (getter)solver_net, NULL, "the train net", NULL},
    {"test_nets", (getter)solver_test_nets, NULL, "the test nets", NULL},
    {"iter", (getter)solver_iter, NULL, "completed iterations", NULL},
    {"smoothed_loss", (getter)solver_loss, NULL, "the smoothed training loss", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject ext_solver_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caffe._caffe.Solver",
    .tp_basicsize = sizeof(ext_solver),
    .tp_dealloc = (destructor)solver_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)solver_traverse,
    .tp_clear = (inquiry)solver_clear,
    .tp_doc = "A solver of the engine (see caffe.SGDSolver and the others).",
    .tp_methods = solver_methods,
    .tp_getset = solver_getset,
    .tp_new = solver_new,
};
