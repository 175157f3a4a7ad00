/* fuzz_worker_request.c: libFuzzer target for netrun-worker's request handling
 * (worker/server.c): what the worker does around the payload decoder — descriptors taken
 * from the socket and mapped, layers created, blob descriptors bound to segments, methods
 * run, nested requests for memory, forget lists, releases, unknown opcodes.
 *
 * The harness plays the core in-process, the way the pool (ipc/pool_call.c) does it: the
 * control block is an anonymous shared mapping, the descriptor socket a socket pair, and a
 * "core" thread sends the requests and answers the nested ones while the main thread runs
 * the worker's loop. CPython starts once (LLVMFuzzerInitialize) with the repository's caffe package
 * and the layers of tests/fuzz/fuzz_worker_layers.py on sys.path; every input gets a fresh server,
 * socket pair and control block, and sys.path as it started.
 *
 * Input: up to 8 requests, each a 13-byte header and its payload:
 *   0      opcode: index into ops[] (calls, a release, nested answers out of turn, unknown)
 *   1      layer id           2  method (0..3 are valid)
 *   3..4   nprop, little endian (NR_MAX_PROP at most is valid)
 *   5      propagate_down flags, bit i % 8 for flag i
 *   6      segments: bits 0-1 how many memfds (ids 1, 2, 3) are sent; bit 2 announce one
 *          more than sent; bit 3 announce none; bit 4 header len past the control block
 *   7..9   segment i holds byte[7 + i] * 64 bytes
 *   10     answers to the nested requests of this call, 2 bits each (then again): 0 grant
 *          a fresh segment, 1 refuse, 2 name a segment the worker does not have, 3 grant a
 *          segment half the size the capacity needs; past 32 nested requests, refuse
 *   11..12 payload length, little endian (cut to what the input has)
 *   payload: msgpack for the control block
 * Findings: any crash, leak or sanitizer report; a request without exactly one final
 * reply (NR_REP_OK or NR_REP_ERROR) or whose reply the core's decoder refuses; an error
 * reply without a message; a descriptor left open. */
#define _GNU_SOURCE
#include <dirent.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server.h"

#ifndef NR_PYTHON_PKG_DIR
#define NR_PYTHON_PKG_DIR "python"
#endif
#ifndef NR_FUZZ_DIR
#define NR_FUZZ_DIR "tests/fuzz"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define NR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NR_ASAN 1
#endif
#endif

enum { HEADER = 13, MAX_REQUESTS = 8, MAX_NESTED = 32, MAX_GRANT = 1 << 17 /* floats */ };

static const uint32_t ops[] = {NR_OP_CALL,      NR_OP_CALL,       NR_OP_CALL, NR_OP_RELEASE,
                               NR_OP_NESTED_OK, NR_OP_NESTED_ERR, 0,          777};
#define NOPS (sizeof ops / sizeof ops[0])

typedef struct request {
  const uint8_t *h; /* HEADER bytes */
  const uint8_t *payload;
  size_t len;
} request;

static struct {
  nr_ctl *ctl;
  nr_server srv;
  int sock;                 /* the core's end of the socket pair */
  uint32_t next_id;         /* segment id of the next nested grant */
  uint32_t seq;             /* the number of the last message posted (the core's count) */
  request req[MAX_REQUESTS];
  int nreq;
  PyObject *sys_path;       /* new: sys.path as started */
  PyObject *importer_cache; /* new: a copy of sys.path_importer_cache as started */
  PyObject *runtime;        /* new: caffe._runtime */
  PyObject *insert_at;      /* new: caffe._runtime._insert_at as started */
  PyObject *reset_layers;   /* new: fuzz_worker_layers.reset */
  bool verbose;
} H;

static void must(int cond, const char *what, const char *why) {
  if (cond) return;
  fprintf(stderr, "fuzz_worker_request: %s%s%s\n", what, why ? ": " : "", why ? why : "");
  abort(); /* a broken invariant is a finding */
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  while (d && readdir(d)) n++;
  if (d) closedir(d);
  return n;
}

/* ---- the core thread ---- */

/* Sends n fresh memfds of the given sizes with their ids (closing the core's copies). */
static void send_segments(int n, const size_t *bytes, const uint32_t *ids) {
  int fds[4];
  for (int i = 0; i < n; i++) {
    fds[i] = memfd_create("fuzz-segment", MFD_CLOEXEC);
    must(fds[i] >= 0 && ftruncate(fds[i], (off_t)bytes[i]) == 0, "memfd", NULL);
  }
  if (n) must(nr_wire_send_fds(H.sock, fds, ids, n) == 0, "sending segments", NULL);
  for (int i = 0; i < n; i++) close(fds[i]);
}

