/* server.c: a netrun-worker's request handling (see server.h, ipc/wire.h). */
#define _GNU_SOURCE
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Waking ahead. A request that finds the worker asleep in the futex costs the core a
 * FUTEX_WAKE and then the worker's wake-up; on a virtual machine whose CPU the worker left
 * idle for a while that is tens of microseconds (docs/workers.md, "Numbers"). The core
 * tells the worker with each call when it expects its next message (the same gap as last
 * time after that layer's method: a net runs the same layers in the same order every
 * iteration; only while its threads leave a CPU free). The worker sleeps until lead_ns
 * before then (a timed futex wait that a request ends at once), then spins on the request
 * word until slack past the time, yielding when the core last ran on its CPU (as
 * nr_wire_wait). A request that comes outside the window is waited for as always. */
#define NR_SERVER_LEAD0_NS 60000      /* first lead: a timed wake-up's typical lateness */
#define NR_SERVER_LEAD_MIN_NS 20000
#define NR_SERVER_LEAD_MAX_NS 300000
#define NR_SERVER_SLACK_MIN_NS 20000  /* spin at least this long past the expected time */
#define NR_SERVER_SLACK_MAX_NS 200000
#define NR_SERVER_HINT_MAX_NS 1000000000 /* longer hints are ignored (liveness checks) */

struct nr_server_layer {
  uint32_t id;
  nr_rt_layer *L;
};

void nr_server_die(const char *what) {
  fprintf(stderr, "netrun-worker[%d]: %s: %s\n", (int)getpid(), what, strerror(errno));
  _exit(3);
}

void nr_server_init(nr_server *s, nr_ctl *ctl, int sock, pid_t parent) {
  *s = (nr_server){.ctl = ctl, .sock = sock, .parent = parent, .spin_ns = 50000,
                   .lead_ns = NR_SERVER_LEAD0_NS};
  /* Timed waits end when asked, not up to 50 us later (the default slack): waking
   * ahead of a request depends on it. */
  prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
  /* The core sends descriptors before it posts their message: they are queued when the
   * worker looks, and one announced but never sent must not block the worker forever. */
  fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK);
}

void nr_server_destroy(nr_server *s) {
  for (int i = 0; i < s->nlayers; i++) {
    nr_rt_layer_destroy(s->layers[i]->L);
    free(s->layers[i]);
  }
  free(s->layers);
  Py_CLEAR(s->segs);
  s->layers = NULL;
  s->nlayers = s->cap = 0;
}

/* Is the core still there? Socket EOF or a new parent means no. */
static bool core_alive(nr_server *s) {
  if (getppid() != s->parent) return false;
  struct pollfd p = {s->sock, POLLRDHUP, 0};
  if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR))) return false;
  return true;
}

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* true: request s->seq + 1 is in (taken). */
static bool wait_ahead(nr_server *s, int64_t hint) {
  const _Atomic uint32_t *seq = &s->ctl->req_seq;
  uint32_t want = s->seq + 1;
  int64_t due = s->replied_ns + hint, now = nr_wire_now_ns();
  int64_t slack = hint / 16;
  if (slack < NR_SERVER_SLACK_MIN_NS) slack = NR_SERVER_SLACK_MIN_NS;
  if (slack > NR_SERVER_SLACK_MAX_NS) slack = NR_SERVER_SLACK_MAX_NS;
  int64_t rise = due - s->lead_ns;
  if (rise > now) {
    int64_t spin = 0; /* no spin: sleep until rise unless the request comes first */
    int r = nr_wire_wait(seq, want, false, &s->ctl->req_sleep, NULL, &spin, 0, rise,
                         &s->ctl->worker_cpu, &s->ctl->core_cpu);
    if (r == 0) return true;
    if (r != ETIMEDOUT) return false;
    /* how late the timed wake-up was: the lead follows it (twice the average, + 10 us) */
    int64_t late = nr_wire_now_ns() - rise;
    int64_t avg = (s->lead_ns - 10000) / 2;
    avg += (late - avg) / 8;
    int64_t lead = 2 * avg + 10000;
    s->lead_ns = lead < NR_SERVER_LEAD_MIN_NS ? NR_SERVER_LEAD_MIN_NS
                 : lead > NR_SERVER_LEAD_MAX_NS ? NR_SERVER_LEAD_MAX_NS : lead;
  }
  int64_t until = due + slack;
  now = nr_wire_now_ns();
  if (until <= now) return false;
  int64_t spin = until - now;
  int r = nr_wire_wait(seq, want, false, &s->ctl->req_sleep, NULL, &spin, spin, until,
                       &s->ctl->worker_cpu, &s->ctl->core_cpu);
  return r == 0;
}

