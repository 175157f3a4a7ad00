/* pool.c: the worker pool — shared-memory allocator, worker processes, dispatch, liveness,
 * restarts. The wire format is in wire.h; the design in docs/workers.md. */
#define _GNU_SOURCE
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "locate.h"
#include "pybind.h"
#include "wire.h"

extern char **environ;

#define NR_POOL_MAX_WORKERS 64
#define NR_CORE_MAX_SPIN_NS 200000

/* ---------- data ---------- */

/* One shared-memory segment = one blob buffer (an nr_buf's memory). */
typedef struct nr_seg {
  uint32_t id;
  int fd;
  void *ptr;
  size_t size;
  uint64_t known; /* bit w: worker w has it mapped */
  struct nr_seg *prev, *next;
} nr_seg;

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
  uint32_t *forget;   /* segment ids freed since the last request (under seg_mu) */
  size_t nforget, capforget;
  /* Held for each exchange with this worker: the main thread and the prefetch threads of
   * data layers (see "prefetched data layers" below) share its control block. */
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
};

static FILE *logf_(nr_pool *p) { return p->o.log; }

/* What the Python-layer bindings (pybind.h) call in the engine. */
static const nr_pybind_engine engine = {nr_blob_reshape, nr_layer_add_param,
                                        nr_blob_shape_str};

struct pf;
static void pf_release(nr_pool *p, struct pf *f);

/* ---------- shared-memory allocator ---------- */

/* A shared-memory file of the pool: anonymous (no name in any file system: only the core
 * and the workers it hands the descriptor to can reach it) and mode 0600. -1 (errno). */
static int private_memfd(const char *name) {
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd >= 0 && fchmod(fd, 0600) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static nr_status seg_alloc(void *ctx, size_t bytes, void **ptr, void **handle, nr_error *err) {
  nr_pool *p = ctx;
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  size_t size = (bytes + pg - 1) / pg * pg;
  if (!size) size = pg;
  nr_seg *s = calloc(1, sizeof *s);
  if (!s) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  s->fd = private_memfd("netrun-blob");
  if (s->fd < 0) {
    free(s);
    return nr_err_set(err, errno == ENOMEM ? NR_ERR_NOMEM : NR_ERR_IO,
                      "cannot create a shared-memory segment: %s", strerror(errno));
  }
  if (ftruncate(s->fd, (off_t)size) < 0) {
    int e = errno;
    close(s->fd);
    free(s);
    return nr_err_set(err, NR_ERR_NOMEM, "cannot size a shared-memory segment of %zu bytes: %s",
                      size, strerror(e));
  }
  s->ptr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
  if (s->ptr == MAP_FAILED) {
    int e = errno;
    close(s->fd);
    free(s);
    return nr_err_set(err, NR_ERR_NOMEM, "cannot map a shared-memory segment of %zu bytes: %s",
                      size, strerror(e));
  }
  s->size = size;
  pthread_mutex_lock(&p->seg_mu);
  s->id = ++p->next_seg;
  s->next = p->segs;
  if (p->segs) p->segs->prev = s;
  p->segs = s;
  pthread_mutex_unlock(&p->seg_mu);
  *ptr = s->ptr; /* memfd pages start zeroed */
  *handle = s;
  return NR_OK;
}

static void forget_push(worker *w, uint32_t id) {
  if (w->nforget == w->capforget) {
    size_t nc = w->capforget ? 2 * w->capforget : 64;
    uint32_t *nf = realloc(w->forget, nc * sizeof *nf);
    if (!nf) return; /* the worker keeps a stale mapping; memory only */
    w->forget = nf;
    w->capforget = nc;
  }
  w->forget[w->nforget++] = id;
}

static void seg_free(void *ctx, void *ptr, void *handle) {
  nr_pool *p = ctx;
  nr_seg *s = handle;
  if (!s) return;
  pthread_mutex_lock(&p->seg_mu);
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++)
    if (s->known & ((uint64_t)1 << i)) forget_push(&p->w[i], s->id);
  if (s->prev) s->prev->next = s->next;
  else p->segs = s->next;
  if (s->next) s->next->prev = s->prev;
  pthread_mutex_unlock(&p->seg_mu);
  munmap(s->ptr, s->size);
  close(s->fd);
  free(s);
}

/* ---------- watcher: wakes the core when a worker dies ---------- */

unsigned nr__pool_watcher_delay_us;

/* Why a thread with pidfds rather than a SIGCHLD handler: a library must not own the
 * process's SIGCHLD disposition, and a pidfd becomes readable the moment the process
 * exits. The thread marks the worker dead and posts its reply semaphore, so a core
 * blocked in sem_wait wakes at once; the core (not the thread) reaps.
 * The core may kill, reap and replace a worker (a timeout, a bad reply) while this thread
 * is between poll and the lock; the spawn generation it polled tells that death apart from
 * the new process's, which is alive. */
static void *watcher_main(void *arg) {
  nr_pool *p = arg;
  for (;;) {
    struct pollfd fds[NR_POOL_MAX_WORKERS + 1];
    int who[NR_POOL_MAX_WORKERS + 1];
    uint64_t gen[NR_POOL_MAX_WORKERS + 1];
    int n = 0;
    fds[n] = (struct pollfd){p->wake[0], POLLIN, 0};
    who[n++] = -1;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->nstarted; i++) {
      worker *w = &p->w[i];
      if (!w->pid || atomic_load(&w->dead)) continue;
      fds[n] = w->pidfd >= 0 ? (struct pollfd){w->pidfd, POLLIN, 0}
                             : (struct pollfd){w->sock, POLLRDHUP, 0};
      gen[n] = w->gen;
      who[n++] = i;
    }
    pthread_mutex_unlock(&p->mu);
    int r = poll(fds, (nfds_t)n, -1);
    if (r < 0 && errno != EINTR) break;
    if (fds[0].revents) {
      char c[64];
      ssize_t k = read(p->wake[0], c, sizeof c);
      if (k == 0 || (k > 0 && memchr(c, 'q', (size_t)k))) break;
    }
    if (nr__pool_watcher_delay_us) usleep(nr__pool_watcher_delay_us);
    pthread_mutex_lock(&p->mu);
    for (int j = 1; j < n; j++) {
      if (!fds[j].revents) continue;
      worker *w = &p->w[who[j]];
      if (w->pid && w->gen == gen[j] && !atomic_load(&w->dead)) {
        atomic_store(&w->dead, 1);
        sem_post(&w->ctl->rep);
      }
    }
    pthread_mutex_unlock(&p->mu);
  }
  return NULL;
}

static void watcher_kick(nr_pool *p) {
  char c = 'k';
  ssize_t r = write(p->wake[1], &c, 1);
  (void)r;
}

/* ---------- worker processes ---------- */

static int fd_high(int fd) { /* move fd to >= 10 so dup2 onto 3..5 cannot clobber it */
  if (fd >= 10) return fd;
  int n = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return n;
}

