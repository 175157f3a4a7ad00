/* pool_prefetch.c: Python data layers that run ahead of the net (prefetch), in one or more
 * replicas each driven by a core thread of its own, and hand their batches to the net
 * without copying. How, in order and through failures: the comment that follows. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool_int.h"

/* Prefetched data layers.
 *
 * A Python layer with no bottoms and at least one top (a data layer) runs ahead of the net
 * when the pool's prefetch depth K > 0. It runs as R replicas (python_param.replicas,
 * capped at the pool size), each a separate Python object in its own worker, told its
 * index, R and the first batch it produces (caffe.get_worker_info()). Batch n is produced
 * by replica n % R into buffer set n % K' (K' = max(K, 2R) with replicas): a set of ntop
 * blobs in shared memory, owned by this controller. One core thread per replica drives its
 * worker: it waits until set n % K' is free (batch n - K' was taken by the net), runs
 * reshape + forward on the replica's own tops, copies the batch into the set and marks it
 * ready.
 *
 * Why a replica writes into tops of its own (pinned: the same memory every batch) and its
 * thread copies: many pycaffe data layers keep a view of their top from setup or reshape
 * (self.out = top[0].data) and fill it in forward. Caffe's guarantee, which this keeps, is
 * that what the layer wrote through any view of its top it obtained is what the net gets for
 * that batch; with the tops moving from set to set, such a layer wrote into a buffer the net
 * had already taken or would take later (silently wrong batches). Replica 0's pinned tops
 * hold the very memory the layer saw during its setup on the net's tops. The copy costs
 * one pass over the batch, on the replica's thread, while the net computes.
 *
 * The net's forward takes batch `taken` without copying: each top blob of the net swaps
 * its buffer (memory, shape) with the ready set's blob, so the net's next layers read the
 * batch in place and the set gets back the buffer of the previous batch, free for batch
 * n + K'. Both blobs' generations grow, so every worker remaps what it sees (a segment's
 * descriptor is sent to a worker once). A varying batch shape is just a reshape of a set's
 * blob by the replica (a nested grow request, served by the replica's thread).
 *
 * Order: batches are consumed strictly in index order whatever the timing, so the
 * sequence the net sees depends only on the layer code and R... and not even on R for
 * layers whose batch k is a function of k (see docs/workers.md).
 *
 * Failures: a replica's thread stops at its first failed batch and leaves the failure in
 * the set. The net's forward reports it when it reaches that batch (so batches before it
 * are used first). A Python exception is the usual error. A dead or hung worker, with
 * restarts left, is restarted by the main thread (the only one that spawns workers:
 * PR_SET_PDEATHSIG follows the spawning thread): every prefetch thread is paused, the
 * worker's layers are set up again (the replica told first_batch = the lost batch), the
 * threads resume and the lost batch is recomputed: no batch lost, none duplicated.
 *
 * Layers whose setup adds learnable blobs are not prefetched (their output depends on
 * parameters the solver changes): they run synchronously, one instance; asking for
 * replicas of such a layer is an error. */

typedef enum { PS_FREE = 0, PS_BUSY, PS_READY, PS_FAILED } pstate;

typedef struct pset {
  nr_blob **b;     /* ntop blobs (shared memory), owned */
  pstate st;
  int64_t batch;   /* the batch it holds or is being filled with */
  /* PS_FAILED: what happened, reported by the forward that needs this batch */
  int rep;
  nr_py_method method;
  callres cr;
  nr_status s;
  nr_error *err;   /* core-side error (s != NR_OK), malloc'd */
} pset;

typedef struct pfarg {
  struct pf *f;
  int r;
} pfarg;

typedef struct pf {
  nr_pool *pool;
  nr_layer *l;       /* the net's layer (borrowed) */
  int R, K;          /* replicas; buffer sets (prefetch, at least 2R when replicated) */
  pl **rep;          /* R instances; rep[0] is l->priv */
  bool started;      /* sets exist and threads run (or ran) */
  bool sync;         /* not prefetched: rep[0] runs every call */
  pset *set;         /* K */
  nr_blob ***pin;    /* R sets of ntop blobs: each replica's own tops (pinned) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop;
  int64_t taken;     /* batches the net consumed */
  int64_t *next;     /* per replica: the next batch it produces */
  bool *failed;      /* per replica: its thread stopped on a failure */
  pthread_t *th;
  bool *th_on;
  pfarg *arg;
  /* starvation */
  uint64_t waits, waits_logged;
  int64_t wait_ns, last_log_ns;
  struct pf *next_pf;
} pf;

