/* pool.c: the worker pool — shared-memory allocator, worker processes, dispatch, liveness,
 * restarts. The wire format is in wire.h; the design in docs/workers.md. */
#define _GNU_SOURCE
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <msgpack.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
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

#include "pydesc.h"
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
  bool hello;         /* worker said it is ready */
  bool reaped;
  bool failed;        /* died with no restart left: calls on its layers fail */
  int wstatus;
  int64_t spin_ns;
  uint32_t *forget;   /* segment ids freed since the last request */
  size_t nforget, capforget;
} worker;

typedef struct slot {
  nr_blob *b;
  uint64_t gen;
  bool valid;
} slot;

/* Per Python layer, in nr_layer.priv. */
typedef struct pl {
  nr_pool *pool;
  nr_layer *l;
  uint32_t id;
  int w;
  bool created;     /* the object exists in the current worker process */
  bool established; /* setup succeeded once (re-set up on restart) */
  int npre;         /* params existing before the first setup */
  int bound;        /* params the worker's BlobVec holds */
  slot *bot, *top, *par;
  int npar_cap;
  struct pl *next;  /* pool's list, creation order */
} pl;

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
  int restarts;
  char *layer_types;
  /* liveness watcher */
  pthread_t watcher;
  bool watcher_on;
  pthread_mutex_t mu;
  int wake[2];
};

static FILE *logf_(nr_pool *p) { return p->o.log; }

/* ---------- shared-memory allocator ---------- */

static nr_status seg_alloc(void *ctx, size_t bytes, void **ptr, void **handle, nr_error *err) {
  nr_pool *p = ctx;
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  size_t size = (bytes + pg - 1) / pg * pg;
  if (!size) size = pg;
  nr_seg *s = calloc(1, sizeof *s);
  if (!s) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  s->fd = memfd_create("netrun-blob", MFD_CLOEXEC);
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
  s->id = ++p->next_seg;
  s->next = p->segs;
  if (p->segs) p->segs->prev = s;
  p->segs = s;
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
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++)
    if (s->known & ((uint64_t)1 << i)) forget_push(&p->w[i], s->id);
  munmap(s->ptr, s->size);
  close(s->fd);
  if (s->prev) s->prev->next = s->next;
  else p->segs = s->next;
  if (s->next) s->next->prev = s->prev;
  free(s);
}

/* ---------- watcher: wakes the core when a worker dies ---------- */

/* Why a thread with pidfds rather than a SIGCHLD handler: a library must not own the
 * process's SIGCHLD disposition, and a pidfd becomes readable the moment the process
 * exits. The thread marks the worker dead and posts its reply semaphore, so a core
 * blocked in sem_wait wakes at once; the core (not the thread) reaps. */