void nr_server_wait(nr_server *s) {
  PyThreadState *ts = PyEval_SaveThread(); /* user threads keep running */
  int64_t hint = s->hint_ns;
  s->hint_ns = 0;
  if (hint > 0 && hint < NR_SERVER_HINT_MAX_NS && wait_ahead(s, hint)) {
    s->seq++;
    PyEval_RestoreThread(ts);
    return;
  }
  for (;;) {
    int r = nr_wire_wait(&s->ctl->req_seq, s->seq + 1, false, &s->ctl->req_sleep, NULL,
                         &s->spin_ns, 100000, nr_wire_now_ns() + 1000000000,
                         &s->ctl->worker_cpu, &s->ctl->core_cpu);
    if (r == 0) {
      s->seq++;
      break;
    }
    if (r != ETIMEDOUT) {
      PyEval_RestoreThread(ts);
      errno = r;
      nr_server_die("waiting for a request");
    }
    if (!core_alive(s)) _exit(0);
  }
  PyEval_RestoreThread(ts);
}

void nr_server_post(nr_server *s, uint32_t op, size_t len) {
  s->replied_ns = nr_wire_now_ns();
  s->ctl->op = op;
  s->ctl->len = (uint32_t)len;
  nr_wire_wake(&s->ctl->rep_seq, s->seq, &s->ctl->rep_sleep);
}

