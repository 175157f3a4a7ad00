/* pool.h: the worker pool that runs `type: "Python"` layers out of process.
 *
 * Concept. A pool owns N `netrun-worker` processes (each embeds CPython + NumPy) and the
 * shared memory every blob lives in. The net allocates ALL its blobs with
 * nr_pool_allocator(): each buffer is an anonymous memfd segment mapped MAP_SHARED, so a
 * worker sees a blob as a NumPy array over the very same pages (no copy, ever). The net
 * runs Python layers through nr_pool_backend() (see core/pylayer.h): each call writes a
 * small request into the worker's shared control block and posts a semaphore; the worker
 * runs the Python method and posts back. Protocol details: ipc/wire.h and docs/workers.md.
 *
 * Placement: a layer instance lives in one worker for life; layers are spread round-robin
 * over a pool of a fixed size. A pool sized by its layers (nworkers -1) puts the Python
 * layers the net calls in step, one after the other, on one worker (warm from the call
 * before), a prefetched data layer on a worker of its own, and spreads a data layer's
 * replicas, up to the number of CPUs.
 *
 * Data layers (a Python layer with no bottoms and some tops), when prefetch K > 0: run
 * ahead of the net into K spare shared buffers, by one core thread per instance; the net's
 * forward takes the next batch without copying (the top blobs swap buffers with the ready
 * set; generations grow so other workers remap). python_param { replicas: R } runs R
 * instances on R distinct workers (R capped at the pool size, logged), each told its index
 * and R (caffe.get_worker_info()); batch n comes from instance n % R, always consumed in
 * index order. A dead instance is restarted (max_restarts) and re-created at the batch it
 * lost. When the net has to wait for a batch the log says "Waiting for data" (at most
 * every 10 s). Details: the "prefetched data layers" comment in pool_prefetch.c,
 * docs/workers.md.
 *
 * Faults: a Python exception is NR_ERR_PYTHON; a worker that dies (signal, exit) or hangs
 * past timeout_sec is NR_ERR_WORKER. Both messages name the layer, module.class, method,
 * phase and iteration, and carry the traceback (faulthandler's last Python stack for a
 * crash). With max_restarts K > 0 the pool restarts a dead/hung worker (at most K times
 * over the pool's life), sets its layers up again (restoring their parameter values from
 * the core's copy), replays the failed call and logs that it did.
 *
 * Leaks: segments have no name anywhere (nothing in /dev/shm); workers die with the core
 * (PR_SET_PDEATHSIG + socket EOF) and are reaped by nr_pool_destroy. Workers are spawned
 * by the pool's own watcher thread, which lives as long as the pool: PR_SET_PDEATHSIG
 * follows the spawning thread, so a pool made in a short-lived thread (a Python thread of
 * the caller) keeps its workers after that thread ends.
 *
 * Ownership and order: the pool owns its workers and segments' mappings. Nets built with
 * the pool's allocator/backend must be destroyed BEFORE the pool. Not thread safe: one
 * thread drives a pool (internal threads watch for dying workers and drive data-layer
 * instances; they never spawn workers, so PR_SET_PDEATHSIG follows the driving thread).
 */
#ifndef NR_POOL_H
#define NR_POOL_H

#include <stdio.h>
#include <sys/types.h>

#include "blob.h"
#include "nr_status.h"
#include "pylayer.h"

typedef struct nr_pool nr_pool;

#define NR_POOL_MAX_WORKERS 64 /* nworkers is capped here */

typedef struct nr_pool_opts {
  int nworkers;            /* -1 = sized by the layers: one for the layers the net calls in
                            * step, others for prefetched data layers, up to nproc; capped
                            * at 64 */
  double timeout_sec;      /* 0 = none (--py-timeout); applies to every call incl. setup */
  int max_restarts;        /* --py-restarts: restarts allowed over the pool's life */
  const char *worker_path; /* NULL = netrun-worker next to /proc/self/exe, then build dir */
  FILE *log;               /* (optional) worker starts, deaths, restarts, data waits */
  int prefetch;            /* --py-prefetch K: batches a Python data layer computes ahead
                            * (0 = none: data layers run in step with the net, one
                            * instance, like any Python layer) */
  long long max_blob_bytes; /* --py-max-blob-bytes: the largest blob (count x 4 bytes) a
                             * worker may ask for or report; every worker reply is checked
                             * against it (and for form, indices, axis counts). 0 = the
                             * default NR_POOL_DEFAULT_MAX_BLOB_BYTES. */
  const char *python_path; /* (optional) directories (':'-separated) put first on the
                            * workers' PYTHONPATH, restarts included: a Python caller's
                            * sys.path, so workers import the caller's layer modules */
  const char *replicas;    /* (optional) "layer=R[,layer2=R2]": replicas of the named data
                            * layers, over their python_param.replicas; the form a net that
                            * Caffe's own tools must read can use (--py-replicas) */
} nr_pool_opts;

#define NR_POOL_DEFAULT_MAX_BLOB_BYTES (4LL << 30) /* 4 GiB */

/* Creates an empty pool (workers start lazily, at the first Python layer placed on them).
 * o may be NULL (defaults: -1 workers, no timeout, no restarts). Errors: NR_ERR_IO when
 * netrun-worker cannot be found. */
nr_status nr_pool_create(const nr_pool_opts *o, nr_pool **out, nr_error *err);
/* The backend to put in nr_net_opts.py (borrowed, lives as long as the pool). */
nr_py_backend *nr_pool_backend(nr_pool *p);
/* The shared-memory allocator to put in nr_net_opts.alloc (borrowed). */
const nr_allocator *nr_pool_allocator(nr_pool *p);
/* Ends the workers (EXIT, then SIGKILL after 2 s), reaps them, closes every descriptor.
 * NULL is a no-op. */
void nr_pool_destroy(nr_pool *p);

/* Diagnostics (tests, `netrun time`): workers started so far, pid of worker i (0 if not
 * running), restarts used. */
int nr_pool_nworkers(const nr_pool *p);
pid_t nr_pool_worker_pid(const nr_pool *p, int i);
int nr_pool_restarts(const nr_pool *p);
/* Workers that died with no restart left (their layers' calls fail): a front-end makes a new
 * pool for new nets rather than place them on such a pool. */
int nr_pool_failed_workers(const nr_pool *p);
/* Forwards of prefetched data layers that had to wait for their batch, over the pool's
 * life, and the total time waited (*wait_ms, may be NULL). */
int64_t nr_pool_data_waits(const nr_pool *p, double *wait_ms);
/* Tests only: the watcher thread sleeps this long between noticing a death and acting on
 * it, to widen a race window (0: no sleep). */
extern unsigned nr__pool_watcher_delay_us;

/* --py-workers 0: Python layers inside the core process. Loads libnetrun-pyinproc.so (next
 * to /proc/self/exe, ../lib/netrun/, then the build dir) with dlopen so netrun itself never
 * links libpython. Same layer-running code as the worker; the blobs' own memory is viewed
 * directly (any allocator). A crash in Python is a crash of the process: this mode is for
 * pdb and as the latency baseline. One in-process backend per process. */
nr_status nr_inproc_create(nr_py_backend **out, nr_error *err);
/* A host that has the in-process runner compiled in (the Python extension, whose
 * interpreter is the one layers must run in) hands its table here instead of the library
 * being loaded. Call before the first nr_inproc_create. */
struct nr_inproc_so;
void nr_inproc_use(const struct nr_inproc_so *so);
void nr_inproc_destroy(nr_py_backend *b);

#endif