static void *watcher_main(void *arg) {
  nr_pool *p = arg;
  for (;;) {
    struct pollfd fds[NR_POOL_MAX_WORKERS + 1];
    int who[NR_POOL_MAX_WORKERS + 1];
    int n = 0;
    fds[n] = (struct pollfd){p->wake[0], POLLIN, 0};
    who[n++] = -1;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->nstarted; i++) {
      worker *w = &p->w[i];
      if (!w->pid || atomic_load(&w->dead)) continue;
      fds[n] = w->pidfd >= 0 ? (struct pollfd){w->pidfd, POLLIN, 0}
                             : (struct pollfd){w->sock, POLLRDHUP, 0};
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
    pthread_mutex_lock(&p->mu);
    for (int j = 1; j < n; j++) {
      if (!fds[j].revents) continue;
      worker *w = &p->w[who[j]];
      if (w->pid && !atomic_load(&w->dead)) {
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
  free(w->forget);
  w->forget = NULL;
  w->nforget = w->capforget = 0;
  for (nr_seg *s = p->segs; s; s = s->next) s->known &= ~((uint64_t)1 << w->idx);
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
  ctlfd = fd_high(memfd_create("netrun-ctl", MFD_CLOEXEC));
  fault = memfd_create("netrun-fault", MFD_CLOEXEC);
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
  kill(w->pid, SIGUSR1);
  for (int i = 0; i < 50; i++) { /* up to 0.5 s for the stack */
    struct stat st;
    if (fstat(w->fault_fd, &st) == 0 && st.st_size > 0) {
      usleep(20000);
      break;
    }
    usleep(10000);
  }
  kill(w->pid, SIGKILL);
  worker_reap(w);
}

/* ---------- requests ---------- */

typedef enum { WR_OK, WR_PYERR, WR_DEAD, WR_TIMEOUT } wres;

static nr_status need_seg(nr_pool *p, worker *w, nr_blob *b, nr_seg **out, int **fds,
                          uint32_t **ids, int *nfd, int *capfd, nr_error *err) {
  *out = NULL;
  if (!b->buf) return NR_OK;
  if (b->buf->alloc != &p->alloc)
    return nr_err_set(err, NR_ERR_INTERNAL,
                      "blob '%s' is not in the worker pool's shared memory (build the net "
                      "with nr_pool_allocator())", b->name ? b->name : "");
  nr_seg *s = b->buf->handle;
  *out = s;
  uint64_t bit = (uint64_t)1 << w->idx;
  if (s->known & bit) return NR_OK;
  if (*nfd == *capfd) {
    int nc = *capfd ? 2 * *capfd : 16;
    int *nf = realloc(*fds, (size_t)nc * sizeof *nf);
    if (nf) *fds = nf;
    uint32_t *ni = realloc(*ids, (size_t)nc * sizeof *ni);
    if (ni) *ids = ni;
    if (!nf || !ni) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    *capfd = nc;
  }
  (*fds)[*nfd] = s->fd;
  (*ids)[*nfd] = s->id;
  (*nfd)++;
  s->known |= bit;
  return NR_OK;
}

static void pack_str(msgpack_packer *pk, const char *s) {
  size_t n = s ? strlen(s) : 0;
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s ? s : "", n);
}

static void pack_desc(msgpack_packer *pk, int kind, int idx, const nr_blob *b, const nr_seg *s) {
  msgpack_pack_array(pk, 6);
  msgpack_pack_int(pk, kind);
  msgpack_pack_int(pk, idx);
  msgpack_pack_uint32(pk, s ? s->id : 0);
  msgpack_pack_int64(pk, b->buf ? b->buf->capacity : 0);
  if (b->shaped) msgpack_pack_true(pk);
  else msgpack_pack_false(pk);
  msgpack_pack_array(pk, (size_t)b->num_axes);
  for (int i = 0; i < b->num_axes; i++) msgpack_pack_int64(pk, b->shape[i]);
}

static slot *slot_of(pl *q, int kind, int idx) {
  nr_layer *l = q->l;
  if (kind == NR_SLOT_BOTTOM) return idx >= 0 && idx < l->nbottom ? &q->bot[idx] : NULL;
  if (kind == NR_SLOT_TOP) return idx >= 0 && idx < l->ntop ? &q->top[idx] : NULL;
  return idx >= 0 && idx < l->nblobs && idx < q->npar_cap ? &q->par[idx] : NULL;
}

static nr_blob *blob_of(pl *q, int kind, int idx) {
  nr_layer *l = q->l;
  if (kind == NR_SLOT_BOTTOM) return idx >= 0 && idx < l->nbottom ? l->bottom[idx] : NULL;
  if (kind == NR_SLOT_TOP) return idx >= 0 && idx < l->ntop ? l->top[idx] : NULL;
  return idx >= 0 && idx < l->nblobs ? l->blobs[idx] : NULL;
}

static nr_status grow_par(pl *q, int n, nr_error *err) {
  if (n <= q->npar_cap) return NR_OK;
  int nc = n < 8 ? 8 : 2 * n;
  slot *ns = realloc(q->par, (size_t)nc * sizeof *ns);
  if (!ns) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  memset(ns + q->npar_cap, 0, (size_t)(nc - q->npar_cap) * sizeof *ns);
  q->par = ns;
  q->npar_cap = nc;
  return NR_OK;
}

/* The worker now knows blob b as it is: every slot of q holding b is up to date. */
static void mark_known(pl *q, nr_blob *b) {
  nr_layer *l = q->l;
  for (int i = 0; i < l->nbottom; i++)
    if (l->bottom[i] == b) q->bot[i] = (slot){b, b->generation, true};
  for (int i = 0; i < l->ntop; i++)
    if (l->top[i] == b) q->top[i] = (slot){b, b->generation, true};
  for (int i = 0; i < l->nblobs && i < q->npar_cap; i++)
    if (l->blobs[i] == b) q->par[i] = (slot){b, b->generation, true};
}

static bool slot_stale(const slot *s, const nr_blob *b) {
  return !s->valid || s->b != b || s->gen != b->generation;
}

static char *obj_strdup(const msgpack_object *o) {
  if (o->type != MSGPACK_OBJECT_STR) return strdup("");
  char *s = malloc(o->via.str.size + 1);
  if (!s) return NULL;
  memcpy(s, o->via.str.ptr, o->via.str.size);
  s[o->via.str.size] = '\0';
  return s;
}

static int64_t obj_int(const msgpack_object *o) {
  if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return (int64_t)o->via.u64;
  if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return o->via.i64;
  return 0;
}

static const msgpack_object *map_get(const msgpack_object *m, const char *key) {
  if (m->type != MSGPACK_OBJECT_MAP) return NULL;
  size_t kl = strlen(key);
  for (uint32_t i = 0; i < m->via.map.size; i++) {
    const msgpack_object *k = &m->via.map.ptr[i].key;
    if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
        memcmp(k->via.str.ptr, key, kl) == 0)
      return &m->via.map.ptr[i].val;
  }
  return NULL;
}

/* Posts the message prepared in w->ctl (op, layer, len...) after sending nfd descriptors. */
static bool post(worker *w, const int *fds, const uint32_t *ids, int nfd) {
  if (nfd && nr_wire_send_fds(w->sock, fds, ids, nfd)) return false;
  w->ctl->nsegs = (uint32_t)nfd;
  atomic_fetch_add_explicit(&w->ctl->req_seq, 1, memory_order_release);
  sem_post(&w->ctl->req);
  return true;
}

/* Waits for the worker's answer to the message with sequence `seq`. */
static wres wait_reply(nr_pool *p, worker *w, uint32_t seq, int64_t deadline) {
  for (;;) {
    int r = nr_wire_wait(&w->ctl->rep, &w->spin_ns, NR_CORE_MAX_SPIN_NS, deadline,
                         &w->ctl->core_cpu, &w->ctl->worker_cpu);
    if (atomic_load_explicit(&w->ctl->rep_seq, memory_order_acquire) == seq) return WR_OK;
    if (r == ETIMEDOUT) return WR_TIMEOUT;
    if (atomic_load(&w->dead)) return WR_DEAD;
    if (r && r != EINTR) return WR_DEAD;
  }
}

/* Serves a nested request (the worker's Python wants a bigger blob or a new parameter)
 * and answers it; the original call continues. */
static bool serve_nested(nr_pool *p, worker *w, pl *q) {
  nr_ctl *c = w->ctl;
  nr_error e2;
  e2.msg[0] = '\0';
  int exc = 0;
  nr_status st = NR_OK;
  nr_blob *b = NULL;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  if (!q || c->layer != q->id ||
      msgpack_unpack_next(&u, c->buf, c->len, NULL) != MSGPACK_UNPACK_SUCCESS ||
      u.data.type != MSGPACK_OBJECT_ARRAY || u.data.via.array.size < 3 ||
      u.data.via.array.ptr[2].type != MSGPACK_OBJECT_ARRAY) {
    st = nr_err_set(&e2, NR_ERR_WORKER, "garbled nested request");
    exc = 2;
  } else {
    const msgpack_object *a = u.data.via.array.ptr;
    int kind = (int)obj_int(&a[0]), idx = (int)obj_int(&a[1]);
    int nd = (int)a[2].via.array.size;
    int64_t dims[NR_MAX_AXES];
    if (nd > NR_MAX_AXES) {
      st = nr_err_set(&e2, NR_ERR_INPUT, "%d axes (at most %d allowed)", nd, NR_MAX_AXES);
    } else {
      for (int i = 0; i < nd; i++) dims[i] = obj_int(&a[2].via.array.ptr[i]);
      if (c->op == NR_REP_GROW) {
        b = blob_of(q, kind, idx);
        if (!b) st = nr_err_set(&e2, NR_ERR_INTERNAL, "no blob %d/%d", kind, idx), exc = 2;
        else st = nr_blob_reshape(b, nd, dims, &e2);
      } else { /* NR_REP_ADD_PARAM: bind the next existing parameter or append one */
        nr_layer *l = q->l;
        if (q->bound < l->nblobs) {
          b = l->blobs[q->bound];
          bool same = b->num_axes == nd;
          for (int i = 0; same && i < nd; i++) same = b->shape[i] == dims[i];
          if (!same) {
            char sh[256];
            st = nr_err_set(&e2, NR_ERR_INPUT,
                            "add_blob: parameter %d has shape %s in the net, Python asks for "
                            "%d axes", q->bound, nr_blob_shape_str(b, sh, sizeof sh), nd);
          }
        } else {
          st = nr_layer_add_param(l, nd, dims, &b, &e2);
        }
        if (st == NR_OK) st = grow_par(q, l->nblobs, &e2);
        if (st == NR_OK) q->bound++;
      }
      if (st == NR_ERR_NOMEM) exc = 1;
    }
  }
  msgpack_unpacked_destroy(&u);
  int *fds = NULL, nfd = 0, capfd = 0;
  uint32_t *ids = NULL;
  nr_seg *seg = NULL;
  if (st == NR_OK) st = need_seg(p, w, b, &seg, &fds, &ids, &nfd, &capfd, &e2);
  nr_wbuf wb = {c->buf, 0, NR_CTL_BUF_MAX, false};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &wb, nr_wbuf_write);
  msgpack_pack_array(&pk, 2);
  if (st == NR_OK) {
    mark_known(q, b);
    msgpack_pack_uint32(&pk, seg ? seg->id : 0);
    msgpack_pack_int64(&pk, b->buf ? b->buf->capacity : 0);
    c->op = NR_OP_NESTED_OK;
  } else {
    msgpack_pack_int(&pk, exc);
    pack_str(&pk, e2.msg);
    c->op = NR_OP_NESTED_ERR;
  }
  c->len = (uint32_t)wb.len;
  bool ok = post(w, fds, ids, nfd);
  free(fds);
  free(ids);
  return ok;
}