static void worker_close(nr_pool *p, worker *w) {
  pthread_mutex_lock(&p->mu);
  if (w->ctl) {
    sem_destroy(&w->ctl->req);
    sem_destroy(&w->ctl->rep);
    munmap(w->ctl, NR_CTL_SIZE);
  }
  w->ctl = NULL;
  if (w->pidfd >= 0) close(w->pidfd);
  if (w->sock >= 0) close(w->sock);
  if (w->fault_fd >= 0) close(w->fault_fd);
  w->pidfd = w->sock = w->fault_fd = -1;
  w->pid = 0;
  pthread_mutex_unlock(&p->mu);
  watcher_kick(p);
  pthread_mutex_lock(&p->seg_mu);
  free(w->forget);
  w->forget = NULL;
  w->nforget = w->capforget = 0;
  for (nr_seg *s = p->segs; s; s = s->next) s->known &= ~((uint64_t)1 << w->idx);
  pthread_mutex_unlock(&p->seg_mu);
}

/* Signals w's process through its pidfd, so a process that was reaped (its pid free for
 * another) is never hit; without a pidfd (old kernel) only while not reaped. */
static void worker_signal(const worker *w, int sig) {
  if (!w->pid) return;
  if (w->pidfd >= 0) (void)pidfd_send_signal(w->pidfd, sig, NULL, 0);
  else if (!w->reaped) kill(w->pid, sig);
}

static void worker_reap(worker *w) {
  if (!w->pid || w->reaped) return;
  int st = 0;
  pid_t r;
  do r = waitpid(w->pid, &st, 0);
  while (r < 0 && errno == EINTR);
  w->reaped = true;
  w->wstatus = st;
}

static nr_status worker_spawn(nr_pool *p, worker *w, nr_error *err) {
  int sv[2] = {-1, -1}, ctlfd = -1, fault = -1;
  nr_ctl *ctl = MAP_FAILED;
  posix_spawn_file_actions_t fa;
  bool fa_init = false;
  nr_status s = NR_OK;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) goto io;
  sv[1] = fd_high(sv[1]);
  ctlfd = fd_high(private_memfd("netrun-ctl"));
  fault = private_memfd("netrun-fault");
  if (sv[1] < 0 || ctlfd < 0 || fault < 0) goto io;
  fault = fd_high(fault);
  if (fault < 0 || ftruncate(ctlfd, NR_CTL_SIZE) < 0) goto io;
  ctl = mmap(NULL, NR_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ctlfd, 0);
  if (ctl == MAP_FAILED) goto io;
  if (sem_init(&ctl->req, 1, 0) < 0 || sem_init(&ctl->rep, 1, 0) < 0) goto io;
  atomic_store(&ctl->req_seq, 0);
  atomic_store(&ctl->rep_seq, UINT32_MAX);
  atomic_store(&ctl->core_cpu, -1);
  atomic_store(&ctl->worker_cpu, -2);
  if (posix_spawn_file_actions_init(&fa)) goto io;
  fa_init = true;
  if (posix_spawn_file_actions_adddup2(&fa, sv[1], NR_FD_SOCK) ||
      posix_spawn_file_actions_adddup2(&fa, ctlfd, NR_FD_CTL) ||
      posix_spawn_file_actions_adddup2(&fa, fault, NR_FD_FAULT))
    goto io;
  char ppid[32];
  snprintf(ppid, sizeof ppid, "%d", (int)getpid());
  char *argv[] = {p->worker_path, ppid, p->layer_types ? p->layer_types : (char *)"", NULL};
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  sigset_t none, def;
  sigemptyset(&none);
  sigemptyset(&def);
  sigaddset(&def, SIGPIPE);
  sigaddset(&def, SIGCHLD);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &def);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid;
  int e = posix_spawn(&pid, p->worker_path, &fa, &at, argv, environ);
  posix_spawnattr_destroy(&at);
  if (e) {
    errno = e;
    goto io;
  }
  close(sv[1]);
  close(ctlfd);
  posix_spawn_file_actions_destroy(&fa);
  pthread_mutex_lock(&p->mu);
  w->pid = pid;
  w->gen++;
  w->pidfd = pidfd_open(pid, 0); /* -1 (old kernel): the watcher polls the socket */
  w->sock = sv[0];
  w->fault_fd = fault;
  w->ctl = ctl;
  atomic_store(&w->dead, 0);
  w->hello = false;
  w->reaped = false;
  w->spin_ns = 20000;
  pthread_mutex_unlock(&p->mu);
  watcher_kick(p);
  if (logf_(p)) fprintf(logf_(p), "netrun: Python worker %d started (pid %d)\n", w->idx, (int)pid);
  return NR_OK;
io:
  s = nr_err_set(err, NR_ERR_IO, "cannot start Python worker %d (%s): %s", w->idx,
                 p->worker_path, strerror(errno));
  if (fa_init) posix_spawn_file_actions_destroy(&fa);
  if (ctl != MAP_FAILED) munmap(ctl, NR_CTL_SIZE);
  for (int i = 0; i < 2; i++)
    if (sv[i] >= 0) close(sv[i]);
  if (ctlfd >= 0) close(ctlfd);
  if (fault >= 0) close(fault);
  return s;
}

/* "was killed by signal SIGSEGV (Segmentation fault)" / "exited with status 3" */
static void death_text(const worker *w, char *buf, size_t len) {
  int st = w->wstatus;
  if (WIFSIGNALED(st)) {
    const char *ab = sigabbrev_np(WTERMSIG(st));
    snprintf(buf, len, "was killed by signal SIG%s (%s)", ab ? ab : "?", strsignal(WTERMSIG(st)));
  } else if (WIFEXITED(st)) {
    snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
  } else {
    snprintf(buf, len, "ended (wait status 0x%x)", st);
  }
}

/* What faulthandler wrote (the last Python stack), at most len-1 bytes, "" if nothing. */
static void fault_text(const worker *w, char *buf, size_t len) {
  buf[0] = '\0';
  if (w->fault_fd < 0) return;
  struct stat st;
  if (fstat(w->fault_fd, &st) < 0 || st.st_size <= 0) return;
  off_t off = st.st_size > (off_t)len - 1 ? st.st_size - (off_t)len + 1 : 0;
  ssize_t n = pread(w->fault_fd, buf, len - 1, off);
  buf[n > 0 ? n : 0] = '\0';
}

/* Kill a worker that overran its time: SIGUSR1 first (faulthandler dumps the stack), then
 * SIGKILL; reap. */
static void worker_kill_hung(worker *w) {
  worker_signal(w, SIGUSR1);
  for (int i = 0; i < 50; i++) { /* up to 0.5 s for the stack */
    struct stat st;
    if (fstat(w->fault_fd, &st) == 0 && st.st_size > 0) {
      usleep(20000);
      break;
    }
    usleep(10000);
  }
  worker_signal(w, SIGKILL);
  worker_reap(w);
}

/* ---------- requests ---------- */

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

static void fdlist_free(fdlist *f) {
  free(f->fds);
  free(f->ids);
}

