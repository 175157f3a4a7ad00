/* pool_int.h: the worker pool's private header — its types and the functions its files
 * share (nr__ names), the way Redis keeps ae.c beside ae_epoll.c. Nothing outside ipc/pool*.c
 * includes it; the public API is pool.h, the design docs/workers.md.
 *
 * The files, each depending only on those above it:
 *   pool_seg.c       shared-memory segments: the blob allocator, which worker has which
 *                    segment, the descriptors a message must carry, freed ids to forget
 *   pool_spawn.c     starting a process (a worker or the zygote): descriptors, signals,
 *                    environment, the posix_spawn the watcher thread makes
 *   pool_zygote.c    workers cloned from a zygote that imported Python once
 *   pool_proc.c      worker processes: start (cloned, else spawned), signals (through
 *                    pidfds only), reap, the watcher thread that wakes the core when one
 *                    dies, death and fault text
 *   pool_call.c      layer instances and one call on one: the exchange with the worker,
 *                    nested requests, reply validation, the error a failed call becomes
 *   pool_restart.c   the restart policy: replace a dead or hung worker, set its layers up
 *                    again keeping their parameters, replay the call
 *   pool_prefetch.c  prefetched (and replicated) Python data layers and their threads,
 *                    and their statistics (nr_pool_data_waits); restarts reach it only
 *                    through p->on_restart
 *   pool.c           the entry points: create / destroy, the backend's call and release,
 *                    diagnostics
 *
 * Threads and locks. One thread drives the pool (the "main" thread: the only one that
 * spawns workers, as PR_SET_PDEATHSIG follows the spawning thread). The watcher thread
 * (pool_proc.c) and one thread per prefetched replica (pool_prefetch.c) run beside it.
 *   p->mu      a worker's pid, pidfd, socket, control block and spawn generation, between
 *              the main thread and the watcher
 *   p->seg_mu  the segment list, each segment's `known` bits and the workers' forget lists
 *   w->io      one exchange at a time with worker w (main thread and prefetch threads)
 */
#ifndef NR_POOL_INT_H
#define NR_POOL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "pool.h"
#include "pybind.h"
#include "wire.h"

#define NR_CORE_MAX_SPIN_NS 200000

struct pf; /* a prefetched data layer's controller (pool_prefetch.c) */

/* One shared-memory segment = one blob buffer (an nr_buf's memory). */
typedef struct nr_seg {
  uint32_t id;
  int fd;
  void *ptr;
  size_t size;
  uint64_t known; /* bit w: worker w has it mapped */
  struct nr_seg *prev, *next;
} nr_seg;

/* One worker process and what the pool knows of it (p->w[idx]). */
typedef struct worker {
  int idx;
  pid_t pid;          /* 0 = not running */
  int pidfd, sock, fault_fd;
  nr_ctl *ctl;
  _Atomic int dead;   /* set by the watcher thread */
  uint64_t gen;       /* spawns so far (under p->mu): which process the watcher saw die */
  bool hello;         /* worker said it is ready */
  bool reaped;
  bool failed;        /* died with no restart left: calls on its layers fail */
  char *first_err;    /* failed: the message of the failure that ended it (malloc'd) */
  int wstatus;
  int64_t spin_ns;
  /* The last call answered (its layer instance, method, when the reply was seen), so the
   * next message's post measures the gap that followed it (pl.gap_ns; ctl->next_ns). */
  struct pl *last_q;
  int last_m;
  int64_t last_reply_ns;
  uint32_t seq;       /* the number of the last message posted (the core's own count) */
  uint32_t *forget;   /* segment ids freed since the last request (under seg_mu) */
  size_t nforget, capforget;
  /* Held for each exchange with this worker: the main thread and the prefetch threads of
   * data layers (see "prefetched data layers" in pool_prefetch.c) share its control
   * block. */
  pthread_mutex_t io;
} worker;

/* Per Python layer, in nr_layer.priv. */
typedef struct pl {
  nr_pool *pool;
  nr_pybind pb;     /* pb.l: the layer (a replica's is its own copy, `fake`) */
  uint32_t id;
  int w;
  bool created;     /* the object exists in the current worker process */
  bool established; /* setup succeeded once (re-set up on restart) */
  /* Per method: ns from the reply of this layer's last call of that method to the core's
   * next message to the same worker; sent as the hint ctl->next_ns (0: not known yet). */
  int64_t gap_ns[4];
  struct pl *next;  /* pool's list, creation order */
  /* Prefetched data layers: the head replica (the net layer's priv) points at the
   * controller (pf). A replica runs on its own copy of the layer (`fake`) whose tops are
   * switched to the buffers it fills. When the Python object is (re)created it is told
   * its replica index, the replica count and the first batch it produces
   * (caffe.get_worker_info()). */
  struct pf *pf;
  int replica, nreplicas; /* nreplicas 0: not a replica of a prefetched data layer */
  int64_t first_batch;
  nr_layer fake;
} pl;

