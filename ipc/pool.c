/* pool.c: the worker pool's entry points — creating and destroying a pool, the Python
 * backend's call and release (a data layer goes to pool_prefetch.c, any other layer to the
 * restart policy of pool_restart.c) and the diagnostics. What each of the other pool files
 * holds: pool_int.h. The wire format is in wire.h; the design in docs/workers.md. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "locate.h"
#include "pool_int.h"

/* The backend's call: a layer's first setup makes its instance (a prefetched data layer's
 * controller and replicas, or one instance placed on a worker); then each call goes to the
 * prefetch or to the restart policy. */
static nr_status pool_call(void *ctx, nr_layer *l, nr_py_method m, nr_error *err) {
  nr_pool *p = ctx;
  pl *q = l->priv;
  if (!q) {
    if (m != NR_PY_SETUP)
      return nr_err_set(err, NR_ERR_INTERNAL, "Python layer '%s' called before setup", l->name);
    if (p->o.prefetch > 0 && l->nbottom == 0 && l->ntop > 0) {
      NR_TRY(nr__pf_create(p, l, err));
    } else {
      nr_status s = nr__pl_new(p, l, NR_PLACE_STEP, &q, err);
      if (q) l->priv = q;
      NR_TRY(s);
    }
    q = l->priv;
  }
  if (q->pf) return nr__pf_call(p, q->pf, m, err);
  return nr__pl_call(p, q, m, err);
}

/* The backend's release: the layer's instances go (their Python objects are dropped). */
static void pool_release(void *ctx, nr_layer *l) {
  nr_pool *p = ctx;
  pl *q = l->priv;
  if (!q) return;
  if (q->pf) nr__pf_release(p, q->pf);
  else nr__pl_free(p, q);
  l->priv = NULL;
}

static char *find_worker(const char *given) {
  if (given) return access(given, X_OK) == 0 ? strdup(given) : NULL;
  const char *const where[] = {"$EXE/netrun-worker", "$LIB/../bin/netrun-worker",
                               NR_WORKER_BUILD_PATH, NR_WORKER_INSTALL_PATH};
  return nr__locate(where, 4, X_OK);
}

nr_status nr_pool_create(const nr_pool_opts *o, nr_pool **out, nr_error *err) {
  nr_pool *p = calloc(1, sizeof *p);
  if (!p) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  p->o = o ? *o : (nr_pool_opts){-1, 0, 0, NULL, NULL, 0, 0, NULL, NULL};
  p->o.python_path = p->o.replicas = NULL; /* the pool's own copies, below */
  if (p->o.prefetch < 0) p->o.prefetch = 0;
  if (p->o.max_blob_bytes <= 0) p->o.max_blob_bytes = NR_POOL_DEFAULT_MAX_BLOB_BYTES;
  p->wake[0] = p->wake[1] = -1;
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++) {
    p->w[i] = (worker){.idx = i, .pidfd = -1, .sock = -1, .fault_fd = -1};
    pthread_mutex_init(&p->w[i].io, NULL);
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_mutex_init(&p->seg_mu, NULL);
  pthread_mutex_init(&p->zy_mu, NULL);
  p->zy_sock = -1;
  if (!(p->worker_path = find_worker(p->o.worker_path))) {
    nr_status s = nr_err_set(err, NR_ERR_IO,
                             "cannot find the netrun-worker executable%s%s (looked next to "
                             "this program, in the build tree and in " NR_WORKER_INSTALL_PATH
                             ")",
                             p->o.worker_path ? " at " : "",
                             p->o.worker_path ? p->o.worker_path : "");
    nr_pool_destroy(p);
    return s;
  }
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpu < 1) ncpu = 1;
  p->ncpu = (int)ncpu;
  p->max_workers = p->o.nworkers > 0 ? p->o.nworkers : (int)ncpu;
  if (p->max_workers > NR_POOL_MAX_WORKERS) p->max_workers = NR_POOL_MAX_WORKERS;
  p->step_w = -1;
  char types[4096];
  nr_layer_type_list(types, sizeof types);
  p->layer_types = strdup(types);
  p->alloc = (nr_allocator){p, nr__seg_alloc, nr__seg_free};
  p->be = (nr_py_backend){p, pool_call, pool_release};
  /* one descriptor per blob segment: make room for big nets */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max && rl.rlim_cur < 65536) {
    rl.rlim_cur = rl.rlim_max < 65536 ? rl.rlim_max : 65536;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if ((o && o->python_path && !(p->o.python_path = strdup(o->python_path))) ||
      (o && o->replicas && !(p->o.replicas = strdup(o->replicas)))) {
    nr_pool_destroy(p);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  }
  if (pipe2(p->wake, O_CLOEXEC) < 0 || !p->layer_types) {
    nr_status s = nr_err_set(err, NR_ERR_IO, "cannot create the worker pool: %s", strerror(errno));
    nr_pool_destroy(p);
    return s;
  }
  pthread_cond_init(&p->spawn_cv, NULL);
  if (pthread_create(&p->watcher, NULL, nr__watcher_main, p)) {
    nr_status s = nr_err_set(err, NR_ERR_IO, "cannot start the worker watcher thread");
    nr_pool_destroy(p);
    return s;
  }
  p->watcher_on = true;
  *out = p;
  return NR_OK;
}