typedef struct callres {
  wres r;
  char *type, *msg, *tb; /* WR_PYERR */
} callres;

static void callres_clear(callres *c) {
  free(c->type);
  free(c->msg);
  free(c->tb);
  c->type = c->msg = c->tb = NULL;
}

static nr_status ensure_hello(nr_pool *p, worker *w, callres *cr, nr_error *err);

/* One request/reply exchange for method m of layer q (no restart logic). Returns NR_OK
 * with cr->r telling what happened, or an error of the core side itself. */
static nr_status exchange(nr_pool *p, pl *q, nr_py_method m, callres *cr, nr_error *err) {
  worker *w = &p->w[q->w];
  nr_layer *l = q->l;
  cr->r = WR_OK;
  NR_TRY(ensure_hello(p, w, cr, err));
  if (cr->r != WR_OK) return NR_OK;
  if (atomic_load(&w->dead)) {
    cr->r = WR_DEAD;
    return NR_OK;
  }
  nr_ctl *c = w->ctl;
  int *fds = NULL, nfd = 0, capfd = 0;
  uint32_t *ids = NULL;
  nr_status st = NR_OK;
  bool create = m == NR_PY_SETUP && !q->created;
  if (create) {
    /* fresh object in this process: it knows no slot yet */
    for (int i = 0; i < l->nbottom; i++) q->bot[i].valid = false;
    for (int i = 0; i < l->ntop; i++) q->top[i].valid = false;
    for (int i = 0; i < q->npar_cap; i++) q->par[i].valid = false;
    if (!q->established) q->npre = l->nblobs;
    q->bound = q->npre;
    NR_TRY(grow_par(q, l->nblobs, err));
  }
  int npar_send = create ? q->npre : (q->bound < l->nblobs ? q->bound : l->nblobs);
  /* Which slots changed since the worker last saw them? */
  int nd = 0;
  for (int i = 0; i < l->nbottom; i++) nd += slot_stale(&q->bot[i], l->bottom[i]);
  for (int i = 0; i < l->ntop; i++) nd += slot_stale(&q->top[i], l->top[i]);
  NR_TRY(grow_par(q, l->nblobs, err));
  for (int i = 0; i < npar_send; i++) nd += slot_stale(&q->par[i], l->blobs[i]);
  int nmap = (nd > 0) + (w->nforget > 0) + create;
  c->len = 0;
  if (nmap) {
    nr_wbuf wb = {c->buf, 0, NR_CTL_BUF_MAX, false};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &wb, nr_wbuf_write);
    msgpack_pack_map(&pk, (size_t)nmap);
    if (w->nforget) {
      pack_str(&pk, "forget");
      msgpack_pack_array(&pk, w->nforget);
      for (size_t i = 0; i < w->nforget; i++) msgpack_pack_uint32(&pk, w->forget[i]);
      w->nforget = 0;
    }
    if (create) {
      const Caffe__PythonParameter *pp = l->param->python_param;
      pack_str(&pk, "create");
      msgpack_pack_array(&pk, 9);
      pack_str(&pk, l->name);
      pack_str(&pk, pp->module);
      pack_str(&pk, pp->layer);
      pack_str(&pk, pp->param_str);
      pack_str(&pk, l->ctx ? l->ctx->source_dir : NULL);
      msgpack_pack_int(&pk, l->phase);
      msgpack_pack_int(&pk, l->nbottom);
      msgpack_pack_int(&pk, l->ntop);
      msgpack_pack_array(&pk, (size_t)l->ntop);
      for (int i = 0; i < l->ntop; i++) {
        int a = -1;
        for (int j = 0; j < l->nbottom && a < 0; j++)
          if (l->bottom[j] == l->top[i]) a = j;
        msgpack_pack_int(&pk, a);
      }
    }
    if (nd) {
      pack_str(&pk, "blobs");
      msgpack_pack_array(&pk, (size_t)nd);
      for (int kind = 0; kind < 3 && st == NR_OK; kind++) {
        int n = kind == 0 ? l->nbottom : kind == 1 ? l->ntop : npar_send;
        for (int i = 0; i < n && st == NR_OK; i++) {
          nr_blob *b = blob_of(q, kind, i);
          slot *s = slot_of(q, kind, i);
          if (!slot_stale(s, b)) continue;
          nr_seg *seg = NULL;
          st = need_seg(p, w, b, &seg, &fds, &ids, &nfd, &capfd, err);
          if (st == NR_OK) pack_desc(&pk, kind, i, b, seg);
        }
      }
      for (int kind = 0; kind < 3; kind++) { /* mark after packing: aliases counted once each */
        int n = kind == 0 ? l->nbottom : kind == 1 ? l->ntop : npar_send;
        for (int i = 0; i < n; i++) {
          nr_blob *b = blob_of(q, kind, i);
          *slot_of(q, kind, i) = (slot){b, b->generation, true};
        }
      }
    }
    if (st == NR_OK && wb.overflow)
      st = nr_err_set(err, NR_ERR_INTERNAL, "request does not fit the control block");
    c->len = (uint32_t)wb.len;
  }
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
  if (!post(w, fds, ids, nfd)) {
    cr->r = WR_DEAD;
    goto out;
  }
  for (;;) {
    uint32_t seq = atomic_load(&c->req_seq);
    cr->r = wait_reply(p, w, seq, deadline);
    if (cr->r != WR_OK) goto out;
    if (c->op == NR_REP_GROW || c->op == NR_REP_ADD_PARAM) {
      if (!serve_nested(p, w, q)) {
        cr->r = WR_DEAD;
        goto out;
      }
      continue;
    }
    break;
  }
  if (create) q->created = true;
  if (c->op == NR_REP_OK) {
    if (c->len) {
      msgpack_unpacked u;
      msgpack_unpacked_init(&u);
      if (msgpack_unpack_next(&u, c->buf, c->len, NULL) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *sh = map_get(&u.data, "shapes");
        for (uint32_t i = 0; sh && sh->type == MSGPACK_OBJECT_ARRAY && i < sh->via.array.size &&
                             st == NR_OK; i++) {
          const msgpack_object *x = &sh->via.array.ptr[i];
          if (x->type != MSGPACK_OBJECT_ARRAY || x->via.array.size < 3 ||
              x->via.array.ptr[2].type != MSGPACK_OBJECT_ARRAY)
            continue;
          nr_blob *b = blob_of(q, (int)obj_int(&x->via.array.ptr[0]),
                               (int)obj_int(&x->via.array.ptr[1]));
          int n = (int)x->via.array.ptr[2].via.array.size;
          if (!b || n > NR_MAX_AXES) continue;
          int64_t dims[NR_MAX_AXES];
          for (int k = 0; k < n; k++) dims[k] = obj_int(&x->via.array.ptr[2].via.array.ptr[k]);
          nr_buf *before = b->buf;
          st = nr_blob_reshape(b, n, dims, err);
          if (st == NR_OK && b->buf == before) mark_known(q, b);
        }
      }
      msgpack_unpacked_destroy(&u);
    }
  } else if (c->op == NR_REP_ERROR) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    cr->r = WR_PYERR;
    if (msgpack_unpack_next(&u, c->buf, c->len, NULL) == MSGPACK_UNPACK_SUCCESS) {
      const msgpack_object *o;
      if ((o = map_get(&u.data, "type"))) cr->type = obj_strdup(o);
      if ((o = map_get(&u.data, "msg"))) cr->msg = obj_strdup(o);
      if ((o = map_get(&u.data, "tb"))) cr->tb = obj_strdup(o);
    }
    msgpack_unpacked_destroy(&u);
  } else {
    st = nr_err_set(err, NR_ERR_WORKER, "Python worker %d sent an unexpected message (%u)",
                    w->idx, c->op);
  }
