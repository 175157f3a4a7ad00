/* ext.h: the private header of caffe._caffe, the CPython extension that drives netrun's
 * engine library from a user's own Python (pycaffe's C half; python/caffe/pycaffe.py is the
 * Python half, as _caffe.cpp and pycaffe.py are in Caffe).
 *
 * Objects and who keeps whom alive (every arrow a strong reference):
 *   Net ──> Runtime            a net's blobs live in the runtime's memory (worker pool)
 *   Blob, Layer ──> Net        a Blob object names an nr_blob the net owns
 *   NumPy view ──> BufRef ──> Runtime, and BufRef holds a reference on the nr_buf, so
 *                              a view outlives its blob, its net and its runtime's users
 *   Solver ──> Runtime; the Net objects of solver.net / test_nets ──> Solver
 *
 * Threads and the GIL: every engine call releases the GIL and then takes the runtime's
 * lock (one thread drives a runtime at a time; a thread waiting for it never holds the
 * GIL, so an in-process Python layer that needs the GIL cannot deadlock it). Memory whose
 * last reference a view drops while another thread is in the engine is freed later, by the
 * next engine call (ext_rt_drain).
 */
#ifndef NR_EXT_H
#define NR_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>

#include "net.h"
#include "runtime.h"
#include "solver.h"

/* ---- the runtime: the worker pool (or in-process Python) under a Python object ---- */

typedef struct ext_runtime {
  PyObject_HEAD
  nr_runtime *rt;
  nr_allocator alloc;          /* wraps the runtime's allocator: deferred frees */
  const nr_allocator *inner;   /* the runtime's allocator, or the heap */
  pthread_mutex_t lock;        /* held by the thread inside the engine */
  pthread_t holder;            /* that thread, while `held` */
  _Atomic int held;
  pthread_mutex_t pending_mu;  /* guards pending */
  struct ext_pending *pending; /* buffers, nets, solvers to free at the next engine call */
  int py_workers;
  pid_t owner_pid;             /* the process that made it (a forked child does not own it) */
  PyObject *weakrefs;
} ext_runtime;

extern PyTypeObject ext_runtime_type;

/* A runtime for the options (a new reference), or NULL with an exception set. */
ext_runtime *ext_rt_new(int py_workers, double py_timeout, int py_restarts, int py_prefetch,
                        long long max_blob_bytes, const char *python_path);
/* Enter the engine: releases the GIL (saved in *ts), takes the runtime's lock, frees
 * what views released meanwhile, and arms Ctrl-C (ext_interrupted). Leave: the reverse.
 * Entering a runtime made by the parent of a forked child is a RuntimeError. */
int ext_rt_enter(ext_runtime *r, PyThreadState **ts); /* -1: exception set (forked child) */
/* True in a child forked after r was made: nothing of r may be used or freed there. */
int ext_rt_foreign(const ext_runtime *r);
void ext_rt_leave(ext_runtime *r, PyThreadState *ts);
/* Destroys a net or solver of r (one of them NULL), now, or, when this thread is inside
 * the engine already (a Python layer running in this process dropped the last reference
 * to another net), when the engine call in progress ends: blocking there would wait on
 * this very thread. */
void ext_rt_destroy(ext_runtime *r, nr_net *net, nr_solver *solver);
/* Set by SIGINT while the main thread is in the engine; nets and solvers poll it. */
extern volatile sig_atomic_t ext_interrupted;

/* ---- errors ---- */

/* Raises the Python exception for a failed engine call (err's message; the class from
 * its status: LayerError kinds for Python layers and workers, OSError, MemoryError,
 * KeyboardInterrupt, ValueError for bad input). Returns NULL. */
PyObject *ext_raise(nr_status s, const nr_error *err);
extern PyObject *ext_LayerError, *ext_LayerRaised, *ext_WorkerError;

/* The log the solvers write (netrun train's lines, glog-prefixed, on stderr). */
FILE *ext_log(void);

/* ---- blobs ---- */

/* A Blob object over b (borrowed; owner keeps it alive: a Net or a Layer). */
PyObject *ext_blob_new(nr_blob *b, PyObject *owner, ext_runtime *r);
extern PyTypeObject ext_blob_type;

/* ---- nets ---- */

typedef struct ext_net {
  PyObject_HEAD
  nr_net *net;          /* owned unless owner is set */
  PyObject *owner;      /* the Solver that owns net, or NULL */
  ext_runtime *r;
  PyObject *blobs;      /* list of Blob, in net->blobs order (built lazily) */
  PyObject *layers;     /* list of Layer */
  PyObject *weakrefs;
} ext_net;

extern PyTypeObject ext_net_type, ext_layer_type;
/* A Net object over a solver's net (borrowed; owner keeps it alive), of the class
 * pycaffe.py registered (caffe.Net) when it did. */
PyObject *ext_net_wrap(nr_net *n, PyObject *owner, ext_runtime *r);
extern PyObject *ext_net_class;
/* Seeds for nets built from Python: caffe.set_random_seed(s) makes them repeatable. */
uint64_t ext_next_seed(void);

extern PyTypeObject ext_solver_type;

#endif
