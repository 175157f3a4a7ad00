/* runtime.c: caffe._caffe.Runtime — the worker pool (or in-process Python layers) that a
 * net's Python layers run in, its lock, deferred frees and Ctrl-C (ext.h). */
#include "ext.h"

#include <string.h>
#include <unistd.h>

volatile sig_atomic_t ext_interrupted;
unsigned long ext_main_thread; /* set at import (module.c) */

typedef struct ext_pending {
  nr_buf *buf; /* one of the three */
  nr_net *net;
  nr_solver *solver;
  struct ext_pending *next;
} ext_pending;

/* Under r->lock. */
static void drain(ext_runtime *r) {
  pthread_mutex_lock(&r->pending_mu);
  ext_pending *p = r->pending;
  r->pending = NULL;
  pthread_mutex_unlock(&r->pending_mu);
  while (p) {
    ext_pending *next = p->next;
    if (p->buf) nr_buf_release(p->buf);
    if (p->solver) nr_solver_destroy(p->solver);
    if (p->net) nr_net_destroy(p->net);
    free(p);
    p = next;
  }
}

static void defer(ext_runtime *r, ext_pending item) {
  ext_pending *p = malloc(sizeof *p);
  if (!p) return; /* out of memory: it leaks rather than being freed mid-call */
  *p = item;
  pthread_mutex_lock(&r->pending_mu);
  p->next = r->pending;
  r->pending = p;
  pthread_mutex_unlock(&r->pending_mu);
}

/* Is this thread inside the engine with r already? */
static int inside(const ext_runtime *r) {
  return atomic_load(&r->held) && pthread_equal(r->holder, pthread_self());
}

void ext_rt_release_buf(ext_runtime *r, nr_buf *buf) {
  if (ext_rt_foreign(r)) return; /* the parent's memory: a forked child leaves it be */
  if (pthread_mutex_trylock(&r->lock) == 0) {
    nr_buf_release(buf);
    pthread_mutex_unlock(&r->lock);
    return;
  }
  defer(r, (ext_pending){buf, NULL, NULL, NULL});
}

void ext_rt_destroy(ext_runtime *r, nr_net *net, nr_solver *solver) {
  if (ext_rt_foreign(r)) return;
  if (inside(r)) {
    defer(r, (ext_pending){NULL, net, solver, NULL});
    return;
  }
  PyThreadState *ts;
  (void)ext_rt_enter(r, &ts); /* this process, this thread outside: cannot fail */
  if (solver) nr_solver_destroy(solver);
  if (net) nr_net_destroy(net);
  ext_rt_leave(r, ts);
}

/* ---- Ctrl-C. While the main thread is in the engine, SIGINT sets ext_interrupted, which
 * nets poll between layers: the pass stops with NR_ERR_INTERRUPT (raised as
 * KeyboardInterrupt) and the net resets the flag. Python's own handler is back before any
 * Python code runs again; a SIGINT that arrived after the engine's last poll is handed to
 * Python (PyErr_SetInterrupt) so it is never lost. ---- */

static struct sigaction saved_int;
static int armed;

static void on_sigint(int sig) {
  (void)sig;
  ext_interrupted = 1;
}

int ext_rt_foreign(const ext_runtime *r) { return r->owner_pid != getpid(); }

int ext_rt_enter(ext_runtime *r, PyThreadState **ts) {
  if (ext_rt_foreign(r)) {
    PyErr_Format(PyExc_RuntimeError, "this net or solver belongs to process %d, which made "
                 "it before os.fork(): a forked child must make nets of its own",
                 (int)r->owner_pid);
    return -1;
  }
  if (inside(r)) {
    PyErr_SetString(PyExc_RuntimeError,
                    "a Python layer running in this process (py_workers 0) cannot drive a net "
                    "or solver of the runtime that is running it: use another runtime, or "
                    "Python workers");
    return -1;
  }
  const int main_thread = PyThread_get_thread_ident() == ext_main_thread;
  if (main_thread && !armed) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    ext_interrupted = 0;
    if (sigaction(SIGINT, &sa, &saved_int) == 0) armed = 1;
  }
  *ts = PyEval_SaveThread();
  pthread_mutex_lock(&r->lock);
  r->holder = pthread_self();
  atomic_store(&r->held, 1);
  drain(r);
  return 0;
}

void ext_rt_leave(ext_runtime *r, PyThreadState *ts) {
  drain(r); /* what was dropped inside this call (ext_rt_destroy) */
  atomic_store(&r->held, 0);
  pthread_mutex_unlock(&r->lock);
  PyEval_RestoreThread(ts);
  if (armed && PyThread_get_thread_ident() == ext_main_thread) {
    sigaction(SIGINT, &saved_int, NULL);
    armed = 0;
    if (ext_interrupted) {
      ext_interrupted = 0;
      PyErr_SetInterrupt(); /* Python raises KeyboardInterrupt at its next check */
    }
  }
}

/* ---- the type ---- */