out:
  free(fds);
  free(ids);
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
  if (w->ctl->op == NR_REP_ERROR) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    char *msg = NULL, *tb = NULL;
    if (msgpack_unpack_next(&u, w->ctl->buf, w->ctl->len, NULL) == MSGPACK_UNPACK_SUCCESS) {
      const msgpack_object *o;
      if ((o = map_get(&u.data, "msg"))) msg = obj_strdup(o);
      if ((o = map_get(&u.data, "tb"))) tb = obj_strdup(o);
    }
    msgpack_unpacked_destroy(&u);
    nr_status s = nr_err_set(err, NR_ERR_WORKER, "Python worker %d (%s) could not start: %s%s%s",
                             w->idx, p->worker_path, msg ? msg : "?", tb && *tb ? "\n" : "",
                             tb ? tb : "");
    free(msg);
    free(tb);
    return s;
  }
  w->hello = true;
  return NR_OK;
}

/* Turns a failed exchange into the user's message. */
static nr_status call_error(nr_pool *p, pl *q, nr_py_method m, callres *cr, nr_error *err) {
  char desc[1024];
  nr__py_describe(q->l, (int)m, desc, sizeof desc);
  worker *w = &p->w[q->w];
  if (cr->r == WR_PYERR) {
    const char *tb = cr->tb ? cr->tb : "";
    size_t tl = strlen(tb);
    return nr_err_set(err, NR_ERR_PYTHON, "%s raised %s: %s%s%.*s", desc,
                      cr->type ? cr->type : "Exception", cr->msg ? cr->msg : "",
                      tl ? "\n" : "", (int)(tl > 12000 ? 12000 : tl),
                      tl > 12000 ? tb + tl - 12000 : tb);
  }
  char how[256], stack[8192];
  if (cr->r == WR_TIMEOUT)
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
    kill(w->pid, SIGKILL); /* a worker that "died" by a broken socket may still run */
    worker_reap(w);
  }
}

