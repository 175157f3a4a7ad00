/* netrun-worker: one process of the Python-layer pool (see ipc/wire.h, docs/workers.md).
 *
 * Started by the core (ipc/pool.c) with fd 3 = its Unix socket (descriptors only),
 * fd 4 = the control block memfd, fd 5 = a memfd faulthandler writes the last Python stack
 * to, argv[1] = the core's pid. It embeds CPython, says hello, then serves requests until
 * NR_OP_EXIT, socket EOF, or the core's death (PR_SET_PDEATHSIG(SIGKILL)). SIGINT is
 * ignored: Ctrl-C belongs to the core, which decides.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runner.h"
#include "wire.h"

#ifndef NR_PYTHON_PKG_DIR
#define NR_PYTHON_PKG_DIR ""
#endif
#ifndef NR_PYTHON_PKG_DIR_INSTALL
#define NR_PYTHON_PKG_DIR_INSTALL ""
#endif

typedef struct wlayer {
  uint32_t id;
  nr_rt_layer *L;
} wlayer;

static struct {
  nr_ctl *ctl;
  int sock;
  pid_t parent;
  PyObject *segs; /* new: dict seg id -> Mapping */
  wlayer **layers;
  int nlayers, cap;
  int64_t spin_ns;
  char pkg_dir[4096];
} W;

static void die(const char *what) {
  fprintf(stderr, "netrun-worker[%d]: %s: %s\n", (int)getpid(), what, strerror(errno));
  _exit(3);
}

/* Is the core still there? Socket EOF or a new parent means no. */
static bool core_alive(void) {
  if (getppid() != W.parent) return false;
  struct pollfd p = {W.sock, POLLRDHUP, 0};
  if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR))) return false;
  return true;
}

static void flush_python(void) {
  PyObject *r = PyRun_String("import sys\nfor f in (sys.stdout, sys.stderr):\n try: f.flush()\n except Exception: pass\n",
                             Py_file_input, PyEval_GetBuiltins(), NULL);
  (void)r;
}

static void leave(int code) {
  flush_python();
  fflush(NULL);
  _exit(code);
}

/* Waits for the core's next message with the GIL released (user threads keep running). */
static void wait_request(void) {
  PyThreadState *ts = PyEval_SaveThread();
  for (;;) {
    int r = nr_wire_wait(&W.ctl->req, &W.spin_ns, 100000, nr_wire_now_ns() + 1000000000,
                         &W.ctl->worker_cpu, &W.ctl->core_cpu);
    if (r == 0) break;
    if (r != ETIMEDOUT) {
      PyEval_RestoreThread(ts);
      errno = r;
      die("waiting for a request");
    }
    if (!core_alive()) _exit(0);
  }
  PyEval_RestoreThread(ts);
}

static void post_reply(uint32_t op, size_t len) {
  W.ctl->op = op;
  W.ctl->len = (uint32_t)len;
  atomic_store_explicit(&W.ctl->rep_seq, atomic_load(&W.ctl->req_seq), memory_order_release);
  sem_post(&W.ctl->rep);
}

/* Receives the descriptors announced in the header and maps them. 0 or -1 (errno). */
static int take_segments(void) {
  uint32_t n = W.ctl->nsegs;
  if (!n) return 0;
  int *fds = malloc(n * sizeof *fds);
  uint32_t *ids = malloc(n * sizeof *ids);
  if (!fds || !ids) die("out of memory");
  int r = nr_wire_recv_fds(W.sock, fds, ids, (int)n);
  if (r) {
    errno = r;
    die("receiving segments");
  }
  for (uint32_t i = 0; i < n; i++) {
    struct stat st;
    if (fstat(fds[i], &st) < 0) die("fstat of a segment");
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
    if (p == MAP_FAILED) die("mapping a segment");
    close(fds[i]);
    PyObject *m = nr_rt_mapping_new(p, (size_t)st.st_size, true); /* new */
    PyObject *k = PyLong_FromUnsignedLong(ids[i]);                 /* new */
    if (!m || !k || PyDict_SetItem(W.segs, k, m) < 0) die("recording a segment");
    Py_DECREF(m);
    Py_DECREF(k);
  }
  free(fds);
  free(ids);
  return 0;
}

static PyObject *seg_get(uint64_t id) { /* borrowed or NULL */
  if (!id) return NULL;
  PyObject *k = PyLong_FromUnsignedLongLong(id);
  PyObject *m = k ? PyDict_GetItem(W.segs, k) : NULL;
  Py_XDECREF(k);
  return m;
}