static void pset_clear_failure(pset *s) {
  nr__callres_clear(&s->cr);
  free(s->err);
  s->err = NULL;
  s->s = NR_OK;
}

/* The batch a replica wrote into its pinned tops, into a buffer set (shape and values). */
static nr_status copy_batch(nr_blob **from, nr_blob **to, int n, nr_error *err) {
  for (int t = 0; t < n; t++) {
    if (!from[t]->shaped) continue;
    NR_TRY(nr_blob_reshape_like(to[t], from[t], err));
    if (from[t]->count) memcpy(to[t]->data, from[t]->data, (size_t)from[t]->count * sizeof(float));
  }
  return NR_OK;
}

/* One replica's producer loop (a core thread, all signals blocked). */
static void *pf_thread(void *arg) {
  pfarg *a = arg;
  pf *f = a->f;
  int r = a->r;
  pl *q = f->rep[r];
  nr_pool *p = f->pool;
  pthread_mutex_lock(&f->mu);
  for (;;) {
    int64_t m = f->next[r];
    while (!f->stop && m >= f->taken + f->K) pthread_cond_wait(&f->cv, &f->mu);
    if (f->stop) break;
    pset *s = &f->set[m % f->K];
    s->st = PS_BUSY;
    s->batch = m;
    pthread_mutex_unlock(&f->mu);
    q->fake.top = f->pin[r];
    callres cr = {0};
    nr_error e;
    e.msg[0] = '\0';
    nr_py_method meth = NR_PY_RESHAPE;
    nr_status st = nr__call_once(p, q, meth, &cr, &e);
    if (st == NR_OK && cr.r == WR_OK) {
      meth = NR_PY_FORWARD;
      st = nr__call_once(p, q, meth, &cr, &e);
    }
    if (st == NR_OK && cr.r == WR_OK) st = copy_batch(f->pin[r], s->b, f->l->ntop, &e);
    pthread_mutex_lock(&f->mu);
    if (st == NR_OK && cr.r == WR_OK) {
      s->st = PS_READY;
      f->next[r] = m + f->R;
      pthread_cond_broadcast(&f->cv);
      continue;
    }
    s->st = PS_FAILED;
    s->rep = r;
    s->method = meth;
    s->cr = cr;
    s->s = st;
    if (st != NR_OK && (s->err = malloc(sizeof *s->err))) *s->err = e;
    f->failed[r] = true;
    pthread_cond_broadcast(&f->cv);
    break;
  }
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

static nr_status pf_threads_start(pf *f, nr_error *err) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the main thread */
  f->stop = false;
  nr_status st = NR_OK;
  for (int r = 0; r < f->R && st == NR_OK; r++) {
    if (f->th_on[r] || f->failed[r]) continue;
    f->arg[r] = (pfarg){f, r};
    int e = pthread_create(&f->th[r], NULL, pf_thread, &f->arg[r]);
    if (e) st = nr_err_set(err, NR_ERR_NOMEM, "cannot start a prefetch thread: %s", strerror(e));
    else f->th_on[r] = true;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return st;
}

/* Stops and joins the threads (a thread in the middle of a batch finishes it first).
 * bounded: the layer is going away — a batch still running after 5 s (a hung layer without
 * --py-timeout) ends with its worker's SIGKILL rather than hang the exit. */
static void pf_threads_stop(pf *f, bool bounded) {
  pthread_mutex_lock(&f->mu);
  f->stop = true;
  pthread_cond_broadcast(&f->cv);
  pthread_mutex_unlock(&f->mu);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 5;
  for (int r = 0; r < f->R; r++) {
    if (!f->th_on[r]) continue;
    if (bounded && pthread_timedjoin_np(f->th[r], NULL, &until) == 0) {
      f->th_on[r] = false;
      continue;
    }
    if (bounded) {
      /* the watcher wakes the thread; it reaps */
      nr__worker_signal(&f->pool->w[f->rep[r]->w], SIGKILL);
    }
    pthread_join(f->th[r], NULL);
    f->th_on[r] = false;
  }
}

static void pf_pause_all(nr_pool *p) {
  for (pf *f = p->pfs; f; f = f->next_pf)
    if (f->started && !f->sync) pf_threads_stop(f, false);
}

static void pf_resume_all(nr_pool *p) {
  for (pf *f = p->pfs; f; f = f->next_pf)
    if (f->started && !f->sync) {
      nr_error e;
      pf_threads_start(f, &e); /* a replica without its thread fails when it is needed */
    }
}

/* Worker widx is about to be restarted (threads paused): each replica living there will
 * be re-created at the batch it has to produce next, and a batch it failed to produce is
 * to be produced again. */
static void pf_before_restart(nr_pool *p, int widx) {
  for (pf *f = p->pfs; f; f = f->next_pf) {
    if (!f->started || f->sync) continue;
    for (int r = 0; r < f->R; r++) {
      pl *q = f->rep[r];
      if (q->w != widx) continue;
      q->first_batch = f->next[r];
      q->fake.top = f->pin[r];
      f->failed[r] = false;
      for (int k = 0; k < f->K; k++)
        if (f->set[k].st == PS_FAILED && f->set[k].rep == r) {
          pset_clear_failure(&f->set[k]);
          f->set[k].st = PS_FREE;
        }
    }
  }
}

/* A restart pauses the prefetch threads, re-creates the replicas of the restarted worker
 * at their next batch, and resumes the threads. */
static const restart_hooks pf_restart_hooks = {pf_pause_all, pf_before_restart,
                                                pf_resume_all};

static nr_status blobs_like(nr_pool *p, nr_layer *l, nr_blob ***out, nr_error *err) {
  nr_blob **b = calloc((size_t)l->ntop, sizeof *b);
  if (!b) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  *out = b;
  for (int t = 0; t < l->ntop; t++) {
    NR_TRY(nr_blob_create(l->top[t]->name, &p->alloc, &b[t], err));
    if (l->top[t]->shaped) NR_TRY(nr_blob_reshape_like(b[t], l->top[t], err));
  }
  return NR_OK;
}

static void blobs_free(nr_blob **b, int n) {
  for (int t = 0; b && t < n; t++) nr_blob_destroy(b[t]);
  free(b);
}

/* R for layer `name` from "layer=R[,layer2=R2]" (nr_pool_opts.replicas), or 0 if absent. */
static long replicas_for(const char *map, const char *name) {
  size_t n = strlen(name);
  for (const char *s = map; s && *s;) {
    const char *eq = strchr(s, '='), *end = strchr(s, ',');
    if (!end) end = s + strlen(s);
    if (eq && eq < end && (size_t)(eq - s) == n && strncmp(s, name, n) == 0)
      return strtol(eq + 1, NULL, 10);
    s = *end ? end + 1 : end;
  }
  return 0;
}

/* At the layer's setup: the controller and its R instances (placed, not yet set up). */
nr_status nr__pf_create(nr_pool *p, nr_layer *l, nr_error *err) {
  const Caffe__PythonParameter *pp = l->param->python_param;
  long want = replicas_for(p->o.replicas, l->name);
  if (want <= 0 && pp) want = pp->replicas;
  int R = want > 1 ? (int)(want > 4096 ? 4096 : want) : 1;
  if (R > p->max_workers) {
    if (nr__pool_log(p))
      fprintf(nr__pool_log(p), "netrun: layer '%s': replicas: %d capped at the pool size (%d "
              "Python worker%s)\n", l->name, R, p->max_workers, p->max_workers == 1 ? "" : "s");
    R = p->max_workers;
  }
  pf *f = calloc(1, sizeof *f);
  if (!f) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  f->pool = p;
  f->l = l;
  f->R = R;
  /* Replicated: two sets per replica at least, so a replica can finish a batch while the
   * net still waits for another replica's (batches are taken in order). */
  int min_sets = R > 1 ? 2 * R : 1;
  f->K = p->o.prefetch > min_sets ? p->o.prefetch : min_sets;
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->cv, NULL);
  f->rep = calloc((size_t)R, sizeof *f->rep);
  f->next = calloc((size_t)R, sizeof *f->next);
  f->failed = calloc((size_t)R, sizeof *f->failed);
  f->th = calloc((size_t)R, sizeof *f->th);
  f->th_on = calloc((size_t)R, sizeof *f->th_on);
  f->arg = calloc((size_t)R, sizeof *f->arg);
  f->next_pf = p->pfs;
  p->pfs = f; /* listed first: nr__pf_release frees it whatever happens next */
  p->on_restart = &pf_restart_hooks;
  if (!f->rep || !f->next || !f->failed || !f->th || !f->th_on || !f->arg)
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  for (int r = 0; r < R; r++) {
    pl *q = NULL;
    nr_status s = nr__pl_new(p, l, R > 1 ? NR_PLACE_SPREAD : NR_PLACE_OWN, &q, err);
    if (q) {
      q->replica = r;
      q->nreplicas = R;
      q->first_batch = r;
      f->next[r] = r;
      f->rep[r] = q;
    }
    if (r == 0 && q) {
      q->pf = f;
      l->priv = q;
    }
    NR_TRY(s);
  }
  return NR_OK;
}