static nr_status call_once(nr_pool *p, pl *q, nr_py_method m, callres *cr, nr_error *err) {
  nr_status s = exchange(p, q, m, cr, err);
  if (s == NR_OK && (cr->r == WR_DEAD || cr->r == WR_TIMEOUT)) worker_finish(&p->w[q->w], cr->r);
  return s;
}

/* Copies of a layer's parameters (data and diff), to survive a re-setup. */
typedef struct psave {
  int n;
  float **v;
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
  if (!l->nblobs) return NR_OK;
  s->v = calloc((size_t)l->nblobs, sizeof *s->v);
  s->cnt = calloc((size_t)l->nblobs, sizeof *s->cnt);
  if (!s->v || !s->cnt) goto nomem;
  s->n = l->nblobs;
  for (int i = 0; i < l->nblobs; i++) {
    nr_blob *b = l->blobs[i];
    s->cnt[i] = b->count;
    if (!b->count || !b->data) continue;
    if (!(s->v[i] = malloc((size_t)b->count * 2 * sizeof(float)))) goto nomem;
    memcpy(s->v[i], b->data, (size_t)b->count * sizeof(float));
    memcpy(s->v[i] + b->count, b->diff, (size_t)b->count * sizeof(float));
  }
  (void)diff_only;
  return NR_OK;
nomem:
  psave_free(s);
  return nr_err_set(err, NR_ERR_NOMEM, "out of memory saving parameters for a restart");
}