static wlayer *find_layer(uint32_t id) {
  for (int i = 0; i < W.nlayers; i++)
    if (W.layers[i]->id == id) return W.layers[i];
  return NULL;
}

/* ---- msgpack helpers ---- */

static void pack_str(msgpack_packer *pk, const char *s) {
  size_t n = s ? strlen(s) : 0;
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s ? s : "", n);
}

/* Decodes the core's message in the control block (opcode op) with the validating decoder
 * (ipc/wire.c), after checking the length against the block and copying the payload out of
 * the shared block. 0, EPROTO or ENOMEM; q is always safe to clear. */
static int decode_req(uint32_t op, nr_wire_request *q, const char **why) {
  memset(q, 0, sizeof *q);
  uint32_t len = *(volatile uint32_t *)&W.ctl->len;
  if (len > NR_CTL_BUF_MAX) {
    *why = "payload length past the end of the control block";
    return EPROTO;
  }
  char *copy = NULL;
  if (len) {
    if (!(copy = malloc(len))) {
      *why = "out of memory";
      return ENOMEM;
    }
    memcpy(copy, W.ctl->buf, len);
  }
  int rc = nr_wire_decode_request(op, copy, len, q, why);
  free(copy);
  return rc;
}

/* Writes an error reply {type, msg, tb}, trimming the traceback from its start when the
 * control block cannot hold it (the last frames are the useful ones). */
static void reply_error(const nr_rt_err *e) {
  const char *tb = e->tb ? e->tb : "";
  size_t tbl = strlen(tb);
  for (;;) {
    nr_wbuf wb = {W.ctl->buf, 0, NR_CTL_BUF_MAX, false};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &wb, nr_wbuf_write);
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "type");
    pack_str(&pk, e->type ? e->type : "Exception");
    pack_str(&pk, "msg");
    const char *msg = e->msg ? e->msg : "";
    size_t ml = strlen(msg);
    if (ml > NR_CTL_BUF_MAX / 4) ml = NR_CTL_BUF_MAX / 4;
    msgpack_pack_str(&pk, ml);
    msgpack_pack_str_body(&pk, msg, ml);
    pack_str(&pk, "tb");
    const char *t = tb + strlen(tb) - tbl;
    msgpack_pack_str(&pk, tbl);
    msgpack_pack_str_body(&pk, t, tbl);
    if (!wb.overflow) {
      post_reply(NR_REP_ERROR, wb.len);
      return;
    }
    tbl /= 2;
  }
}

/* ---- nested requests (Python wants memory) ---- */

static int nested(uint32_t op, uint32_t layer, int kind, int idx, int nd, const int64_t *dims,
                  PyObject **map, int64_t *cap, char *msg, size_t msglen, int *exc) {
  nr_wbuf wb = {W.ctl->buf, 0, NR_CTL_BUF_MAX, false};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &wb, nr_wbuf_write);
  msgpack_pack_array(&pk, 3);
  msgpack_pack_int(&pk, kind);
  msgpack_pack_int(&pk, idx);
  msgpack_pack_array(&pk, (size_t)nd);
  for (int i = 0; i < nd; i++) msgpack_pack_int64(&pk, dims[i]);
  W.ctl->layer = layer;
  post_reply(op, wb.len);
  wait_request();
  take_segments();
  int rc = -1;
  uint32_t aop = *(volatile uint32_t *)&W.ctl->op;
  nr_wire_request q;
  const char *why = "unexpected opcode";
  if ((aop != NR_OP_NESTED_OK && aop != NR_OP_NESTED_ERR) || decode_req(aop, &q, &why) != 0) {
    snprintf(msg, msglen, "netrun-worker: garbled answer from the core (%s)", why);
    *exc = 2;
  } else if (aop == NR_OP_NESTED_OK) {
    *cap = q.cap;
    PyObject *m = seg_get(q.seg);
    *map = m;
    Py_XINCREF(m);
    rc = (m || q.cap == 0) ? 0 : -1;
    if (rc) {
      snprintf(msg, msglen, "netrun-worker: segment %lu unknown", (unsigned long)q.seg);
      *exc = 2;
    } else if (!m) {
      Py_INCREF(Py_None);
      *map = Py_None;
    }
  } else {
    *exc = q.exc;
    snprintf(msg, msglen, "%s", q.err_msg ? q.err_msg : "");
  }
  nr_wire_request_clear(&q);
  return rc;
}