/* Blob b's segment (*out; NULL for a blob without memory), queued in fl when it is new to
 * worker w. */
static nr_status need_seg(nr_pool *p, worker *w, nr_blob *b, nr_seg **out, fdlist *fl,
                          nr_error *err) {
  *out = NULL;
  if (!b->buf) return NR_OK;
  if (b->buf->alloc != &p->alloc)
    return nr_err_set(err, NR_ERR_INTERNAL,
                      "blob '%s' is not in the worker pool's shared memory (build the net "
                      "with nr_pool_allocator())", b->name ? b->name : "");
  nr_seg *s = b->buf->handle;
  *out = s;
  uint64_t bit = (uint64_t)1 << w->idx;
  pthread_mutex_lock(&p->seg_mu);
  bool known = s->known & bit;
  s->known |= bit; /* marked now; the caller fails the whole request otherwise */
  pthread_mutex_unlock(&p->seg_mu);
  if (known) return NR_OK;
  if (fl->n == fl->cap) {
    int nc = fl->cap ? 2 * fl->cap : 16;
    int *nf = realloc(fl->fds, (size_t)nc * sizeof *nf);
    if (nf) fl->fds = nf;
    uint32_t *ni = realloc(fl->ids, (size_t)nc * sizeof *ni);
    if (ni) fl->ids = ni;
    if (!nf || !ni) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    fl->cap = nc;
  }
  fl->fds[fl->n] = s->fd;
  fl->ids[fl->n] = s->id;
  fl->n++;
  return NR_OK;
}

/* Bytes of a blob of shape dims (count x sizeof(float)), saturating at INT64_MAX. */
static int64_t shape_bytes(int nd, const int64_t *dims) {
  int64_t n = (int64_t)sizeof(float);
  for (int i = 0; i < nd; i++) {
    if (dims[i] == 0) return 0;
    if (n > INT64_MAX / dims[i]) n = INT64_MAX;
    else n *= dims[i];
  }
  return n;
}

/* Posts the message prepared in w->ctl (op, layer, len...) after sending the descriptors
 * in fl (NULL: none). */
static bool post(worker *w, const fdlist *fl) {
  int nfd = fl ? fl->n : 0;
  if (nfd && nr_wire_send_fds(w->sock, fl->fds, fl->ids, nfd)) return false;
  w->ctl->nsegs = (uint32_t)nfd;
  atomic_fetch_add_explicit(&w->ctl->req_seq, 1, memory_order_release);
  sem_post(&w->ctl->req);
  return true;
}

/* Waits for the worker's answer to the message with sequence `seq`. */
static wres wait_reply(nr_pool *p, worker *w, uint32_t seq, int64_t deadline) {
  for (;;) {
    /* The watcher posts `rep` once when the worker dies; another thread may have taken
     * that post already (the main thread and a prefetch thread both waited on this worker
     * across a restart), so a dead worker is checked before waiting, not only after. */
    if (atomic_load(&w->dead) &&
        atomic_load_explicit(&w->ctl->rep_seq, memory_order_acquire) != seq)
      return WR_DEAD;
    int r = nr_wire_wait(&w->ctl->rep, &w->spin_ns, NR_CORE_MAX_SPIN_NS, deadline,
                         &w->ctl->core_cpu, &w->ctl->worker_cpu);
    if (atomic_load_explicit(&w->ctl->rep_seq, memory_order_acquire) == seq) return WR_OK;
    if (r == ETIMEDOUT) return WR_TIMEOUT;
    if (atomic_load(&w->dead)) return WR_DEAD;
    if (r && r != EINTR) return WR_DEAD;
  }
}

/* Serves a nested request (the worker's Python wants a bigger blob or a new parameter)
 * and answers it; the original call continues. Returns 0 (answered), -1 (the worker is
 * gone) or 1: the request breaks the protocol (*bad says how; nothing was answered). */
static int serve_nested(nr_pool *p, worker *w, pl *q, uint32_t op, const char **bad) {
  nr_ctl *c = w->ctl;
  nr_error e2;
  e2.msg[0] = '\0';
  int exc = 0;
  nr_status st = NR_OK;
  nr_blob *b = NULL;
  nr_wire_reply r;
  int rc = nr_wire_read_reply(c, op, &r, bad);
  if (rc == ENOMEM) {
    st = nr_err_set(&e2, NR_ERR_NOMEM, "out of memory");
    exc = 1;
  } else if (rc) {
    nr_wire_reply_clear(&r);
    return 1;
  } else if (!q || *(volatile uint32_t *)&c->layer != q->id) {
    nr_wire_reply_clear(&r);
    *bad = "nested request for another layer than the call's";
    return 1;
  } else {
    int kind = r.nested.kind, idx = r.nested.idx, nd = r.nested.nd;
    const int64_t *dims = r.nested.dims;
    int64_t bytes = shape_bytes(nd, dims);
    if (op == NR_REP_GROW && !nr__pybind_blob(&q->pb, kind, idx)) {
      nr_wire_reply_clear(&r);
      *bad = "grow request for a blob the layer does not have";
      return 1;
    }
    if (bytes > p->o.max_blob_bytes) {
      /* a layer asking for an absurd shape: its Python gets a ValueError */
      nr_blob *nb = op == NR_REP_GROW ? nr__pybind_blob(&q->pb, kind, idx) : NULL;
      st = nr_err_set(&e2, NR_ERR_INPUT, "%s%s%s of %lld bytes is too large (the limit is %lld "
                      "bytes, --py-max-blob-bytes)", nb ? "blob '" : "a new parameter",
                      nb && nb->name ? nb->name : "", nb ? "'" : "", (long long)bytes,
                      (long long)p->o.max_blob_bytes);
    } else if (op == NR_REP_GROW) {
      b = nr__pybind_blob(&q->pb, kind, idx);
      st = nr_blob_reshape(b, nd, dims, &e2);
    } else { /* NR_REP_ADD_PARAM: bind the next existing parameter or append one */
      st = nr__pybind_add_param(&q->pb, &engine, nd, dims, &b, &e2);
    }
    if (st == NR_ERR_NOMEM) exc = 1;
  }
  nr_wire_reply_clear(&r);
  fdlist fl = {0};
  nr_seg *seg = NULL;
  if (st == NR_OK) st = need_seg(p, w, b, &seg, &fl, &e2);
  nr_wire_request a = {0};
  if (st == NR_OK) {
    nr__pybind_mark(&q->pb, b);
    a.seg = seg ? seg->id : 0;
    a.cap = b->buf ? b->buf->capacity : 0;
    c->op = NR_OP_NESTED_OK;
  } else {
    a.exc = exc;
    a.err_msg = e2.msg;
    c->op = NR_OP_NESTED_ERR;
  }
  size_t len = 0; /* a message of at most NR_ERROR_MAX bytes: it fits */
  nr_wire_encode_request(c->op, &a, c->buf, NR_CTL_BUF_MAX, &len);
  c->len = (uint32_t)len;
  bool ok = post(w, &fl);
  fdlist_free(&fl);
  return ok ? 0 : -1;
}