ext_runtime *ext_rt_new(int py_workers, double py_timeout, int py_restarts, int py_prefetch,
                        long long max_blob_bytes, const char *python_path) {
  ext_runtime *r = PyObject_New(ext_runtime, &ext_runtime_type);
  if (!r) return NULL;
  r->rt = NULL;
  r->weakrefs = NULL;
  r->pending = NULL;
  atomic_store(&r->held, 0);
  r->py_workers = py_workers;
  r->owner_pid = getpid();
  pthread_mutex_init(&r->lock, NULL);
  pthread_mutex_init(&r->pending_mu, NULL);
  nr_pool_opts o = {0};
  o.nworkers = py_workers;
  o.timeout_sec = py_timeout;
  o.max_restarts = py_restarts;
  o.prefetch = py_prefetch;
  o.max_blob_bytes = max_blob_bytes;
  o.python_path = python_path;
  static nr_error err;
  nr_status s;
  if (py_workers == 0) { /* attaches to this interpreter: with the GIL held */
    s = nr_runtime_create(&o, &r->rt, &err);
  } else {
    Py_BEGIN_ALLOW_THREADS
    s = nr_runtime_create(&o, &r->rt, &err);
    Py_END_ALLOW_THREADS
  }
  if (s != NR_OK) {
    Py_DECREF(r);
    return (ext_runtime *)ext_raise(s, &err);
  }
  r->inner = nr_runtime_allocator(r->rt);
  return r;
}

static void rt_dealloc(ext_runtime *r) {
  if (r->weakrefs) PyObject_ClearWeakRefs((PyObject *)r);
  if (r->rt && !ext_rt_foreign(r)) { /* a forked child must not end the parent's workers */
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&r->lock);
    drain(r);
    nr_runtime_destroy(r->rt);
    pthread_mutex_unlock(&r->lock);
    Py_END_ALLOW_THREADS
  }
  pthread_mutex_destroy(&r->lock);
  pthread_mutex_destroy(&r->pending_mu);
  PyObject_Free(r);
}

static PyObject *rt_py_new(PyTypeObject *t, PyObject *args, PyObject *kw) {
  (void)t;
  static char *kwlist[] = {"py_workers", "py_timeout", "py_restarts", "py_prefetch",
                           "py_max_blob_bytes", "python_path", NULL};
  int workers = -1, restarts = 0, prefetch = 3;
  double timeout = 0;
  long long maxb = 0;
  const char *python_path = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|idiiLz:Runtime", kwlist, &workers, &timeout,
                                   &restarts, &prefetch, &maxb, &python_path))
    return NULL;
  if (workers < -1 || workers > NR_POOL_MAX_WORKERS)
    return PyErr_Format(PyExc_ValueError, "py_workers: %d (expected 0 to %d, or -1 for one "
                        "per Python layer)", workers, NR_POOL_MAX_WORKERS);
  if (!(timeout >= 0))
    return PyErr_Format(PyExc_ValueError, "py_timeout: %R (expected seconds, 0 = no limit)",
                        PyTuple_Size(args) > 1 ? PyTuple_GET_ITEM(args, 1) : Py_None);
  if (restarts < 0) return PyErr_Format(PyExc_ValueError, "py_restarts: %d (expected >= 0)",
                                        restarts);
  if (prefetch < 0 || prefetch > 64)
    return PyErr_Format(PyExc_ValueError, "py_prefetch: %d (expected 0 to 64)", prefetch);
  if (maxb < 0)
    return PyErr_Format(PyExc_ValueError, "py_max_blob_bytes: %lld (expected >= 0)", maxb);
  return (PyObject *)ext_rt_new(workers, timeout, restarts, prefetch, maxb, python_path);
}

static PyObject *rt_workers(ext_runtime *r, void *c) {
  (void)c;
  nr_pool *p = nr_runtime_pool(r->rt);
  return PyLong_FromLong(p ? nr_pool_nworkers(p) : 0);
}

static PyObject *rt_restarts(ext_runtime *r, void *c) {
  (void)c;
  nr_pool *p = nr_runtime_pool(r->rt);
  return PyLong_FromLong(p ? nr_pool_restarts(p) : 0);
}

static PyObject *rt_worker_pids(ext_runtime *r, void *c) {
  (void)c;
  nr_pool *p = nr_runtime_pool(r->rt);
  PyObject *l = PyList_New(0);
  for (int i = 0; l && p && i < nr_pool_nworkers(p); i++) {
    PyObject *v = PyLong_FromLong((long)nr_pool_worker_pid(p, i));
    if (!v || PyList_Append(l, v) < 0) {
      Py_XDECREF(v);
      Py_CLEAR(l);
      break;
    }
    Py_DECREF(v);
  }
  return l;
}

static PyObject *rt_failed(ext_runtime *r, void *c) {
  (void)c;
  nr_pool *p = nr_runtime_pool(r->rt);
  return PyLong_FromLong(p ? nr_pool_failed_workers(p) : 0);
}

static PyGetSetDef rt_getset[] = {
    {"failed_workers", (getter)rt_failed, NULL, "workers that died with no restart left",
     NULL},
    {"workers_started", (getter)rt_workers, NULL, "worker processes started so far", NULL},
    {"restarts", (getter)rt_restarts, NULL, "worker restarts used", NULL},
    {"worker_pids", (getter)rt_worker_pids, NULL, "pid of each worker (0: not running)", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject ext_runtime_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caffe._caffe.Runtime",
    .tp_basicsize = sizeof(ext_runtime),
    .tp_dealloc = (destructor)rt_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_weaklistoffset = offsetof(ext_runtime, weakrefs),
    .tp_doc = "Where a net's Python layers run: a pool of py_workers worker processes "
              "(-1: sized by the layers), or this interpreter (py_workers=0).",
    .tp_new = rt_py_new,
    .tp_getset = rt_getset,
};