/* Posts the message in the block, as ipc/pool_call.c's nr__post() does. */
static void post(uint32_t op, size_t len, uint32_t nsegs) {
  H.ctl->op = op;
  H.ctl->len = (uint32_t)len;
  H.ctl->nsegs = nsegs;
  nr_wire_wake(&H.ctl->req_seq, ++H.seq, &H.ctl->req_sleep);
}

/* Waits for the worker's answer to the message just posted and checks its form. */
static uint32_t wait_reply(nr_wire_reply *r) {
  int64_t spin = 0;
  int rc = nr_wire_wait(&H.ctl->rep_seq, H.seq, true, &H.ctl->rep_sleep, NULL, &spin, 0,
                        nr_wire_now_ns() + 60000000000LL, NULL, NULL);
  must(rc != EPROTO, "a reply that answers another message", NULL);
  must(rc == 0, "no reply within 60 s", NULL);
  uint32_t op = H.ctl->op, len = H.ctl->len;
  must(op == NR_REP_OK || op == NR_REP_ERROR || op == NR_REP_GROW || op == NR_REP_ADD_PARAM,
       "a reply opcode the core does not expect", NULL);
  must(len <= NR_CTL_BUF_MAX, "reply length past the control block", NULL);
  const char *why = NULL;
  must(nr_wire_decode_reply(op, H.ctl->buf, len, r, &why) == 0, "a reply the core refuses", why);
  must(op != NR_REP_ERROR || (r->msg && *r->msg), "an error reply without a message", NULL);
  if (H.verbose) /* NR_FUZZ_VERBOSE=1: what each request got (for writing seeds) */
    fprintf(stderr, "  reply %u: %u shapes, %s%s%s\n", op, r->nshapes, r->type ? r->type : "",
            r->type ? ": " : "", r->msg ? r->msg : "");
  return op;
}

/* Answers a nested request for shape `want`: 0 grant, 1 refuse, 2 name an unknown segment,
 * 3 grant half the memory the capacity needs (see the input format above). */
static void answer_nested(const nr_wire_shape *want, int how) {
  uint64_t count = 1;
  for (int i = 0; i < want->nd; i++)
    if (__builtin_mul_overflow(count, (uint64_t)want->dims[i], &count)) count = UINT64_MAX;
  if (count > MAX_GRANT) how = 1;
  nr_wbuf wb = {H.ctl->buf, 0, NR_CTL_BUF_MAX, false};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &wb, nr_wbuf_write);
  msgpack_pack_array(&pk, 2);
  if (how == 1) {
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str(&pk, 13);
    msgpack_pack_str_body(&pk, "out of memory", 13);
    post(NR_OP_NESTED_ERR, wb.len, 0);
    return;
  }
  uint32_t id = how == 2 ? 4242 : 0, nsegs = 0;
  if (count && how != 2) {
    size_t bytes = (size_t)count * (how == 3 ? 4 : 8);
    id = H.next_id++;
    send_segments(1, &bytes, &id);
    nsegs = 1;
  }
  msgpack_pack_uint32(&pk, id);
  msgpack_pack_uint64(&pk, id ? count : 0);
  post(NR_OP_NESTED_OK, wb.len, nsegs);
}

static void send_request(const request *q) {
  const uint8_t *h = q->h;
  int n = h[6] & 3;
  size_t bytes[3];
  uint32_t ids[3] = {1, 2, 3};
  for (int i = 0; i < n; i++) bytes[i] = (size_t)h[7 + i] * 64;
  send_segments(n, bytes, ids);
  H.ctl->layer = h[1];
  H.ctl->method = h[2];
  H.ctl->nprop = (uint32_t)h[3] | (uint32_t)h[4] << 8;
  for (int i = 0; i < NR_MAX_PROP; i++) H.ctl->prop[i] = (h[5] >> (i % 8)) & 1;
  memcpy(H.ctl->buf, q->payload, q->len);
  size_t len = (h[6] & 16) ? NR_CTL_BUF_MAX + 1 + q->len : q->len;
  post(ops[h[0] % NOPS], len, (h[6] & 8) ? 0 : (uint32_t)n + !!(h[6] & 4));
}