typedef struct callres {
  wres r;
  char *type, *msg, *tb; /* WR_PYERR */
  char bad[200];         /* WR_PROTO: what the reply did wrong */
} callres;

/* The reply broke the protocol: record why (the caller kills the worker). */
static void proto_fail(callres *cr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void proto_fail(callres *cr, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cr->bad, sizeof cr->bad, fmt, ap);
  va_end(ap);
  cr->r = WR_PROTO;
}

static void callres_clear(callres *c) {
  free(c->type);
  free(c->msg);
  free(c->tb);
  c->type = c->msg = c->tb = NULL;
}

static nr_status ensure_hello(nr_pool *p, worker *w, callres *cr, nr_error *err);

/* A call's blob descriptors being written (write_call). */
typedef struct callblobs {
  nr_pool *p;
  worker *w;
  nr_wire_request *rq; /* blobs: room for every stale slot */
  uint32_t room;
  fdlist *fl;
} callblobs;

/* One slot the worker has not seen as it is: its descriptor, its segment if new to w. */
static nr_status describe_blob(void *arg, int kind, int idx, nr_blob *b, nr_error *err) {
  callblobs *cb = arg;
  if (cb->rq->nblobs == cb->room)
    return nr_err_set(err, NR_ERR_INTERNAL, "more changed blobs than counted");
  nr_seg *seg = NULL;
  NR_TRY(need_seg(cb->p, cb->w, b, &seg, cb->fl, err));
  nr_wire_blob *d = &cb->rq->blobs[cb->rq->nblobs++];
  *d = (nr_wire_blob){{kind, idx, b->num_axes, {0}}, seg ? seg->id : 0,
                      b->buf ? b->buf->capacity : 0, b->shaped};
  memcpy(d->shape.dims, b->shape, (size_t)b->num_axes * sizeof *b->shape);
  return NR_OK;
}

/* Writes the payload of a call on q into w's control block: the segments w may forget,
 * the creation arguments (create: a new Python object), and every slot whose blob changed
 * since the worker last saw it, queueing in fl the descriptors of segments new to w. */
static nr_status write_call(nr_pool *p, worker *w, pl *q, bool create, fdlist *fl,
                            nr_error *err) {
  nr_layer *l = q->pb.l;
  nr_status st = NR_OK;
  nr_wire_request rq = {0};
  if (create) {
    const Caffe__PythonParameter *pp = l->param->python_param;
    rq.create = true;
    rq.name = l->name;
    rq.module = pp->module;
    rq.layer = pp->layer;
    rq.param_str = pp->param_str;
    rq.source_dir = l->ctx ? l->ctx->source_dir : NULL;
    rq.phase = l->phase;
    rq.nbottom = l->nbottom;
    rq.ntop = l->ntop;
    if (!(rq.aliases = calloc((size_t)l->ntop + 1, sizeof *rq.aliases))) goto nomem;
    nr__pybind_aliases(l, rq.aliases);
    if (q->nreplicas) { /* a prefetched data layer: what caffe.get_worker_info() says */
      rq.replica = q->replica;
      rq.nreplicas = q->nreplicas;
      rq.first_batch = q->first_batch;
    }
  }
  int nd = nr__pybind_nstale(&q->pb); /* slots changed since the worker last saw them */
  if (nd) {
    if (!(rq.blobs = calloc((size_t)nd, sizeof *rq.blobs))) goto nomem;
    callblobs cb = {p, w, &rq, (uint32_t)nd, fl};
    st = nr__pybind_sync(&q->pb, describe_blob, &cb, err);
  }
  if (st == NR_OK) {
    /* the segments freed since the last request, forgotten once it is written */
    pthread_mutex_lock(&p->seg_mu);
    rq.forget = w->forget;
    rq.nforget = (uint32_t)w->nforget;
    size_t len = 0;
    if (nr_wire_encode_request(NR_OP_CALL, &rq, w->ctl->buf, NR_CTL_BUF_MAX, &len) == 0) {
      w->ctl->len = (uint32_t)len;
      w->nforget = 0;
    } else {
      st = nr_err_set(err, NR_ERR_INTERNAL, "request does not fit the control block");
    }
    pthread_mutex_unlock(&p->seg_mu);
  }
  free(rq.aliases);
  free(rq.blobs);
  return st;
nomem:
  free(rq.aliases);
  return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
}

/* One request/reply exchange for method m of layer q (no restart logic). Returns NR_OK
 * with cr->r telling what happened, or an error of the core side itself. */
static nr_status exchange(nr_pool *p, pl *q, nr_py_method m, callres *cr, nr_error *err) {
  worker *w = &p->w[q->w];
  nr_layer *l = q->pb.l;
  cr->r = WR_OK;
  NR_TRY(ensure_hello(p, w, cr, err));
  if (cr->r != WR_OK) return NR_OK;
  if (atomic_load(&w->dead)) {
    cr->r = WR_DEAD;
    return NR_OK;
  }
  nr_ctl *c = w->ctl;
  fdlist fl = {0};
  bool create = m == NR_PY_SETUP && !q->created;
  if (create) NR_TRY(nr__pybind_fresh(&q->pb, !q->established, err)); /* a new object */
  nr_status st = write_call(p, w, q, create, &fl, err);
  if (st != NR_OK) goto out;
  c->op = NR_OP_CALL;
  c->layer = q->id;
  c->method = (uint32_t)m;
  c->nprop = 0;
  if (m == NR_PY_BACKWARD) {
    if (l->nbottom > NR_MAX_PROP) {
      st = nr_err_set(err, NR_ERR_INPUT, "a Python layer takes at most %d bottoms", NR_MAX_PROP);
      goto out;
    }
    c->nprop = (uint32_t)l->nbottom;
    for (int i = 0; i < l->nbottom; i++) c->prop[i] = l->prop_down[i];
  }
  int64_t deadline = p->o.timeout_sec > 0
                         ? nr_wire_now_ns() + (int64_t)(p->o.timeout_sec * 1e9)
                         : 0;
  if (!post(w, &fl)) {
    cr->r = WR_DEAD;
    goto out;
  }
  uint32_t op;
  for (;;) {
    uint32_t seq = atomic_load(&c->req_seq);
    cr->r = wait_reply(p, w, seq, deadline);
    if (cr->r != WR_OK) goto out;
    op = *(volatile uint32_t *)&c->op;
    if (op == NR_REP_GROW || op == NR_REP_ADD_PARAM) {
      const char *bad = NULL;
      int sr = serve_nested(p, w, q, op, &bad);
      if (sr < 0) {
        cr->r = WR_DEAD;
        goto out;
      }
      if (sr > 0) {
        proto_fail(cr, "%s", bad);
        goto out;
      }
      continue;
    }
    break;
  }
  if (create) q->created = true;
  if (op == NR_REP_OK || op == NR_REP_ERROR) {
    nr_wire_reply r;
    const char *why = NULL;
    int rc = nr_wire_read_reply(c, op, &r, &why);
    if (rc == ENOMEM) {
      st = nr_err_set(err, NR_ERR_NOMEM, "out of memory reading a Python worker's reply");
    } else if (rc) {
      proto_fail(cr, "%s", why);
    } else if (op == NR_REP_OK) {
      /* every shape is checked before any is applied */
      for (uint32_t i = 0; i < r.nshapes && cr->r == WR_OK; i++) {
        const nr_wire_shape *x = &r.shapes[i];
        int64_t bytes = shape_bytes(x->nd, x->dims);
        if (!nr__pybind_blob(&q->pb, x->kind, x->idx))
          proto_fail(cr, "reply reshapes %s %d, which the layer does not have",
                     x->kind == NR_SLOT_BOTTOM ? "bottom" : x->kind == NR_SLOT_TOP ? "top"
                                                                               : "parameter",
                     x->idx);
        else if (bytes > p->o.max_blob_bytes)
          proto_fail(cr, "reply reshapes a blob to %lld bytes, over the limit of %lld "
                     "(--py-max-blob-bytes)", (long long)bytes,
                     (long long)p->o.max_blob_bytes);
      }
      for (uint32_t i = 0; i < r.nshapes && cr->r == WR_OK && st == NR_OK; i++) {
        const nr_wire_shape *x = &r.shapes[i];
        st = nr__pybind_apply_shape(&q->pb, &engine, x->kind, x->idx, x->nd, x->dims, err);
      }
    } else if (r.type && strlen(r.type) > 1024) {
      proto_fail(cr, "error reply: exception type name of %zu bytes", strlen(r.type));
    } else {
      cr->r = WR_PYERR;
      cr->type = r.type;
      cr->msg = r.msg;
      cr->tb = r.tb;
      r.type = r.msg = r.tb = NULL;
    }
    nr_wire_reply_clear(&r);
  } else {
    proto_fail(cr, "unexpected message (opcode %u) as the reply to a call", op);
  }
out:
  fdlist_free(&fl);
  return st;
}