static int host_grow(void *ctx, void *hl, int kind, int idx, int nd, const int64_t *dims,
                     PyObject **map, int64_t *cap, char *msg, size_t msglen, int *exc) {
  return nested(NR_REP_GROW, ((wlayer *)hl)->id, kind, idx, nd, dims, map, cap, msg, msglen,
                exc);
}

static int host_add_param(void *ctx, void *hl, int nd, const int64_t *dims, PyObject **map,
                          int64_t *cap, char *msg, size_t msglen, int *exc) {
  return nested(NR_REP_ADD_PARAM, ((wlayer *)hl)->id, NR_SLOT_PARAM, -1, nd, dims, map, cap,
                msg, msglen, exc);
}

/* ---- one call ---- */

typedef struct {
  nr_wbuf wb;
  msgpack_packer pk;
  int n;
  char tmp[1 << 16];
} dirty_acc;

static void on_dirty(void *arg, int kind, int idx, int nd, const int64_t *dims) {
  dirty_acc *d = arg;
  msgpack_pack_array(&d->pk, 3);
  msgpack_pack_int(&d->pk, kind);
  msgpack_pack_int(&d->pk, idx);
  msgpack_pack_array(&d->pk, (size_t)nd);
  for (int i = 0; i < nd; i++) msgpack_pack_int64(&d->pk, dims[i]);
  d->n++;
}

static void finish_ok(wlayer *wl) {
  static dirty_acc d;
  d.wb = (nr_wbuf){d.tmp, 0, sizeof d.tmp, false};
  msgpack_packer_init(&d.pk, &d.wb, nr_wbuf_write);
  d.n = 0;
  int n = wl ? nr_rt_take_dirty(wl->L, on_dirty, &d) : 0;
  if (n == 0) {
    post_reply(NR_REP_OK, 0);
    return;
  }
  nr_wbuf wb = {W.ctl->buf, 0, NR_CTL_BUF_MAX, false};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &wb, nr_wbuf_write);
  msgpack_pack_map(&pk, 1);
  pack_str(&pk, "shapes");
  msgpack_pack_array(&pk, (size_t)n);
  nr_wbuf_write(&wb, d.tmp, d.wb.len);
  post_reply(NR_REP_OK, wb.len);
}

static void handle_call(void) {
  nr_rt_err e = {0};
  uint32_t id = W.ctl->layer;
  int method = (int)W.ctl->method;
  take_segments();
  wlayer *wl = find_layer(id);
  nr_wire_request q;
  const char *why = NULL;
  int rc = decode_req(NR_OP_CALL, &q, &why);
  if (rc) {
    nr_wire_request_clear(&q);
    if (rc == ENOMEM) die("out of memory");
    nr_rt_err_set(&e, "RuntimeError", "netrun-worker: garbled request");
    goto fail;
  }
  for (uint32_t i = 0; i < q.nforget; i++) {
    PyObject *k = PyLong_FromUnsignedLong(q.forget[i]);
    if (k && PyDict_DelItem(W.segs, k) < 0) PyErr_Clear();
    Py_XDECREF(k);
  }
  if (q.create && !wl) {
    /* q.nreplicas 0: no "winfo" (not a prefetched data layer: get_worker_info() is None) */
    nr_rt_layer_info info = {q.name, q.module, q.layer, q.param_str, q.source_dir, q.phase,
                             q.nbottom, q.ntop, q.aliases, q.replica, q.nreplicas,
                             (long long)q.first_batch};
    wl = calloc(1, sizeof *wl);
    if (!wl) die("out of memory");
    wl->id = id;
    wl->L = nr_rt_layer_create(&info, wl, &e);
    if (!wl->L) {
      free(wl);
      nr_wire_request_clear(&q);
      goto fail;
    }
    if (W.nlayers == W.cap) {
      W.cap = W.cap ? 2 * W.cap : 16;
      W.layers = realloc(W.layers, (size_t)W.cap * sizeof *W.layers);
      if (!W.layers) die("out of memory");
    }
    W.layers[W.nlayers++] = wl;
  }
  if (!wl) {
    nr_wire_request_clear(&q);
    nr_rt_err_set(&e, "RuntimeError", "netrun-worker: call on a layer it does not have");
    goto fail;
  }
  for (uint32_t i = 0; i < q.nblobs; i++) {
    const nr_wire_blob *d = &q.blobs[i];
    if (nr_rt_set_blob(wl->L, d->shape.kind, d->shape.idx, seg_get(d->seg), d->cap, d->shaped,
                       d->shape.nd, d->shape.dims, &e) < 0) {
      nr_wire_request_clear(&q);
      goto fail;
    }
  }
  nr_wire_request_clear(&q);
  if (!wl) {
    nr_rt_err_set(&e, "RuntimeError", "netrun-worker: call on a layer it does not have");
    goto fail;
  }
  if (nr_rt_call(wl->L, method, (int)W.ctl->nprop, W.ctl->prop, &e) < 0) {
    nr_rt_take_dirty(wl->L, on_dirty, &(dirty_acc){0}); /* forget partial reshapes */
    goto fail;
  }
  finish_ok(wl);
  return;
fail:
  reply_error(&e);
  nr_rt_err_clear(&e);
}

