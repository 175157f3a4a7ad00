/* parallel.c: the helper-thread pool of parallel.h: the pool's state, the helpers' loop,
 * nr__parallel_run (one job over the caller and the helpers) and nr__parallel_for on top.
 *
 * A job is published under a new generation number: helpers sleep until the generation
 * changes, then claim parts through pool.claim (generation << 32 | a bit per part taken),
 * so a helper that wakes late, after its job is over, finds a stale generation and claims
 * nothing. Thread t (the caller is 0, helpers 1, 2, ... in the order they started) first
 * claims its own block of parts, [parts·t/T, parts·(t+1)/T) of T threads, then takes what
 * is left from the other end: consecutive jobs cut the same way give each thread the same
 * share of the data, which stays in its core's cache from one job to the next, and a
 * thread that is late still finds its work done by the others. */
#include "parallel.h"

#include <cblas.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

typedef struct pool_job {
  nr_parallel_part_fn fn;
  void *ctx;
  int parts;
} pool_job;

/* How long a helper keeps polling for the next job after its last part, and the caller for
 * the helpers' last parts, before they sleep on a condition variable. A net's iteration
 * posts its jobs (GEMMs, im2col, pooling) microseconds to a few hundred microseconds apart;
 * waking a sleeping thread costs the waker a futex call and the sleeper tens of
 * microseconds in a virtual machine (its idle vCPU must be scheduled again), which on LeNet
 * ate the second core's whole gain. The polling is bounded, so an idle process sleeps. */
#define NR_PARALLEL_SPIN_NS 300000

static struct {
  pthread_mutex_t busy; /* held by the caller that owns the pool for one job */
  pthread_mutex_t mu;
  pthread_cond_t wake, done_cv;
  int nhelpers;
  int sleepers;         /* helpers asleep on wake (under mu) */
  bool caller_sleeps;   /* the caller is asleep on done_cv (under mu) */
  _Atomic uint64_t gen; /* bumped for each job (written under mu) */
  pool_job job;         /* the current job (under mu) */
  int threads;          /* the threads its parts are shared between (under mu) */
  _Atomic int done;     /* parts finished */
  uint64_t failed;      /* parts that returned false on a helper (under mu) */
  _Atomic uint64_t claim; /* gen << 32 | bit p set when part p is taken */
  _Atomic int hush;       /* nr__parallel_hush: above 0, nobody polls */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_COND_INITIALIZER, 0, 0, false, 0, {0}, 0, 0, 0, 0, 0};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static int64_t mono_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Polls until cond(arg) holds or NR_PARALLEL_SPIN_NS have passed; true if it holds. */
static bool spin_until(bool (*cond)(uint64_t), uint64_t arg) {
  const int64_t t0 = mono_ns();
  for (int i = 1;; i++) {
    if (cond(arg)) return true;
    cpu_relax();
    if (i % 64 == 0 && (atomic_load_explicit(&pool.hush, memory_order_relaxed) > 0 ||
                        mono_ns() - t0 > NR_PARALLEL_SPIN_NS))
      return cond(arg);
  }
}

static bool gen_moved(uint64_t seen) { return atomic_load(&pool.gen) != seen; }
static bool all_done(uint64_t parts) { return (uint64_t)atomic_load(&pool.done) >= parts; }

/* Claims a part of job generation `gen` for thread `self` of `threads`: the first free
 * one of its own block, else the last free one of all; -1 when all are taken or the job is
 * no longer current. */
static int pool_claim(uint64_t gen, int parts, int self, int threads) {
  const int lo = self < threads ? parts * self / threads : 0;
  const int hi = self < threads ? parts * (self + 1) / threads : 0;
  uint64_t v = atomic_load(&pool.claim);
  for (;;) {
    if (v >> 32 != (gen & 0xffffffffu)) return -1;
    int p = -1;
    for (int q = lo; q < hi && p < 0; q++)
      if (!(v >> q & 1)) p = q;
    for (int q = parts - 1; q >= 0 && p < 0; q--)
      if (!(v >> q & 1)) p = q;
    if (p < 0) return -1;
    if (atomic_compare_exchange_weak(&pool.claim, &v, v | (uint64_t)1 << p)) return p;
  }
}

static void *helper_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&pool.mu);
  uint64_t seen = atomic_load(&pool.gen); /* registered before the job that needs it is posted */
  const int self = ++pool.nhelpers;
  pthread_cond_broadcast(&pool.done_cv);
  for (;;) {
    if (atomic_load(&pool.gen) == seen) {
      pthread_mutex_unlock(&pool.mu);
      spin_until(gen_moved, seen);
      pthread_mutex_lock(&pool.mu);
      while (atomic_load(&pool.gen) == seen) {
        pool.sleepers++;
        pthread_cond_wait(&pool.wake, &pool.mu);
        pool.sleepers--;
      }
    }
    seen = atomic_load(&pool.gen);
    const pool_job job = pool.job;
    const int threads = pool.threads;
    pthread_mutex_unlock(&pool.mu);
    int p;
    while ((p = pool_claim(seen, job.parts, self, threads)) >= 0) {
      /* A claimed part keeps the job current: its caller waits for it. */
      const bool ok = job.fn(job.ctx, p, job.parts);
      if (!ok) {
        pthread_mutex_lock(&pool.mu);
        pool.failed |= (uint64_t)1 << p;
        pthread_mutex_unlock(&pool.mu);
      }
      if (atomic_fetch_add(&pool.done, 1) + 1 == job.parts) {
        pthread_mutex_lock(&pool.mu);
        if (pool.caller_sleeps) pthread_cond_signal(&pool.done_cv);
        pthread_mutex_unlock(&pool.mu);
      }
    }
    pthread_mutex_lock(&pool.mu);
  }
  return NULL;
}