static nr_status ensure_started(nr_pool *p, int wi, nr_error *err) {
  worker *w = &p->w[wi];
  if (w->pid) return NR_OK;
  return worker_spawn(p, w, err);
}

static nr_status ensure_hello(nr_pool *p, worker *w, callres *cr, nr_error *err) {
  if (w->hello) return NR_OK;
  int64_t deadline = p->o.timeout_sec > 0
                         ? nr_wire_now_ns() + (int64_t)((p->o.timeout_sec + 30) * 1e9)
                         : 0;
  cr->r = wait_reply(p, w, 0, deadline);
  if (cr->r != WR_OK) return NR_OK;
  uint32_t op = *(volatile uint32_t *)&w->ctl->op;
  if (op == NR_REP_ERROR) {
    nr_wire_reply r;
    const char *why = NULL;
    int rc = nr_wire_read_reply(w->ctl, NR_REP_ERROR, &r, &why);
    if (rc == EPROTO) {
      nr_wire_reply_clear(&r);
      proto_fail(cr, "start failure reply: %s", why);
      return NR_OK;
    }
    nr_status s = nr_err_set(err, NR_ERR_WORKER, "Python worker %d (%s) could not start: %s%s%s",
                             w->idx, p->worker_path, r.msg ? r.msg : "?",
                             r.tb && *r.tb ? "\n" : "", r.tb ? r.tb : "");
    nr_wire_reply_clear(&r);
    return s;
  }
  if (op != NR_REP_HELLO) {
    proto_fail(cr, "unexpected message (opcode %u) instead of its hello", op);
    return NR_OK;
  }
  w->hello = true;
  return NR_OK;
}

/* A call on a layer whose worker failed for good earlier: name that first failure. */
static nr_status gone_error(pl *q, nr_py_method m, const worker *w, nr_error *err) {
  char desc[1024];
  nr__pybind_describe(q->pb.l, m, desc, sizeof desc);
  return nr_err_set(err, NR_ERR_WORKER, "%s: Python worker %d died earlier in this run, with "
                    "no restart left; the first failure: %s", desc, w->idx,
                    w->first_err ? w->first_err : "(see the first error)");
}

/* Turns a failed exchange into the user's message. */
static nr_status call_error(nr_pool *p, pl *q, nr_py_method m, callres *cr, nr_error *err) {
  worker *w = &p->w[q->w];
  if (cr->r == WR_PYERR) return nr__pybind_py_error(q->pb.l, m, cr->type, cr->msg, cr->tb, err);
  if (cr->r == WR_GONE) return gone_error(q, m, w, err);
  char desc[1024];
  nr__pybind_describe(q->pb.l, m, desc, sizeof desc);
  char how[400], stack[8192];
  if (cr->r == WR_PROTO)
    snprintf(how, sizeof how, "Python worker %d (pid %d) sent an invalid reply (%s); it was "
             "killed", w->idx, (int)w->pid, cr->bad);
  else if (cr->r == WR_TIMEOUT)
    snprintf(how, sizeof how, "did not return within %g s (--py-timeout); worker %d (pid %d) was killed",
             p->o.timeout_sec, w->idx, (int)w->pid);
  else {
    char dt[200];
    death_text(w, dt, sizeof dt);
    snprintf(how, sizeof how, "Python worker %d (pid %d) %s", w->idx, (int)w->pid, dt);
  }
  fault_text(w, stack, sizeof stack);
  return nr_err_set(err, NR_ERR_WORKER, "%s: %s%s%s", desc, how,
                    *stack ? "\nLast Python stack (faulthandler):\n" : "", stack);
}

/* After a death or timeout: make sure the process is gone and reaped. */
static void worker_finish(worker *w, wres r) {
  if (r == WR_TIMEOUT) worker_kill_hung(w);
  else {
    worker_signal(w, SIGKILL); /* a worker that "died" by a broken socket may still run */
    worker_reap(w);
  }
}

/* One exchange with q's worker, under the worker's io lock (prefetch threads share it). */
static nr_status call_once(nr_pool *p, pl *q, nr_py_method m, callres *cr, nr_error *err) {
  worker *w = &p->w[q->w];
  nr_status s = NR_OK;
  pthread_mutex_lock(&w->io);
  if (w->failed || !w->ctl) {
    cr->r = WR_GONE;
  } else {
    s = exchange(p, q, m, cr, err);
    if (s == NR_OK && (cr->r == WR_DEAD || cr->r == WR_TIMEOUT || cr->r == WR_PROTO))
      worker_finish(w, cr->r);
  }
  pthread_mutex_unlock(&w->io);
  return s;
}

/* A worker died for good: close it (under its io lock) so calls on its layers fail; why is
 * the message of that failure, repeated by every later call on its layers. */