static void handle_release(void) {
  for (int i = 0; i < W.nlayers; i++)
    if (W.layers[i]->id == W.ctl->layer) {
      nr_rt_layer_destroy(W.layers[i]->L);
      free(W.layers[i]);
      W.layers[i] = W.layers[--W.nlayers];
      break;
    }
  post_reply(NR_REP_OK, 0);
}

/* faulthandler writes the Python stack of every thread to fd 5 on a fatal signal, and on
 * SIGUSR1 (the core sends it before killing a worker that overran --py-timeout). */
static int enable_faulthandler(nr_rt_err *e) {
  PyObject *g = PyDict_New(); /* new */
  if (!g) return -1;
  PyObject *r = PyRun_String(
      "import faulthandler, signal\n"
      "faulthandler.enable(file=5, all_threads=True)\n"
      "faulthandler.register(signal.SIGUSR1, file=5, all_threads=True, chain=False)\n",
      Py_file_input, g, g); /* new */
  Py_DECREF(g);
  if (!r) {
    nr_rt_err_set(e, "RuntimeError", "cannot enable faulthandler");
    PyErr_Clear();
    return -1;
  }
  Py_DECREF(r);
  return 0;
}

static void find_pkg_dir(void) {
  /* Build tree first (a developer running from build/), then the install location,
   * then <exe>/../lib/netrun/python. */
  const char *env = getenv("NETRUN_PYTHON_DIR");
  const char *cands[3] = {env, NR_PYTHON_PKG_DIR, NR_PYTHON_PKG_DIR_INSTALL};
  for (int i = 0; i < 3; i++) {
    char p[4200];
    if (!cands[i] || !*cands[i]) continue;
    snprintf(p, sizeof p, "%s/caffe/__init__.py", cands[i]);
    if (access(p, R_OK) == 0) {
      snprintf(W.pkg_dir, sizeof W.pkg_dir, "%s", cands[i]);
      return;
    }
  }
  char exe[2048];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    snprintf(W.pkg_dir, sizeof W.pkg_dir, "%s/../lib/netrun/python", exe);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "netrun-worker: started by netrun, not by hand\n");
    return 2;
  }
  W.parent = (pid_t)atol(argv[1]);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl");
  if (getppid() != W.parent) _exit(0); /* the core died before prctl */
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  W.sock = NR_FD_SOCK;
  fcntl(NR_FD_SOCK, F_SETFD, FD_CLOEXEC);
  fcntl(NR_FD_CTL, F_SETFD, FD_CLOEXEC);
  fcntl(NR_FD_FAULT, F_SETFD, FD_CLOEXEC);
  W.ctl = mmap(NULL, NR_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, NR_FD_CTL, 0);
  if (W.ctl == MAP_FAILED) die("mapping the control block");
  close(NR_FD_CTL);
  W.spin_ns = 50000;
  setvbuf(stdout, NULL, _IOLBF, 0);

  find_pkg_dir();
  nr_rt_host host = {NULL, host_grow, host_add_param};
  nr_rt_err e = {0};
  const char *types = argc > 2 ? argv[2] : "";
  if (nr_rt_init(&host, W.pkg_dir, types, &e) < 0 || enable_faulthandler(&e) < 0 ||
      !(W.segs = PyDict_New())) {
    if (!e.msg) nr_rt_err_set(&e, "RuntimeError", "worker start failed");
    reply_error(&e); /* an NR_REP_ERROR answering sequence 0: the core reports it */
    leave(1);
  }
  post_reply(NR_REP_HELLO, 0);

  for (;;) {
    wait_request();
    switch (W.ctl->op) {
      case NR_OP_CALL: handle_call(); break;
      case NR_OP_RELEASE: handle_release(); break;
      case NR_OP_EXIT: leave(0); break;
      default: {
        nr_rt_err_set(&e, "RuntimeError", "netrun-worker: unknown request");
        reply_error(&e);
        nr_rt_err_clear(&e);
      }
    }
  }
}