/* What a restart does around replacing a worker, for the threads that share workers with
 * the main thread: the prefetched data layers fill it in when they create their first
 * (p->on_restart; NULL: nothing to do). Main thread only. */
typedef struct restart_hooks {
  void (*pause)(nr_pool *p);            /* stop every thread that calls into workers */
  void (*before)(nr_pool *p, int widx); /* worker widx is about to be replaced */
  void (*resume)(nr_pool *p);           /* the restart is over, done or failed for good */
} restart_hooks;

struct nr_pool {
  nr_pool_opts o;
  char *worker_path;
  nr_allocator alloc;
  nr_py_backend be;
  nr_seg *segs;
  uint32_t next_seg;
  worker w[NR_POOL_MAX_WORKERS];
  int max_workers, nstarted, rr;
  int ncpu; /* CPUs online when the pool was made */
  int step_w; /* nworkers -1: the worker of the layers the net calls in step (-1: none yet) */
  uint32_t next_layer;
  pl *layers, *layers_tail;
  struct pf *pfs;   /* prefetched data layers */
  const restart_hooks *on_restart;
  int restarts;
  /* Segment list, segment `known` bits and the workers' forget lists: touched by the
   * prefetch threads too. */
  pthread_mutex_t seg_mu;
  char *layer_types;
  /* liveness watcher */
  pthread_t watcher;
  bool watcher_on;
  pthread_mutex_t mu;
  int wake[2];
  struct spawn_job *spawn_job; /* under mu: a spawn the watcher thread is to do */
  pthread_cond_t spawn_cv;     /* the watcher did it */
  /* the zygote (pool_zygote.c), under zy_mu */
  pthread_mutex_t zy_mu;
  int zy_state;  /* 0: not started, 1: ready, -1: off for this pool */
  int zy_starts; /* zygotes started so far */
  int zy_requests; /* workers asked of nr__zygote_clone so far */
  /* the first Python layer's module and prototxt directory (owned; NULL: none yet): the
   * zygote imports that module before it clones (nr__zygote_note_layer) */
  char *zy_module, *zy_dir;
  pid_t zy_pid;
  int zy_sock;
};

/* WR_GONE: the worker died earlier and was not restarted (its layers are lost).
 * WR_PROTO: the worker sent a reply that breaks the protocol or the limits (garbage, an
 * index the layer does not have, a blob past max_blob_bytes...): it is killed, not
 * restarted (a buggy or hostile worker would do it again), and the call fails. */
typedef enum { WR_OK, WR_PYERR, WR_DEAD, WR_TIMEOUT, WR_GONE, WR_PROTO } wres;

/* Descriptors to send to a worker before a message, with their segment ids. */
typedef struct fdlist {
  int *fds;
  uint32_t *ids;
  int n, cap;
} fdlist;

/* What one exchange with a worker came to (nr__call_once); the strings are new. */
typedef struct callres {
  wres r;
  char *type, *msg, *tb; /* WR_PYERR */
  char bad[200];         /* WR_PROTO: what the reply did wrong */
} callres;

static inline FILE *nr__pool_log(const nr_pool *p) { return p->o.log; }

/* ---- pool_seg.c ---- */

/* An anonymous shared-memory file of mode 0600, or -1 (errno). */
int nr__pool_memfd(const char *name);
/* The pool's nr_allocator (ctx = the pool): one segment per buffer. */
nr_status nr__seg_alloc(void *ctx, size_t bytes, void **ptr, void **handle, nr_error *err);
void nr__seg_free(void *ctx, void *ptr, void *handle);
/* Blob b's segment (*out), queued in fl when worker w does not have it yet. */
nr_status nr__seg_need(nr_pool *p, worker *w, nr_blob *b, nr_seg **out, fdlist *fl,
                       nr_error *err);
void nr__fdlist_free(fdlist *f);
/* Worker w is gone: it has no segment any more and nothing to forget. */
void nr__seg_drop_worker(nr_pool *p, worker *w);

/* ---- pool_spawn.c ---- */

/* Starts worker_path (argv) with fds[i] as descriptor 3 + i, through the watcher thread;
 * zygote: the zygote's environment. 0 or an errno. */
int nr__spawn_process(nr_pool *p, char *const argv[], const int *fds, int nfds, bool zygote,
                      pid_t *pid);
/* The watcher thread's side of nr__spawn_process: makes the spawn posted, if any. */
void nr__run_spawn_job(nr_pool *p);

/* ---- pool_proc.c ---- */