/* After the first reshape of replica 0 (on the net's own tops, which the net needs shaped
 * to set up the next layers): buffer sets, the other replicas' setup, the threads. */
static nr_status pf_start(nr_pool *p, pf *f, nr_error *err) {
  nr_layer *l = f->l;
  if (l->nblobs > 0) {
    if (f->R > 1)
      return nr_err_set(err, NR_ERR_INPUT,
                        "a Python data layer with learnable blobs cannot be replicated "
                        "(python_param.replicas: %d): its output depends on parameters the "
                        "solver changes", f->R);
    f->sync = true; /* runs in step with the net, like any other Python layer */
    return NR_OK;
  }
  f->set = calloc((size_t)f->K, sizeof *f->set);
  if (!f->set) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  for (int k = 0; k < f->K; k++) {
    f->set[k].batch = -1;
    NR_TRY(blobs_like(p, l, &f->set[k].b, err));
  }
  f->pin = calloc((size_t)f->R, sizeof *f->pin);
  if (!f->pin) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  for (int r = 0; r < f->R; r++) NR_TRY(blobs_like(p, l, &f->pin[r], err));
  /* Replica 0 was set up on the net's tops: its pinned tops take that very memory (views
   * the layer kept stay right), the net's tops the fresh buffers of the same shape. */
  for (int t = 0; t < l->ntop; t++) nr_blob_swap(l->top[t], f->pin[0][t]);
  for (int r = 0; r < f->R; r++) {
    pl *q = f->rep[r];
    q->fake = *l;
    q->fake.priv = q;
    q->pb.l = &q->fake;
    q->fake.top = f->pin[r];
    if (r == 0) continue; /* set up already, on what is now pin[0] */
    nr_status s = nr__pl_call(p, q, NR_PY_SETUP, err);
    if (s == NR_OK) s = nr__pl_call(p, q, NR_PY_RESHAPE, err);
    if (s != NR_OK) return nr_err_prefix(err, "replica %d of %d", r, f->R);
  }
  f->started = true;
  if (nr__pool_log(p)) {
    char ws[256] = "";
    size_t off = 0;
    for (int r = 0; r < f->R && off < sizeof ws - 16; r++)
      off += (size_t)snprintf(ws + off, sizeof ws - off, "%s%d", r ? ", " : "", f->rep[r]->w);
    fprintf(nr__pool_log(p), "netrun: Python data layer '%s' (phase %s): %d replica%s on "
            "worker%s %s, %d batches prefetched\n", l->name,
            l->phase == NR_TEST ? "TEST" : "TRAIN", f->R, f->R == 1 ? "" : "s",
            f->R == 1 ? "" : "s", ws, f->K);
  }
  return pf_threads_start(f, err);
}