static void psave_restore(nr_layer *l, const psave *s, bool data, bool diff) {
  for (int i = 0; i < s->n && i < l->nblobs; i++) {
    nr_blob *b = l->blobs[i];
    if (!s->v[i] || b->count != s->cnt[i]) continue;
    if (data) memcpy(b->data, s->v[i], (size_t)b->count * sizeof(float));
    if (diff) memcpy(b->diff, s->v[i] + b->count, (size_t)b->count * sizeof(float));
  }
}

/* Restarts worker w and sets its established layers up again (setup + reshape), keeping
 * their parameter values. */
static nr_status restart_worker(nr_pool *p, worker *w, nr_error *err) {
  worker_close(p, w);
  NR_TRY(worker_spawn(p, w, err));
  for (pl *q = p->layers; q; q = q->next) {
    if (q->w != w->idx) continue;
    q->created = false;
    if (!q->established) continue;
    psave sv;
    NR_TRY(psave_take(q->l, &sv, false, err));
    callres cr = {0};
    nr_status s = call_once(p, q, NR_PY_SETUP, &cr, err);
    if (s == NR_OK && cr.r == WR_OK) s = call_once(p, q, NR_PY_RESHAPE, &cr, err);
    if (s == NR_OK && cr.r != WR_OK) s = call_error(p, q, cr.r == WR_OK ? NR_PY_SETUP : NR_PY_SETUP, &cr, err);
    callres_clear(&cr);
    if (s == NR_OK) psave_restore(q->l, &sv, true, true);
    psave_free(&sv);
    if (s != NR_OK) return nr_err_prefix(err, "setting layers up again after a restart");
  }
  return NR_OK;
}