/* The watcher thread's body (arg: the pool); 'q' on p->wake[1] ends it. */
void *nr__watcher_main(void *arg);
/* Starts worker w's process (its control block, socket, fault file). NR_ERR_IO. */
nr_status nr__worker_spawn(nr_pool *p, worker *w, nr_error *err);
/* Closes what the core holds of w (after it was reaped or never started). */
void nr__worker_close(nr_pool *p, worker *w);

/* ---- pool_zygote.c ---- */

/* A worker process cloned from the pool's zygote (started on first use), with fds (its
 * socket, control block, fault file) as descriptors 3..5: 0 with *pid set, a child of this
 * process; -1: no zygote to use (off, could not start, died, refused): start the worker
 * directly. */
int nr__zygote_clone(nr_pool *p, const int fds[3], pid_t *pid);
/* Ends and reaps the zygote (the pool is going), frees what it noted. */
void nr__zygote_stop(nr_pool *p);
/* Notes Python layer l's module, if it is the pool's first: a zygote started after this
 * imports it once before it clones (NETRUN_ZYGOTE_PRELOAD=0: not). */
void nr__zygote_note_layer(nr_pool *p, const nr_layer *l);
/* Signals w's process through its pidfd (never a reaped pid). */
void nr__worker_signal(const worker *w, int sig);
/* Waits for w's process (once). */
void nr__worker_reap(worker *w);
/* After a death or timeout (r): the process is gone and reaped. */
void nr__worker_finish(worker *w, wres r);
/* w died for good: killed, reaped, closed; later calls on its layers fail naming why. */
void nr__worker_fail(nr_pool *p, worker *w, const char *why);
/* "was killed by signal SIGSEGV (Segmentation fault)", "exited with status 3". */
void nr__worker_death_text(const worker *w, char *buf, size_t len);
/* The last Python stack faulthandler wrote ("" if none). */
void nr__worker_fault_text(const worker *w, char *buf, size_t len);

/* ---- pool_call.c ---- */

/* Posts the message in w's control block after sending fl's descriptors (fl may be NULL).
 * false: the socket is broken (the worker is gone). */
bool nr__post(worker *w, const fdlist *fl);
/* Waits for w's answer to message seq until deadline (0: none). */
wres nr__wait_reply(nr_pool *p, worker *w, uint32_t seq, int64_t deadline, char *bad,
                    size_t badlen);
/* Where nr__pl_new puts an instance (see there). */
typedef enum nr_place {
  NR_PLACE_STEP,   /* a layer the net calls in step */
  NR_PLACE_OWN,    /* a prefetched data layer's only instance */
  NR_PLACE_SPREAD, /* one of a data layer's replicas */
} nr_place;
/* A new instance of layer l, placed on a worker (started if need be) and listed. */
nr_status nr__pl_new(nr_pool *p, nr_layer *l, nr_place place, pl **out, nr_error *err);
/* Drops q's Python object in its worker, unlists and frees q. */
void nr__pl_free(nr_pool *p, pl *q);
/* One exchange for method m of q under its worker's io lock; what happened in cr. */
nr_status nr__call_once(nr_pool *p, pl *q, nr_py_method m, callres *cr, nr_error *err);
void nr__callres_clear(callres *c);
/* The error a failed exchange (cr) of method m of q becomes. */
nr_status nr__call_error(nr_pool *p, pl *q, nr_py_method m, callres *cr, nr_error *err);
/* The error of a call on q whose worker w failed for good earlier. */
nr_status nr__gone_error(pl *q, nr_py_method m, const worker *w, nr_error *err);

/* ---- pool_restart.c ---- */

/* Method m of q, restarting a dead or hung worker and replaying while restarts are left.
 * Main thread only. */
nr_status nr__pl_call(nr_pool *p, pl *q, nr_py_method m, nr_error *err);
/* Replaces worker w and sets its layers up again. Main thread only. */
nr_status nr__restart_worker(nr_pool *p, worker *w, nr_error *err);
/* Takes one restart (the caller checked one is left) for q's worker, whose call of method
 * m failed as cr says, and logs "netrun: <that failure>" then "netrun: restarting Python
 * worker N (restart i of k)" followed by next (what happens then). */
void nr__restart_count(nr_pool *p, pl *q, nr_py_method m, callres *cr, const char *next);

/* ---- pool_prefetch.c ---- */

/* At the first setup of data layer l (no bottoms, some tops; prefetch on): its
 * controller and replicas; l->priv is the head replica, whose pf is the controller. */
nr_status nr__pf_create(nr_pool *p, nr_layer *l, nr_error *err);
/* Method m of the prefetched layer f. Main thread only. */
nr_status nr__pf_call(nr_pool *p, struct pf *f, nr_py_method m, nr_error *err);
/* Stops f's threads, frees its replicas and buffers, unlists it. */
void nr__pf_release(nr_pool *p, struct pf *f);

#endif