static int pool_grow(int want) {
  pthread_mutex_lock(&pool.mu);
  int have = pool.nhelpers;
  pthread_mutex_unlock(&pool.mu);
  while (have < want) {
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    /* Helpers must not take the caller's signals (the CLI handles SIGINT in main). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&t, &at, helper_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
    if (rc != 0) break;
    pthread_mutex_lock(&pool.mu); /* wait until it has registered (see helper_main) */
    while (pool.nhelpers < have + 1) pthread_cond_wait(&pool.done_cv, &pool.mu);
    have = pool.nhelpers;
    pthread_mutex_unlock(&pool.mu);
  }
  return have;
}

void nr__parallel_hush(int delta) { atomic_fetch_add(&pool.hush, delta); }

int nr__parallel_threads(void) {
  const int t = openblas_get_num_threads();
  return t < 1 ? 1 : t > NR_PARALLEL_MAX_THREADS ? NR_PARALLEL_MAX_THREADS : t;
}

/* The caller takes pool.busy for the whole job, posts it under a new generation, claims
 * parts like a helper, then waits for the parts helpers have claimed. A part that failed
 * on a helper (out of memory for that thread's own buffers, say) is rerun on the caller. */
bool nr__parallel_run(nr_parallel_part_fn fn, void *ctx, int parts) {
  bool ok = true;
  if (parts < 2 || parts > NR_PARALLEL_MAX_PARTS || pthread_mutex_trylock(&pool.busy) != 0) {
    for (int p = 0; p < parts; p++) ok = fn(ctx, p, parts) && ok;
    return ok;
  }
  const int threads = pool_grow(nr__parallel_threads() - 1) + 1;
  pthread_mutex_lock(&pool.mu);
  const uint64_t gen = atomic_load(&pool.gen) + 1;
  pool.job = (pool_job){fn, ctx, parts};
  pool.threads = threads;
  atomic_store(&pool.done, 0);
  pool.failed = 0;
  atomic_store(&pool.claim, (gen & 0xffffffffu) << 32);
  atomic_store(&pool.gen, gen); /* polling helpers start here */
  if (pool.sleepers) pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.mu);
  int p, mine = 0;
  while ((p = pool_claim(gen, parts, 0, threads)) >= 0) {
    ok = fn(ctx, p, parts) && ok;
    mine++;
  }
  atomic_fetch_add(&pool.done, mine);
  if (!spin_until(all_done, (uint64_t)parts)) {
    pthread_mutex_lock(&pool.mu);
    pool.caller_sleeps = true;
    while (atomic_load(&pool.done) < parts) pthread_cond_wait(&pool.done_cv, &pool.mu);
    pool.caller_sleeps = false;
    pthread_mutex_unlock(&pool.mu);
  }
  pthread_mutex_lock(&pool.mu);
  const uint64_t failed = pool.failed;
  pthread_mutex_unlock(&pool.mu);
  for (p = 0; p < parts; p++)
    if (failed & ((uint64_t)1 << p)) ok = fn(ctx, p, parts) && ok;
  pthread_mutex_unlock(&pool.busy);
  return ok;
}

typedef struct pfor_ctx {
  int64_t n;
  void (*fn)(void *ctx, int64_t lo, int64_t hi);
  void *ctx;
} pfor_ctx;

static bool pfor_part(void *ctx, int p, int parts) {
  const pfor_ctx *c = ctx;
  const int64_t lo = c->n * p / parts, hi = c->n * (p + 1) / parts;
  if (lo < hi) c->fn(c->ctx, lo, hi);
  return true;
}

void nr__parallel_for(int64_t n, int64_t grain, void (*fn)(void *ctx, int64_t lo, int64_t hi),
                      void *ctx) {
  if (n <= 0) return;
  int64_t parts = grain > 0 ? n / grain : n;
  const int threads = nr__parallel_threads();
  if (threads < 2) parts = 1;
  if (parts > NR_PARALLEL_PARTS_PER_THREAD * threads)
    parts = NR_PARALLEL_PARTS_PER_THREAD * threads;
  if (parts > NR_PARALLEL_MAX_PARTS) parts = NR_PARALLEL_MAX_PARTS;
  if (parts < 2) {
    fn(ctx, 0, n);
    return;
  }
  pfor_ctx c = {n, fn, ctx};
  nr__parallel_run(pfor_part, &c, (int)parts);
}