static nr_status pool_call(void *ctx, nr_layer *l, nr_py_method m, nr_error *err) {
  nr_pool *p = ctx;
  pl *q = l->priv;
  if (!q) {
    if (m != NR_PY_SETUP)
      return nr_err_set(err, NR_ERR_INTERNAL, "Python layer '%s' called before setup", l->name);
    if (!(q = calloc(1, sizeof *q))) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    q->bot = calloc((size_t)l->nbottom + 1, sizeof *q->bot);
    q->top = calloc((size_t)l->ntop + 1, sizeof *q->top);
    if (!q->bot || !q->top) {
      free(q->bot);
      free(q->top);
      free(q);
      return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    }
    q->pool = p;
    q->l = l;
    q->id = ++p->next_layer;
    /* placement: a new worker per layer up to the limit, then round-robin */
    if (p->o.nworkers > 0) {
      q->w = p->rr++ % p->max_workers;
      p->nstarted = p->max_workers;
    } else if (p->nstarted < p->max_workers) {
      q->w = p->nstarted++;
    } else {
      q->w = p->rr++ % p->max_workers;
    }
    l->priv = q;
    if (p->layers_tail) p->layers_tail->next = q;
    else p->layers = q;
    p->layers_tail = q;
    /* start all fixed-size workers together so their interpreters load in parallel */
    int lo = p->o.nworkers > 0 ? 0 : q->w, hi = p->o.nworkers > 0 ? p->max_workers : q->w + 1;
    for (int i = lo; i < hi; i++) NR_TRY(ensure_started(p, i, err));
  }
  worker *w = &p->w[q->w];
  if (w->failed) {
    char desc[1024];
    nr__py_describe(l, (int)m, desc, sizeof desc);
    return nr_err_set(err, NR_ERR_WORKER, "%s: Python worker %d died earlier in this run "
                      "(see the first error)", desc, w->idx);
  }
  if (!w->pid) NR_TRY(worker_spawn(p, w, err));
  psave bsave = {0};
  if (m == NR_PY_BACKWARD && p->o.max_restarts > p->restarts && l->nblobs)
    NR_TRY(psave_take(l, &bsave, true, err)); /* a replayed backward must not add twice */
  callres cr = {0};
  nr_status s;
  for (;;) {
    s = call_once(p, q, m, &cr, err);
    if (s != NR_OK || cr.r == WR_OK || cr.r == WR_PYERR) break;
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
    if (bsave.n) psave_restore(l, &bsave, false, true);
  }
  if (s == NR_OK && cr.r != WR_OK) s = call_error(p, q, m, &cr, err);
  if (s == NR_OK && m == NR_PY_SETUP) q->established = true;
  if (s != NR_OK && w->pid && w->reaped) { /* dead for good: its layers are gone */
    worker_close(p, w);
    w->failed = true;
  }
  callres_clear(&cr);
  psave_free(&bsave);
  return s;
}