/* An error reply of type RuntimeError with a printf-style message. */
static void set_error(nr_rt_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(nr_rt_err *e, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  nr_rt_err_set(e, "RuntimeError", msg);
}

/* ---- segments ---- */

static const char *map_segment(nr_server *s, int fd, uint32_t id) {
  struct stat st;
  if (fstat(fd, &st) < 0 || st.st_size <= 0) return "a segment that cannot be mapped";
  size_t size = (size_t)st.st_size;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return "a segment that cannot be mapped";
  PyObject *m = nr_rt_mapping_new(p, size, true); /* new; owns p */
  PyObject *k = PyLong_FromUnsignedLong(id);      /* new */
  if (!m || !k || (!s->segs && !(s->segs = PyDict_New())) || PyDict_SetItem(s->segs, k, m) < 0)
    nr_server_die("recording a segment");
  Py_DECREF(m);
  Py_DECREF(k);
  return NULL;
}

/* Receives the descriptors announced in the header (nsegs) and maps them. They were
 * queued before the message was posted, so fewer than announced is an error, not a wait.
 * The descriptors are closed either way (a mapping outlives its descriptor). NULL, or
 * what was wrong. */
static const char *take_segments(nr_server *s) {
  uint32_t n = *(volatile uint32_t *)&s->ctl->nsegs;
  if (!n) return NULL;
  if (n > NR_WIRE_MAX_ITEMS) return "more segments announced than a message carries";
  int *fds = malloc(n * sizeof *fds);
  uint32_t *ids = malloc(n * sizeof *ids);
  if (!fds || !ids) nr_server_die("out of memory");
  const char *why = NULL;
  if (nr_wire_recv_fds(s->sock, fds, ids, (int)n) != 0) {
    why = "the segments announced did not arrive";
    n = 0; /* nr_wire_recv_fds closed what it received */
  }
  for (uint32_t i = 0; i < n; i++) {
    if (!why) why = map_segment(s, fds[i], ids[i]);
    close(fds[i]);
  }
  free(fds);
  free(ids);
  return why;
}

static PyObject *seg_get(nr_server *s, uint64_t id) { /* borrowed or NULL */
  if (!id || !s->segs) return NULL;
  PyObject *k = PyLong_FromUnsignedLongLong(id);
  PyObject *m = k ? PyDict_GetItem(s->segs, k) : NULL;
  Py_XDECREF(k);
  return m;
}

/* The memory of a blob of capacity cap (cap floats of data, then cap of diff) and, when
 * shaped, shape dims: segment seg, at least 8 * cap bytes, or none (seg 0) for capacity 0.
 * *map is borrowed (NULL for none). NULL, or what is wrong with the core's description:
 * a NumPy view must never reach past its mapping. */
static const char *blob_memory(nr_server *s, uint32_t seg, int64_t cap, bool shaped, int nd,
                               const int64_t *dims, PyObject **map) {
  *map = NULL;
  uint64_t count = 1;
  for (int i = 0; shaped && i < nd; i++)
    if (__builtin_mul_overflow(count, (uint64_t)dims[i], &count)) count = UINT64_MAX;
  if (shaped && count > (uint64_t)cap) return "a shape larger than the capacity";
  if (!seg) return cap ? "a capacity without a segment" : NULL;
  if (!(*map = seg_get(s, seg))) return "an unknown segment";
  if ((uint64_t)cap > nr_rt_mapping_size(*map) / (2 * sizeof(float)))
    return "a capacity larger than its segment";
  return NULL;
}

/* The index in s->layers of layer id, or -1. */
static int layer_index(const nr_server *s, uint32_t id) {
  for (int i = 0; i < s->nlayers; i++)
    if (s->layers[i]->id == id) return i;
  return -1;
}

/* ---- messages ---- */

/* Decodes the core's message in the control block (opcode op) with the validating decoder
 * (ipc/wire.c, which copies the payload out of the shared block first). 0 or EPROTO
 * (reason in *why); out of memory ends the worker. q is always safe to clear. */
static int decode_req(nr_server *s, uint32_t op, nr_wire_request *q, const char **why) {
  int rc = nr_wire_read_request(s->ctl, op, q, why);
  if (rc == ENOMEM) {
    errno = ENOMEM;
    nr_server_die("out of memory decoding a request");
  }
  return rc;
}

/* nr_wire_encode_reply makes it fit: type and message take at most a quarter of the block
 * each, and the traceback is trimmed from its start (the last frames are the useful ones). */
void nr_server_reply_error(nr_server *s, const nr_rt_err *e) {
  static char exception[] = "Exception";
  nr_wire_reply r = {.type = e->type ? e->type : exception, .msg = e->msg, .tb = e->tb};
  size_t len = 0;
  if (nr_wire_encode_reply(NR_REP_ERROR, &r, s->ctl->buf, NR_CTL_BUF_MAX, &len) != 0) {
    errno = ENOSPC;
    nr_server_die("encoding an error reply");
  }
  nr_server_post(s, NR_REP_ERROR, len);
}

/* ---- nested requests (a layer wants memory) ---- */

static int nested(nr_server *s, uint32_t op, uint32_t layer, int kind, int idx, int nd,
                  const int64_t *dims, PyObject **map, int64_t *cap, char *msg, size_t msglen,
                  int *exc) {
  nr_wire_reply r = {.nested = {kind, idx, nd, {0}}};
  memcpy(r.nested.dims, dims, (size_t)nd * sizeof *dims);
  size_t len = 0; /* at most NR_WIRE_MAX_AXES numbers: it fits */
  nr_wire_encode_reply(op, &r, s->ctl->buf, NR_CTL_BUF_MAX, &len);
  s->ctl->layer = layer;
  nr_server_post(s, op, len);
  nr_server_wait(s);
  uint32_t aop = *(volatile uint32_t *)&s->ctl->op;
  nr_wire_request q = {0};
  PyObject *m = NULL; /* borrowed */
  const char *why = take_segments(s);
  if (!why && aop != NR_OP_NESTED_OK && aop != NR_OP_NESTED_ERR) why = "unexpected opcode";
  if (!why) decode_req(s, aop, &q, &why);
  if (!why && aop == NR_OP_NESTED_OK) why = blob_memory(s, q.seg, q.cap, true, nd, dims, &m);
  int rc = -1;
  if (why) {
    snprintf(msg, msglen, "netrun-worker: garbled answer from the core (%s)", why);
    *exc = 2;
  } else if (aop == NR_OP_NESTED_ERR) {
    *exc = q.exc;
    snprintf(msg, msglen, "%s", q.err_msg);
  } else {
    *map = m ? m : Py_None;
    Py_INCREF(*map);
    *cap = q.cap;
    rc = 0;
  }
  nr_wire_request_clear(&q);
  return rc;
}

static int host_grow(void *ctx, void *hl, int kind, int idx, int nd, const int64_t *dims,
                     PyObject **map, int64_t *cap, char *msg, size_t msglen, int *exc) {
  return nested(ctx, NR_REP_GROW, ((nr_server_layer *)hl)->id, kind, idx, nd, dims, map, cap,
                msg, msglen, exc);
}

static int host_add_param(void *ctx, void *hl, int nd, const int64_t *dims, PyObject **map,
                          int64_t *cap, char *msg, size_t msglen, int *exc) {
  return nested(ctx, NR_REP_ADD_PARAM, ((nr_server_layer *)hl)->id, NR_SLOT_PARAM, -1, nd,
                dims, map, cap, msg, msglen, exc);
}

nr_rt_host nr_server_host(nr_server *s) { return (nr_rt_host){s, host_grow, host_add_param}; }

/* ---- one call ---- */

/* The blobs Python reshaped during a call (nr_rt_take_dirty), for the reply. */
typedef struct shapes {
  nr_wire_shape *v;
  uint32_t n, cap;
} shapes;

static void on_dirty(void *arg, int kind, int idx, int nd, const int64_t *dims) {
  shapes *sh = arg;
  if (sh->n == sh->cap) {
    uint32_t nc = sh->cap ? 2 * sh->cap : 8;
    nr_wire_shape *nv = realloc(sh->v, nc * sizeof *nv);
    if (!nv) nr_server_die("out of memory");
    sh->v = nv;
    sh->cap = nc;
  }
  nr_wire_shape *x = &sh->v[sh->n++];
  *x = (nr_wire_shape){kind, idx, nd, {0}};
  memcpy(x->dims, dims, (size_t)nd * sizeof *dims);
}

static void drop_dirty(void *arg, int kind, int idx, int nd, const int64_t *dims) {}

/* NR_REP_OK, with {shapes: [[kind, idx, [dims]]...]} when Python reshaped blobs. */
static void finish_ok(nr_server *s, nr_server_layer *wl) {
  shapes sh = {0};
  if (nr_rt_take_dirty(wl->L, on_dirty, &sh) == 0) { /* the steady state: no payload */
    nr_server_post(s, NR_REP_OK, 0);
    return;
  }
  nr_wire_reply r = {.shapes = sh.v, .nshapes = sh.n};
  size_t len = 0;
  if (nr_wire_encode_reply(NR_REP_OK, &r, s->ctl->buf, NR_CTL_BUF_MAX, &len) == 0) {
    nr_server_post(s, NR_REP_OK, len);
  } else {
    nr_rt_err e = {0};
    set_error(&e, "netrun-worker: %u reshaped blobs do not fit the control block", sh.n);
    nr_server_reply_error(s, &e);
    nr_rt_err_clear(&e);
  }
  free(sh.v);
}

static nr_server_layer *create_layer(nr_server *s, uint32_t id, const nr_wire_request *q,
                                     nr_rt_err *e) {
  /* q->nreplicas 0: no "winfo" (not a prefetched data layer: get_worker_info() is None) */
  nr_rt_layer_info info = {q->name, q->module, q->layer, q->param_str, q->source_dir,
                           q->phase, q->nbottom, q->ntop, q->aliases, q->replica,
                           q->nreplicas, (long long)q->first_batch};
  if (s->nlayers == s->cap) {
    int nc = s->cap ? 2 * s->cap : 16;
    nr_server_layer **nl = realloc(s->layers, (size_t)nc * sizeof *nl);
    if (!nl) nr_server_die("out of memory");
    s->layers = nl;
    s->cap = nc;
  }
  nr_server_layer *wl = calloc(1, sizeof *wl);
  if (!wl) nr_server_die("out of memory");
  wl->id = id;
  if (!(wl->L = nr_rt_layer_create(&info, wl, e))) {
    free(wl);
    return NULL;
  }
  s->layers[s->nlayers++] = wl;
  return wl;
}

/* NR_OP_CALL: forget segments, create the layer (first setup), bind the blobs the core
 * describes, run the method. The header is checked before anything changes. */
static void handle_call(nr_server *s) {
  nr_rt_err e = {0};
  nr_wire_request q;
  const char *why = NULL;
  uint32_t id = s->ctl->layer, method = s->ctl->method, nprop = s->ctl->nprop;
  int li = layer_index(s, id);
  nr_server_layer *wl = li >= 0 ? s->layers[li] : NULL;
  if (decode_req(s, NR_OP_CALL, &q, &why) != 0) {
    set_error(&e, "netrun-worker: garbled request (%s)", why);
    goto fail;
  }
  if (method > 3 || nprop > NR_MAX_PROP) {
    set_error(&e, "netrun-worker: bad call header (method %u, %u propagate_down flags)", method,
              nprop);
    goto fail;
  }
  for (uint32_t i = 0; i < q.nforget && s->segs; i++) {
    PyObject *k = PyLong_FromUnsignedLong(q.forget[i]);
    if (k && PyDict_DelItem(s->segs, k) < 0) PyErr_Clear();
    Py_XDECREF(k);
  }
  if (q.create && wl) {
    set_error(&e, "netrun-worker: layer %u created twice", id);
    goto fail;
  }
  if (q.create && !(wl = create_layer(s, id, &q, &e))) goto fail;
  if (!wl) {
    set_error(&e, "netrun-worker: call on a layer it does not have");
    goto fail;
  }
  for (uint32_t i = 0; i < q.nblobs; i++) {
    const nr_wire_blob *d = &q.blobs[i];
    PyObject *map; /* borrowed */
    if ((why = blob_memory(s, d->seg, d->cap, d->shaped, d->shape.nd, d->shape.dims, &map))) {
      set_error(&e, "netrun-worker: blob %d/%d: %s (segment %u, capacity %lld)", d->shape.kind,
                d->shape.idx, why, d->seg, (long long)d->cap);
      goto fail;
    }
    if (nr_rt_set_blob(wl->L, d->shape.kind, d->shape.idx, map, d->cap, d->shaped, d->shape.nd,
                       d->shape.dims, &e) < 0)
      goto fail;
  }
  if (nr_rt_call(wl->L, (int)method, (int)nprop, s->ctl->prop, &e) < 0) {
    nr_rt_take_dirty(wl->L, drop_dirty, NULL); /* forget partial reshapes */
    goto fail;
  }
  nr_wire_request_clear(&q);
  /* read before replying: the block is the core's again once the reply is posted */
  s->hint_ns = atomic_load_explicit(&s->ctl->next_ns, memory_order_relaxed);
  finish_ok(s, wl);
  return;
fail:
  s->hint_ns = atomic_load_explicit(&s->ctl->next_ns, memory_order_relaxed);
  nr_wire_request_clear(&q);
  nr_server_reply_error(s, &e);
  nr_rt_err_clear(&e);
}

static void handle_release(nr_server *s) {
  int i = layer_index(s, s->ctl->layer);
  if (i >= 0) {
    nr_rt_layer_destroy(s->layers[i]->L);
    free(s->layers[i]);
    s->layers[i] = s->layers[--s->nlayers];
    nr_server_post(s, NR_REP_OK, 0);
    return;
  }
  nr_rt_err e = {0};
  set_error(&e, "netrun-worker: release of a layer it does not have");
  nr_server_reply_error(s, &e);
  nr_rt_err_clear(&e);
}

bool nr_server_handle(nr_server *s) {
  uint32_t op = s->ctl->op;
  if (op == NR_OP_EXIT) return false;
  const char *why = take_segments(s);
  if (!why && op == NR_OP_CALL) {
    handle_call(s);
  } else if (!why && op == NR_OP_RELEASE) {
    handle_release(s);
  } else {
    nr_rt_err e = {0};
    set_error(&e, "netrun-worker: %s (opcode %u)", why ? why : "unknown request", op);
    nr_server_reply_error(s, &e);
    nr_rt_err_clear(&e);
  }
  return true;
}