static void worker_fail(nr_pool *p, worker *w, const char *why) {
  pthread_mutex_lock(&w->io);
  if (w->pid && !w->reaped) { /* still running (a restart whose setup raised) */
    worker_signal(w, SIGKILL);
    worker_reap(w);
  }
  worker_close(p, w);
  if (!w->failed && !w->first_err && why) w->first_err = strdup(why);
  w->failed = true;
  pthread_mutex_unlock(&w->io);
}

/* Copies of a layer's parameters, to survive a re-setup: data and diff, or the diff only
 * (diff_only: what a replayed backward needs). */
typedef struct psave {
  int n;
  bool diff_only;
  float **v;       /* per parameter: its data then its diff, or its diff only */
  int64_t *cnt;
} psave;

static void psave_free(psave *s) {
  for (int i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
  free(s->cnt);
  memset(s, 0, sizeof *s);
}

static nr_status psave_take(nr_layer *l, psave *s, bool diff_only, nr_error *err) {
  memset(s, 0, sizeof *s);
  s->diff_only = diff_only;
  if (!l->nblobs) return NR_OK;
  s->v = calloc((size_t)l->nblobs, sizeof *s->v);
  s->cnt = calloc((size_t)l->nblobs, sizeof *s->cnt);
  if (!s->v || !s->cnt) goto nomem;
  s->n = l->nblobs;
  for (int i = 0; i < l->nblobs; i++) {
    nr_blob *b = l->blobs[i];
    size_t bytes = (size_t)b->count * sizeof(float);
    s->cnt[i] = b->count;
    if (!b->count || !b->data) continue;
    if (!(s->v[i] = malloc(diff_only ? bytes : 2 * bytes))) goto nomem;
    if (!diff_only) memcpy(s->v[i], b->data, bytes);
    memcpy(diff_only ? s->v[i] : s->v[i] + b->count, b->diff, bytes);
  }
  return NR_OK;
nomem:
  psave_free(s);
  return nr_err_set(err, NR_ERR_NOMEM, "out of memory saving parameters for a restart");
}

/* Puts back what s holds (a parameter whose size changed since is left alone). */
static void psave_restore(nr_layer *l, const psave *s) {
  for (int i = 0; i < s->n && i < l->nblobs; i++) {
    nr_blob *b = l->blobs[i];
    size_t bytes = (size_t)b->count * sizeof(float);
    if (!s->v[i] || b->count != s->cnt[i]) continue;
    if (!s->diff_only) memcpy(b->data, s->v[i], bytes);
    memcpy(b->diff, s->diff_only ? s->v[i] : s->v[i] + b->count, bytes);
  }
}

/* Restarts worker w and sets its established layers up again (setup + reshape), keeping
 * their parameter values. Prefetch threads are paused meanwhile (they share workers), and
 * the replicas of data layers that lived in w are re-created told the batch they must
 * produce next (p->on_restart). A new worker that dies or hangs while its layers are
 * set up again is restarted in turn while restarts are left (each one counts). When the
 * restart fails, w is failed for good (killed, reaped, closed) before the prefetch threads
 * resume, so none of them waits on it. Main thread only. */
static nr_status restart_worker(nr_pool *p, worker *w, nr_error *err) {
  const restart_hooks *h = p->on_restart;
  if (h) {
    h->pause(p);
    h->before(p, w->idx);
  }
  nr_status st;
  for (;;) {
    worker_close(p, w);
    st = worker_spawn(p, w, err);
    callres cr = {0};
    pl *bad = NULL;
    nr_py_method bm = NR_PY_SETUP;
    for (pl *q = p->layers; q && st == NR_OK && !bad; q = q->next) {
      if (q->w != w->idx) continue;
      q->created = false;
      if (!q->established) continue;
      psave sv;
      if ((st = psave_take(q->pb.l, &sv, false, err)) != NR_OK) break;
      bm = NR_PY_SETUP;
      st = call_once(p, q, bm, &cr, err);
      if (st == NR_OK && cr.r == WR_OK) st = call_once(p, q, bm = NR_PY_RESHAPE, &cr, err);
      psave_restore(q->pb.l, &sv); /* also when it failed: the next try starts clean */
      psave_free(&sv);
      if (st == NR_OK && cr.r != WR_OK) bad = q;
    }
    if (bad && (cr.r == WR_DEAD || cr.r == WR_TIMEOUT) && p->restarts < p->o.max_restarts) {
      p->restarts++;
      nr_error why;
      call_error(p, bad, bm, &cr, &why);
      if (logf_(p))
        fprintf(logf_(p), "netrun: %s\nnetrun: restarting Python worker %d (restart %d of %d) "
                "while its layers were set up again\n", why.msg, w->idx, p->restarts,
                p->o.max_restarts);
      callres_clear(&cr);
      continue;
    }
    if (bad) st = call_error(p, bad, bm, &cr, err);
    callres_clear(&cr);
    break;
  }
  if (st != NR_OK) {
    nr_err_prefix(err, "setting layers up again after a restart");
    worker_fail(p, w, err->msg);
  }
  if (h) h->resume(p);
  return st;
}

/* Runs method m of one layer instance q in its worker, with the restart policy. Main
 * thread only. */
static nr_status pl_call(nr_pool *p, pl *q, nr_py_method m, nr_error *err) {
  nr_layer *l = q->pb.l;
  worker *w = &p->w[q->w];
  if (w->failed) return gone_error(q, m, w, err);
  if (!w->pid) NR_TRY(worker_spawn(p, w, err));
  psave bsave = {0};
  if (m == NR_PY_BACKWARD && p->o.max_restarts > p->restarts && l->nblobs)
    NR_TRY(psave_take(l, &bsave, true, err)); /* a replayed backward must not add twice */
  callres cr = {0};
  nr_status s;
  for (;;) {
    s = call_once(p, q, m, &cr, err);
    if (s != NR_OK || cr.r == WR_OK || cr.r == WR_PYERR || cr.r == WR_GONE ||
        cr.r == WR_PROTO)
      break;
    /* the worker died or hung */
    if (p->restarts >= p->o.max_restarts) break;
    p->restarts++;
    nr_error why;
    call_error(p, q, m, &cr, &why);
    if (logf_(p))
      fprintf(logf_(p), "netrun: %s\nnetrun: restarting Python worker %d (restart %d of %d) and "
              "replaying the call\n", why.msg, w->idx, p->restarts, p->o.max_restarts);
    callres_clear(&cr);
    s = restart_worker(p, w, err);
    if (s != NR_OK) break;
    if (bsave.n) psave_restore(l, &bsave);
  }
  if (s == NR_OK && cr.r != WR_OK) s = call_error(p, q, m, &cr, err);
  if (s == NR_OK && m == NR_PY_SETUP) q->established = true;
  if (s != NR_OK && w->pid && w->reaped) worker_fail(p, w, err->msg); /* dead for good */
  callres_clear(&cr);
  psave_free(&bsave);
  return s;
}

/* A new layer instance for l, placed on a worker (started if need be) and appended to the
 * pool's list. spread: take the next worker round-robin over the whole pool (replicas of
 * one data layer land on distinct workers). */
static nr_status pl_new(nr_pool *p, nr_layer *l, bool spread, pl **out, nr_error *err) {
  pl *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  if (nr__pybind_init(&q->pb, l, err) != NR_OK) {
    free(q);
    return NR_ERR_NOMEM;
  }
  q->pool = p;
  q->id = ++p->next_layer;
  /* placement: a new worker per layer up to the limit, then round-robin */
  bool all = p->o.nworkers > 0 || spread;
  if (all) {
    q->w = p->rr++ % p->max_workers;
    p->nstarted = p->max_workers;
  } else if (p->nstarted < p->max_workers) {
    q->w = p->nstarted++;
  } else {
    q->w = p->rr++ % p->max_workers;
  }
  if (p->layers_tail) p->layers_tail->next = q;
  else p->layers = q;
  p->layers_tail = q;
  /* start all fixed-size workers together so their interpreters load in parallel */
  int lo = all ? 0 : q->w, hi = all ? p->max_workers : q->w + 1;
  for (int i = lo; i < hi; i++) {
    nr_status s = ensure_started(p, i, err);
    if (s != NR_OK) {
      *out = q; /* listed: freed with the pool */
      return s;
    }
  }
  *out = q;
  return NR_OK;
}

/* Tells q's worker to drop the Python object, unlinks q from the pool and frees it. */
static void pl_free(nr_pool *p, pl *q) {
  worker *w = &p->w[q->w];
  pthread_mutex_lock(&w->io);
  if (q->created && w->pid && w->hello && !w->failed && !atomic_load(&w->dead)) {
    w->ctl->op = NR_OP_RELEASE;
    w->ctl->layer = q->id;
    w->ctl->len = 0;
    if (post(w, NULL)) {
      uint32_t seq = atomic_load(&w->ctl->req_seq);
      wres r = wait_reply(p, w, seq, nr_wire_now_ns() + 5000000000LL);
      if (r != WR_OK) worker_finish(w, r);
    }
  }
  pthread_mutex_unlock(&w->io);
  pl **pp = &p->layers;
  pl *prev = NULL;
  for (; *pp && *pp != q; pp = &(*pp)->next) prev = *pp;
  if (*pp) {
    *pp = q->next;
    if (p->layers_tail == q) p->layers_tail = prev;
  }
  nr__pybind_free(&q->pb);
  free(q);
}

/* ---------- prefetched data layers ----------
 *
 * A Python layer with no bottoms and at least one top (a data layer) runs ahead of the net
 * when the pool's prefetch depth K > 0. It runs as R replicas (python_param.replicas,
 * capped at the pool size), each a separate Python object in its own worker, told its
 * index, R and the first batch it produces (caffe.get_worker_info()). Batch n is produced
 * by replica n % R into buffer set n % K' (K' = max(K, 2R) with replicas): a set of ntop
 * blobs in shared memory, owned by this controller. One core thread per replica drives its worker: it
 * waits until set n % K' is free (batch n - K' was taken by the net), points the replica's
 * tops at that set, runs reshape + forward, marks the set ready.
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
  nr_blob **scratch; /* ntop blobs the replicas reshape at (re)setup */
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
  callres_clear(&s->cr);
  free(s->err);
  s->err = NULL;
  s->s = NR_OK;
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
    q->fake.top = s->b;
    callres cr = {0};
    nr_error e;
    e.msg[0] = '\0';
    nr_py_method meth = NR_PY_RESHAPE;
    nr_status st = call_once(p, q, meth, &cr, &e);
    if (st == NR_OK && cr.r == WR_OK) {
      meth = NR_PY_FORWARD;
      st = call_once(p, q, meth, &cr, &e);
    }
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
      worker_signal(&f->pool->w[f->rep[r]->w], SIGKILL);
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
      q->fake.top = f->scratch;
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
static const restart_hooks pf_restart_hooks = {pf_pause_all, pf_before_restart, pf_resume_all};

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

/* At the layer's setup: the controller and its R instances (placed, not yet set up). */
static nr_status pf_create(nr_pool *p, nr_layer *l, nr_error *err) {
  const Caffe__PythonParameter *pp = l->param->python_param;
  int R = pp && pp->replicas > 1 ? (int)(pp->replicas > 4096 ? 4096 : pp->replicas) : 1;
  if (R > p->max_workers) {
    if (logf_(p))
      fprintf(logf_(p), "netrun: layer '%s': replicas: %d capped at the pool size (%d Python "
              "worker%s)\n", l->name, R, p->max_workers, p->max_workers == 1 ? "" : "s");
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
  p->pfs = f; /* listed first: pf_release frees it whatever happens next */
  p->on_restart = &pf_restart_hooks;
  if (!f->rep || !f->next || !f->failed || !f->th || !f->th_on || !f->arg)
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  for (int r = 0; r < R; r++) {
    pl *q = NULL;
    nr_status s = pl_new(p, l, R > 1, &q, err);
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
  NR_TRY(blobs_like(p, l, &f->scratch, err));
  for (int r = 0; r < f->R; r++) {
    pl *q = f->rep[r];
    q->fake = *l;
    q->fake.priv = q;
    q->pb.l = &q->fake;
    if (r == 0) continue; /* set up already, on the net's tops */
    q->fake.top = f->scratch;
    nr_status s = pl_call(p, q, NR_PY_SETUP, err);
    if (s == NR_OK) s = pl_call(p, q, NR_PY_RESHAPE, err);
    if (s != NR_OK) return nr_err_prefix(err, "replica %d of %d", r, f->R);
  }
  f->started = true;
  if (logf_(p)) {
    char ws[256] = "";
    size_t off = 0;
    for (int r = 0; r < f->R && off < sizeof ws - 16; r++)
      off += (size_t)snprintf(ws + off, sizeof ws - off, "%s%d", r ? ", " : "", f->rep[r]->w);
    fprintf(logf_(p), "netrun: Python data layer '%s' (phase %s): %d replica%s on worker%s %s, "
            "%d batches prefetched\n", l->name, l->phase == NR_TEST ? "TEST" : "TRAIN", f->R,
            f->R == 1 ? "" : "s", f->R == 1 ? "" : "s", ws, f->K);
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
        return gone_error(q, NR_PY_FORWARD, w, err);
      }
      bool died = s->s == NR_OK && (s->cr.r == WR_DEAD || s->cr.r == WR_TIMEOUT);
      if (died && p->restarts < p->o.max_restarts) {
        p->restarts++;
        nr_error why;
        call_error(p, q, NR_PY_FORWARD, &s->cr, &why);
        if (logf_(p))
          fprintf(logf_(p), "netrun: %s\nnetrun: restarting Python worker %d (restart %d of %d); "
                  "replica %d of layer '%s' produces batch %lld again\n", why.msg, w->idx,
                  p->restarts, p->o.max_restarts, s->rep, l->name, (long long)n);
        pthread_mutex_unlock(&f->mu);
        nr_status st = restart_worker(p, w, err);
        if (st != NR_OK) return st; /* w is failed for good */
        pthread_mutex_lock(&f->mu);
        continue;
      }
      nr_status st;
      if (s->s != NR_OK)
        st = nr_err_set(err, s->s, "%s", s->err ? s->err->msg : "prefetch failed");
      else
        st = call_error(p, q, s->method, &s->cr, err);
      pthread_mutex_unlock(&f->mu);
      if ((died || s->cr.r == WR_PROTO) && w->pid && w->reaped) worker_fail(p, w, err->msg);
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
    if (logf_(p) && (f->waits == 1 || now - f->last_log_ns > 10000000000LL)) {
      fprintf(logf_(p), "Waiting for data (Python data layer '%s', phase %s: the net waited "
              "for %llu of %lld batches, %.2f ms per wait)\n", l->name,
              l->phase == NR_TEST ? "TEST" : "TRAIN", (unsigned long long)f->waits,
              (long long)f->taken, (double)f->wait_ns / (double)f->waits / 1e6);
      f->last_log_ns = now;
    }
  }
  return NR_OK;
}

static nr_status pf_call(nr_pool *p, pf *f, nr_py_method m, nr_error *err) {
  pl *q0 = f->rep[0];
  switch (m) {
    case NR_PY_SETUP: return pl_call(p, q0, m, err);
    case NR_PY_RESHAPE:
      if (f->sync) return pl_call(p, q0, m, err);
      if (f->started) return NR_OK; /* the tops hold the current batch */
      NR_TRY(pl_call(p, q0, m, err));
      return pf_start(p, f, err);
    case NR_PY_FORWARD:
      if (f->sync) return pl_call(p, q0, m, err);
      if (!f->started) NR_TRY(pf_call(p, f, NR_PY_RESHAPE, err));
      return pf_forward(p, f, err);
    case NR_PY_BACKWARD:
      return f->sync ? pl_call(p, q0, m, err) : NR_OK; /* no bottoms, no parameters */
  }
  return NR_OK;
}

static void pf_release(nr_pool *p, pf *f) {
  if (f->started && !f->sync) pf_threads_stop(f, true);
  for (int r = f->R - 1; r >= 0; r--)
    if (f->rep && f->rep[r]) pl_free(p, f->rep[r]);
  for (int k = 0; f->set && k < f->K; k++) {
    pset_clear_failure(&f->set[k]);
    blobs_free(f->set[k].b, f->l->ntop);
  }
  free(f->set);
  blobs_free(f->scratch, f->l->ntop);
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

static nr_status pool_call(void *ctx, nr_layer *l, nr_py_method m, nr_error *err) {
  nr_pool *p = ctx;
  pl *q = l->priv;
  if (!q) {
    if (m != NR_PY_SETUP)
      return nr_err_set(err, NR_ERR_INTERNAL, "Python layer '%s' called before setup", l->name);
    if (p->o.prefetch > 0 && l->nbottom == 0 && l->ntop > 0) {
      NR_TRY(pf_create(p, l, err));
    } else {
      nr_status s = pl_new(p, l, false, &q, err);
      if (q) l->priv = q;
      NR_TRY(s);
    }
    q = l->priv;
  }
  if (q->pf) return pf_call(p, q->pf, m, err);
  return pl_call(p, q, m, err);
}

static void pool_release(void *ctx, nr_layer *l) {
  nr_pool *p = ctx;
  pl *q = l->priv;
  if (!q) return;
  if (q->pf) pf_release(p, q->pf);
  else pl_free(p, q);
  l->priv = NULL;
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

/* ---------- create / destroy ---------- */

static char *find_worker(const char *given) {
  if (given) return access(given, X_OK) == 0 ? strdup(given) : NULL;
  const char *const where[] = {"$EXE/netrun-worker", "$LIB/../bin/netrun-worker",
                               NR_WORKER_BUILD_PATH, NR_WORKER_INSTALL_PATH};
  return nr__locate(where, 4, X_OK);
}

nr_status nr_pool_create(const nr_pool_opts *o, nr_pool **out, nr_error *err) {
  nr_pool *p = calloc(1, sizeof *p);
  if (!p) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  p->o = o ? *o : (nr_pool_opts){-1, 0, 0, NULL, NULL, 0, 0};
  if (p->o.prefetch < 0) p->o.prefetch = 0;
  if (p->o.max_blob_bytes <= 0) p->o.max_blob_bytes = NR_POOL_DEFAULT_MAX_BLOB_BYTES;
  p->wake[0] = p->wake[1] = -1;
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++) {
    p->w[i] = (worker){.idx = i, .pidfd = -1, .sock = -1, .fault_fd = -1};
    pthread_mutex_init(&p->w[i].io, NULL);
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_mutex_init(&p->seg_mu, NULL);
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
  p->max_workers = p->o.nworkers > 0 ? p->o.nworkers : (int)ncpu;
  if (p->max_workers > NR_POOL_MAX_WORKERS) p->max_workers = NR_POOL_MAX_WORKERS;
  char types[4096];
  nr_layer_type_list(types, sizeof types);
  p->layer_types = strdup(types);
  p->alloc = (nr_allocator){p, seg_alloc, seg_free};
  p->be = (nr_py_backend){p, pool_call, pool_release};
  /* one descriptor per blob segment: make room for big nets */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max && rl.rlim_cur < 65536) {
    rl.rlim_cur = rl.rlim_max < 65536 ? rl.rlim_max : 65536;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (pipe2(p->wake, O_CLOEXEC) < 0 || !p->layer_types) {
    nr_status s = nr_err_set(err, NR_ERR_IO, "cannot create the worker pool: %s", strerror(errno));
    nr_pool_destroy(p);
    return s;
  }
  if (pthread_create(&p->watcher, NULL, watcher_main, p)) {
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
int nr_pool_restarts(const nr_pool *p) { return p->restarts; }

void nr_pool_destroy(nr_pool *p) {
  if (!p) return;
  /* data layers of nets not destroyed (documented misuse) or half-created: stop their
   * threads before the workers go */
  while (p->pfs) pf_release(p, p->pfs);
  /* ask every worker to leave, then give them together up to 2 s before SIGKILL */
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++) {
    worker *w = &p->w[i];
    if (!w->pid || w->reaped) continue;
    if (!atomic_load(&w->dead)) {
      w->ctl->op = NR_OP_EXIT;
      w->ctl->len = 0;
      post(w, NULL);
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
        worker_signal(w, SIGKILL);
        worker_reap(w);
        break;
      }
      usleep(2000);
    }
  }
  if (p->watcher_on) {
    char c = 'q';
    ssize_t r = write(p->wake[1], &c, 1);
    (void)r;
    pthread_join(p->watcher, NULL);
  }
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++)
    if (p->w[i].pid || p->w[i].ctl) worker_close(p, &p->w[i]);
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
  pthread_mutex_destroy(&p->seg_mu);
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++) {
    pthread_mutex_destroy(&p->w[i].io);
    free(p->w[i].first_err);
  }
  free(p->layer_types);
  free(p->worker_path);
  free(p);
}