/* The net's forward: wait for batch `taken`, swap it into the net's tops. */
static nr_status pf_forward(nr_pool *p, pf *f, nr_error *err) {
  nr_layer *l = f->l;
  int64_t n = f->taken;
  pset *s = &f->set[n % f->K];
  int64_t t0 = 0;
  pthread_mutex_lock(&f->mu);
  for (;;) {
    if (s->batch == n && s->st == PS_READY) break;
    if (s->batch == n && s->st == PS_FAILED) {
      pl *q = f->rep[s->rep];
      worker *w = &p->w[q->w];
      if (w->failed) { /* reported before (the worker is closed: its pid is gone) */
        pthread_mutex_unlock(&f->mu);
        return nr__gone_error(q, NR_PY_FORWARD, w, err);
      }
      bool died = s->s == NR_OK && (s->cr.r == WR_DEAD || s->cr.r == WR_TIMEOUT);
      if (died && p->restarts < p->o.max_restarts) {
        char next[300];
        snprintf(next, sizeof next, "; replica %d of layer '%s' produces batch %lld again",
                 s->rep, l->name, (long long)n);
        nr__restart_count(p, q, NR_PY_FORWARD, &s->cr, next);
        pthread_mutex_unlock(&f->mu);
        nr_status st = nr__restart_worker(p, w, err);
        if (st != NR_OK) return st; /* w is failed for good */
        pthread_mutex_lock(&f->mu);
        continue;
      }
      nr_status st;
      if (s->s != NR_OK)
        st = nr_err_set(err, s->s, "%s", s->err ? s->err->msg : "prefetch failed");
      else
        st = nr__call_error(p, q, s->method, &s->cr, err);
      pthread_mutex_unlock(&f->mu);
      if ((died || s->cr.r == WR_PROTO) && w->pid && w->reaped) nr__worker_fail(p, w, err->msg);
      return st;
    }
    if (!f->th_on[n % f->R]) { /* its producer never started (pf_threads_start failed) */
      pthread_mutex_unlock(&f->mu);
      return nr_err_set(err, NR_ERR_INTERNAL, "no prefetch thread for replica %d of layer '%s'",
                        (int)(n % f->R), l->name);
    }
    if (!t0) t0 = nr_wire_now_ns();
    pthread_cond_wait(&f->cv, &f->mu);
  }
  for (int t = 0; t < l->ntop; t++) nr_blob_swap(l->top[t], s->b[t]);
  s->st = PS_FREE;
  f->taken++;
  pthread_cond_broadcast(&f->cv);
  pthread_mutex_unlock(&f->mu);
  if (t0) { /* starvation: say so, at most every 10 s (Caffe: "Waiting for data") */
    int64_t now = nr_wire_now_ns();
    f->waits++;
    f->wait_ns += now - t0;
    if (nr__pool_log(p) && (f->waits == 1 || now - f->last_log_ns > 10000000000LL)) {
      fprintf(nr__pool_log(p), "Waiting for data (Python data layer '%s', phase %s: the net waited "
              "for %llu of %lld batches, %.2f ms per wait)\n", l->name,
              l->phase == NR_TEST ? "TEST" : "TRAIN", (unsigned long long)f->waits,
              (long long)f->taken, (double)f->wait_ns / (double)f->waits / 1e6);
      f->last_log_ns = now;
    }
  }
  return NR_OK;
}