static void *core_main(void *arg) {
  for (int i = 0; i < H.nreq; i++) {
    send_request(&H.req[i]);
    for (int k = 0;; k++) {
      nr_wire_reply r;
      uint32_t op = wait_reply(&r);
      bool final = op == NR_REP_OK || op == NR_REP_ERROR;
      if (!final) { /* past MAX_NESTED, no: a layer with 10^6 tops would take hours */
        int how = k < MAX_NESTED ? (H.req[i].h[10] >> (2 * (k % 4))) & 3 : 1;
        answer_nested(&r.nested, how);
      }
      nr_wire_reply_clear(&r);
      if (final) break;
    }
  }
  post(NR_OP_EXIT, 0, 0);
  return NULL;
}

/* ---- the worker (main thread) ---- */

/* sys.path, the import system's cache of its directories (every new source_dir adds an
 * entry: the process would grow without end) and the kept blobs as they were at start. */
static void reset_python(void) {
  PyObject *path = PySys_GetObject("path");                 /* borrowed */
  PyObject *cache = PySys_GetObject("path_importer_cache"); /* borrowed */
  must(path && cache && PyList_SetSlice(path, 0, PY_SSIZE_T_MAX, H.sys_path) == 0 &&
           PyObject_SetAttrString(H.runtime, "_insert_at", H.insert_at) == 0,
       "resetting sys.path", NULL);
  if (PyDict_Size(cache) != PyDict_Size(H.importer_cache)) {
    PyDict_Clear(cache);
    must(PyDict_Update(cache, H.importer_cache) == 0, "resetting the importer cache", NULL);
  }
  PyObject *r = PyObject_CallNoArgs(H.reset_layers); /* new */
  must(r != NULL, "fuzz_worker_layers.reset()", NULL);
  Py_DECREF(r);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
#ifdef NR_ASAN
  setenv("PYTHONMALLOC", "malloc", 0); /* every CPython allocation through ASan */
#endif
  H.verbose = getenv("NR_FUZZ_VERBOSE") != NULL;
  H.ctl = mmap(NULL, NR_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  must(H.ctl != MAP_FAILED, "mapping the control block", NULL);
  nr_rt_host host = nr_server_host(&H.srv);
  nr_rt_err e = {0};
  must(nr_rt_init(&host, NR_PYTHON_PKG_DIR, "", &e) == 0, "starting Python", e.msg);
  PyObject *path = PySys_GetObject("path"); /* borrowed */
  PyObject *dir = PyUnicode_FromString(NR_FUZZ_DIR); /* new */
  must(path && dir && PyList_Append(path, dir) == 0, "sys.path", NULL);
  Py_DECREF(dir);
  PyObject *layers = PyImport_ImportModule("fuzz_worker_layers"); /* new */
  H.runtime = PyImport_ImportModule("caffe._runtime");
  must(layers && H.runtime, "importing fuzz_worker_layers and caffe._runtime", NULL);
  H.reset_layers = PyObject_GetAttrString(layers, "reset");
  H.insert_at = PyObject_GetAttrString(H.runtime, "_insert_at");
  H.sys_path = PyList_GetSlice(path, 0, PY_SSIZE_T_MAX);
  H.importer_cache = PyDict_Copy(PySys_GetObject("path_importer_cache"));
  must(H.reset_layers && H.insert_at && H.sys_path && H.importer_cache, "Python state", NULL);
  Py_DECREF(layers);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  H.nreq = 0;
  for (size_t off = 0; H.nreq < MAX_REQUESTS && size - off >= HEADER;) {
    request *q = &H.req[H.nreq++];
    q->h = data + off;
    q->payload = data + off + HEADER;
    q->len = (size_t)q->h[11] | (size_t)q->h[12] << 8;
    if (q->len > size - off - HEADER) q->len = size - off - HEADER;
    off += HEADER + q->len;
  }
  int fds = count_fds();
  int sv[2];
  must(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair", NULL);
  H.sock = sv[0];
  H.next_id = 16;
  atomic_store(&H.ctl->req_seq, 0);
  atomic_store(&H.ctl->rep_seq, 0);
  H.seq = 0;
  nr_server_init(&H.srv, H.ctl, sv[1], getppid());
  pthread_t core;
  must(pthread_create(&core, NULL, core_main, NULL) == 0, "starting the core thread", NULL);
  do nr_server_wait(&H.srv);
  while (nr_server_handle(&H.srv));
  pthread_join(core, NULL);
  /* Every message but the final EXIT (which a worker never answers) has had its reply. */
  must(atomic_load(&H.ctl->rep_seq) == H.seq - 1, "the last reply answers another message",
       NULL);
  nr_server_destroy(&H.srv);
  close(sv[0]);
  close(sv[1]);
  reset_python();
  must(count_fds() == fds, "a descriptor leaked", NULL);
  return 0;
}