nr_py_backend *nr_pool_backend(nr_pool *p) { return &p->be; }
const nr_allocator *nr_pool_allocator(nr_pool *p) { return &p->alloc; }
int nr_pool_nworkers(const nr_pool *p) { return p->nstarted; }
pid_t nr_pool_worker_pid(const nr_pool *p, int i) {
  return i >= 0 && i < NR_POOL_MAX_WORKERS ? p->w[i].pid : 0;
}
int nr_pool_failed_workers(const nr_pool *p) {
  int n = 0;
  for (int i = 0; i < p->nstarted; i++) n += p->w[i].failed;
  return n;
}

int nr_pool_restarts(const nr_pool *p) { return p->restarts; }

void nr_pool_destroy(nr_pool *p) {
  if (!p) return;
  /* data layers of nets not destroyed (documented misuse) or half-created: stop their
   * threads before the workers go */
  while (p->pfs) nr__pf_release(p, p->pfs);
  /* ask every worker to leave, then give them together up to 2 s before SIGKILL */
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++) {
    worker *w = &p->w[i];
    if (!w->pid || w->reaped) continue;
    if (!atomic_load(&w->dead)) {
      w->ctl->op = NR_OP_EXIT;
      w->ctl->len = 0;
      nr__post(w, NULL);
    }
    shutdown(w->sock, SHUT_RDWR);
  }
  int64_t until = nr_wire_now_ns() + 2000000000LL;
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++) {
    worker *w = &p->w[i];
    if (!w->pid || w->reaped) continue;
    for (;;) {
      int st;
      pid_t r = waitpid(w->pid, &st, WNOHANG);
      if (r == w->pid || (r < 0 && errno != EINTR)) {
        w->reaped = true;
        w->wstatus = st;
        break;
      }
      if (nr_wire_now_ns() > until) {
        nr__worker_signal(w, SIGKILL);
        nr__worker_reap(w);
        break;
      }
      usleep(2000);
    }
  }
  nr__zygote_stop(p);
  if (p->watcher_on) {
    char c = 'q';
    ssize_t r = write(p->wake[1], &c, 1);
    (void)r;
    pthread_join(p->watcher, NULL);
  }
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++)
    if (p->w[i].pid || p->w[i].ctl) nr__worker_close(p, &p->w[i]);
    else free(p->w[i].forget);
  /* Segments still allocated belong to blobs the caller has not destroyed yet; they stay
   * valid memory until then only if the caller keeps the pool (documented order). */
  while (p->layers) {
    pl *q = p->layers;
    p->layers = q->next;
    q->pb.l->priv = NULL;
    nr__pybind_free(&q->pb);
    free(q);
  }
  if (p->wake[0] >= 0) close(p->wake[0]);
  if (p->wake[1] >= 0) close(p->wake[1]);
  pthread_mutex_destroy(&p->mu);
  free((char *)p->o.python_path);
  free((char *)p->o.replicas);
  pthread_mutex_destroy(&p->seg_mu);
  pthread_mutex_destroy(&p->zy_mu);
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++) {
    pthread_mutex_destroy(&p->w[i].io);
    free(p->w[i].first_err);
  }
  free(p->layer_types);
  free(p->worker_path);
  free(p);
}