nr_status nr__pf_call(nr_pool *p, pf *f, nr_py_method m, nr_error *err) {
  pl *q0 = f->rep[0];
  switch (m) {
    case NR_PY_SETUP: return nr__pl_call(p, q0, m, err);
    case NR_PY_RESHAPE:
      if (f->sync) return nr__pl_call(p, q0, m, err);
      if (f->started) return NR_OK; /* the tops hold the current batch */
      NR_TRY(nr__pl_call(p, q0, m, err));
      return pf_start(p, f, err);
    case NR_PY_FORWARD:
      if (f->sync) return nr__pl_call(p, q0, m, err);
      if (!f->started) NR_TRY(nr__pf_call(p, f, NR_PY_RESHAPE, err));
      return pf_forward(p, f, err);
    case NR_PY_BACKWARD:
      return f->sync ? nr__pl_call(p, q0, m, err) : NR_OK; /* no bottoms, no parameters */
  }
  return NR_OK;
}

void nr__pf_release(nr_pool *p, pf *f) {
  if (f->started && !f->sync) pf_threads_stop(f, true);
  for (int r = f->R - 1; r >= 0; r--)
    if (f->rep && f->rep[r]) nr__pl_free(p, f->rep[r]);
  for (int k = 0; f->set && k < f->K; k++) {
    pset_clear_failure(&f->set[k]);
    blobs_free(f->set[k].b, f->l->ntop);
  }
  free(f->set);
  for (int r = 0; f->pin && r < f->R; r++) blobs_free(f->pin[r], f->l->ntop);
  free(f->pin);
  for (pf **pp = &p->pfs; *pp; pp = &(*pp)->next_pf)
    if (*pp == f) {
      *pp = f->next_pf;
      break;
    }
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->cv);
  free(f->rep);
  free(f->next);
  free(f->failed);
  free(f->th);
  free(f->th_on);
  free(f->arg);
  free(f);
}

/* Data-layer statistics for `netrun time` and tests. */
int64_t nr_pool_data_waits(const nr_pool *p, double *wait_ms) {
  int64_t n = 0;
  double ms = 0;
  for (const pf *f = p->pfs; f; f = f->next_pf) {
    n += (int64_t)f->waits;
    ms += (double)f->wait_ns / 1e6;
  }
  if (wait_ms) *wait_ms = ms;
  return n;
}