static void pool_release(void *ctx, nr_layer *l) {
  nr_pool *p = ctx;
  pl *q = l->priv;
  if (!q) return;
  worker *w = &p->w[q->w];
  if (q->created && w->pid && w->hello && !atomic_load(&w->dead)) {
    w->ctl->op = NR_OP_RELEASE;
    w->ctl->layer = q->id;
    w->ctl->len = 0;
    if (post(w, NULL, NULL, 0)) {
      uint32_t seq = atomic_load(&w->ctl->req_seq);
      wres r = wait_reply(p, w, seq, nr_wire_now_ns() + 5000000000LL);
      if (r != WR_OK) worker_finish(w, r);
    }
  }
  pl **pp = &p->layers;
  pl *prev = NULL;
  for (; *pp && *pp != q; pp = &(*pp)->next) prev = *pp;
  if (*pp) {
    *pp = q->next;
    if (p->layers_tail == q) p->layers_tail = prev;
  }
  free(q->bot);
  free(q->top);
  free(q->par);
  free(q);
  l->priv = NULL;
}

/* ---------- create / destroy ---------- */

static char *find_worker(const char *given) {
  if (given) return access(given, X_OK) == 0 ? strdup(given) : NULL;
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 32);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      strcpy(slash + 1, "netrun-worker");
      if (access(exe, X_OK) == 0) return strdup(exe);
    }
  }
#ifdef NR_WORKER_BUILD_PATH
  if (access(NR_WORKER_BUILD_PATH, X_OK) == 0) return strdup(NR_WORKER_BUILD_PATH);
#endif
  return NULL;
}

nr_status nr_pool_create(const nr_pool_opts *o, nr_pool **out, nr_error *err) {
  nr_pool *p = calloc(1, sizeof *p);
  if (!p) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  p->o = o ? *o : (nr_pool_opts){-1, 0, 0, NULL, NULL};
  p->wake[0] = p->wake[1] = -1;
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++)
    p->w[i] = (worker){.idx = i, .pidfd = -1, .sock = -1, .fault_fd = -1};
  pthread_mutex_init(&p->mu, NULL);
  if (!(p->worker_path = find_worker(p->o.worker_path))) {
    nr_status s = nr_err_set(err, NR_ERR_IO,
                             "cannot find the netrun-worker executable%s%s (looked next to "
                             "this program and in the build tree)",
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
  /* ask every worker to leave, then give them together up to 2 s before SIGKILL */
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++) {
    worker *w = &p->w[i];
    if (!w->pid || w->reaped) continue;
    if (!atomic_load(&w->dead)) {
      w->ctl->op = NR_OP_EXIT;
      w->ctl->len = 0;
      post(w, NULL, NULL, 0);
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
        kill(w->pid, SIGKILL);
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
    q->l->priv = NULL;
    free(q->bot);
    free(q->top);
    free(q->par);
    free(q);
  }
  if (p->wake[0] >= 0) close(p->wake[0]);
  if (p->wake[1] >= 0) close(p->wake[1]);
  pthread_mutex_destroy(&p->mu);
  free(p->layer_types);
  free(p->worker_path);
  free(p);
}
