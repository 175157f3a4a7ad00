/* wire.h: what the core and a netrun-worker share — the control block, the opcodes, the
 * wait discipline, descriptor passing, the payloads' format. Used by both sides (the pool,
 * ipc/pool*.c, and worker/server.c); depends on nothing of core/ so the worker links
 * without the engine.
 *
 * One worker = one Unix stream socket + one control block (a memfd mapped MAP_SHARED by
 * both processes). The socket carries only file descriptors (SCM_RIGHTS) with their
 * segment ids: a blob segment is sent once, when it is new to that worker. Every request
 * and reply travels through the control block:
 *
 *   core                                       worker
 *   write header (+ msgpack in buf)
 *   req_seq = n (wake)               ---->     spin, then futex-wait for req_seq == n
 *                                              read fds announced in nsegs (socket)
 *                                              run Python
 *   spin, then futex-wait for        <----     write reply, rep_seq = n (wake)
 *   rep_seq == n
 *
 * A reply may be a nested request (NR_REP_GROW, NR_REP_ADD_PARAM: the Python layer wants
 * more memory for a blob); the core serves it with NR_OP_NESTED_OK/ERR (the next sequence
 * number) and keeps waiting for the final reply.
 *
 * The worker is untrusted: Python can write any byte of the control block. So the wake-up
 * words are raw futex words the core only reads as hints: it waits in bounded slices, each
 * ending in a check of its own (private) record of the worker's death, and it validates the
 * sequence (while a call is pending rep_seq must be the request's number or the one before;
 * anything else is a broken protocol and the worker is ended). No value the worker writes
 * can make the core abort (glibc's sem_wait does, on a corrupted semaphore), wait past its
 * deadline, or take a stale reply for a fresh one; the payload is copied before it is
 * decoded (nr_wire_read_reply).
 *
 * Payloads are msgpack in buf; an empty payload (len 0) is the common hot-path case (no
 * shapes changed, nothing to forget), so a steady-state forward encodes nothing. All of
 * the format is in wire.c: each direction has one encoder and one validating decoder, and
 * neither side packs or unpacks msgpack itself.
 */
#ifndef NR_WIRE_H
#define NR_WIRE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NR_WIRE_VERSION 1
#define NR_CTL_SIZE (4u << 20)   /* bytes of one control block (sparse memfd) */
#define NR_MAX_PROP 256          /* propagate_down flags carried in the header */

/* File descriptors a worker is started with. */
enum { NR_FD_SOCK = 3, NR_FD_CTL = 4, NR_FD_FAULT = 5 };

typedef enum nr_wire_op {
  /* core -> worker */
  NR_OP_CALL = 1,    /* method on layer; SETUP payload carries the creation arguments */
  NR_OP_RELEASE,     /* drop a layer object */
  NR_OP_EXIT,        /* leave the loop and exit 0 */
  NR_OP_NESTED_OK,   /* answer to a nested request: {seg, cap, shape} */
  NR_OP_NESTED_ERR,  /* answer to a nested request: {msg} */
  /* worker -> core */
  NR_REP_HELLO = 100, /* worker ready (status 0) or failed to start ({msg}) */
  NR_REP_OK,          /* payload (optional): {shapes: [[kind, idx, [dims]]...]} */
  NR_REP_ERROR,       /* {type, msg, tb} */
  NR_REP_GROW,        /* nested: {kind, idx, dims} */
  NR_REP_ADD_PARAM    /* nested: {dims} */
} nr_wire_op;

/* Blob slots of a layer. */
enum { NR_SLOT_BOTTOM = 0, NR_SLOT_TOP = 1, NR_SLOT_PARAM = 2 };

typedef struct nr_ctl {
  _Atomic uint32_t req_seq;  /* core -> worker: the request's number (a futex word) */
  _Atomic uint32_t rep_seq;  /* worker -> core: the number answered (a futex word) */
  _Atomic uint32_t req_sleep; /* the worker sleeps on req_seq: wake it (a hint) */
  _Atomic uint32_t rep_sleep; /* the core sleeps on rep_seq: wake it (a hint) */
  uint32_t op;               /* nr_wire_op of the message in flight */
  uint32_t layer;            /* layer id */
  uint32_t method;           /* nr_py_method for NR_OP_CALL */
  uint32_t nsegs;            /* descriptors sent on the socket just before this message */
  uint32_t len;              /* bytes of msgpack in buf */
  uint32_t nprop;            /* propagate_down flags in prop */
  _Atomic int core_cpu;      /* CPU each side last woke on (spin policy, see nr_wire_wait) */
  _Atomic int worker_cpu;
  /* core -> worker, a hint written with each call: ns from this call's reply to the core's
   * next message to this worker, as the core saw it last time after the same method of
   * the same layer (0: not known, or no CPU to spare). The worker wakes itself for then
   * (worker/server.c). */
  _Atomic int64_t next_ns;
  uint8_t prop[NR_MAX_PROP];
  _Alignas(64) char buf[];   /* NR_CTL_SIZE - offsetof(nr_ctl, buf) bytes */
} nr_ctl;

#define NR_CTL_BUF_MAX (NR_CTL_SIZE - offsetof(nr_ctl, buf))

/* Publishes value in *seq and wakes the peer if it said it sleeps there (*sleeping). */
void nr_wire_wake(_Atomic uint32_t *seq, uint32_t value, const _Atomic uint32_t *sleeping);
/* Wakes every thread sleeping on seq (the core's watcher, after marking a worker dead). */
void nr_wire_wake_all(_Atomic uint32_t *seq);

/* Waits until *seq == want: spins up to *spin_ns, then sleeps on the futex word in slices
 * of at most 50 ms, rechecking *seq, *abort_flag and the deadline after each (so a peer that
 * never wakes us, or wakes us for nothing, costs latency, never a hang). Adaptive spin: a
 * wait that slept but was answered within max_spin_ns sets *spin_ns to twice the answer
 * time, a longer one halves it (floor 1 us). my_cpu/peer_cpu (optional): each side records
 * the CPU it woke on; a spinner whose peer last ran on its CPU yields to it.
 * strict: *seq may only be want or want - 1 (the call pending); any other value -> EPROTO.
 * Returns 0, ETIMEDOUT past deadline_ns (absolute, nr_wire_now_ns; 0 = none), ECANCELED
 * when *abort_flag (optional, private to the waiter) is set, or EPROTO. */
int nr_wire_wait(const _Atomic uint32_t *seq, uint32_t want, bool strict,
                 _Atomic uint32_t *sleeping, const _Atomic int *abort_flag, int64_t *spin_ns,
                 int64_t max_spin_ns, int64_t deadline_ns, _Atomic int *my_cpu,
                 const _Atomic int *peer_cpu);
int64_t nr_wire_now_ns(void);

/* Sends n descriptors with their n segment ids (one sendmsg per 200). 0 or an errno. */
int nr_wire_send_fds(int sock, const int *fds, const uint32_t *ids, int n);
/* Receives exactly n (fd, id) pairs; blocks unless sock is non-blocking. 0, or an errno
 * (EPIPE on EOF, EPROTO for a message whose ids and fds do not pair up or that carries more
 * than asked for; EAGAIN). Received fds are close-on-exec; on error all are closed. */
int nr_wire_recv_fds(int sock, int *fds, uint32_t *ids, int n);

/* msgpack writer into a bounded buffer (the control block); overflow is remembered and the
 * caller decides (usually: truncate the text that caused it and encode again). The
 * encoders below use it; tests that forge malformed payloads use it with msgpack-c. */
typedef struct nr_wbuf {
  char *p;
  size_t len, cap;
  bool overflow;
} nr_wbuf;
int nr_wbuf_write(void *data, const char *buf, size_t len); /* a msgpack_packer_write */

/* ---- Decoding payloads ----
 *
 * One decoder per direction checks the form of a payload completely — one msgpack object
 * filling exactly `len` bytes, the types and element counts of every field, axis counts
 * (at most NR_WIRE_MAX_AXES), slot kinds (NR_SLOT_*), no negative dimension or capacity —
 * so the side that uses the result only checks meaning (does this layer have blob idx?
 * is this segment known?). Anything else is EPROTO with a short reason in *why (static
 * text); ENOMEM if the decoder itself ran out. Unknown map keys are skipped (a newer peer
 * may add some). The results own their arrays and strings (new): clear them with the
 * matching _clear, also after an error; clearing a zeroed struct does nothing. */

#define NR_WIRE_MAX_AXES 32
#define NR_WIRE_MAX_ITEMS (1u << 20) /* shapes, blobs, forget ids, aliases per message */

typedef struct nr_wire_shape {
  int kind, idx;                  /* NR_SLOT_*, index within that kind (>= -1) */
  int nd;
  int64_t dims[NR_WIRE_MAX_AXES]; /* each >= 0 */
} nr_wire_shape;

/* A worker -> core message (op NR_REP_*). */
typedef struct nr_wire_reply {
  /* NR_REP_OK: the blobs the Python side reshaped. */
  nr_wire_shape *shapes;
  uint32_t nshapes;
  /* NR_REP_ERROR (and a failed NR_REP_HELLO): NUL-terminated, NULL when absent. */
  char *type, *msg, *tb;
  /* NR_REP_GROW / NR_REP_ADD_PARAM: the blob and the shape wanted (idx -1 for ADD_PARAM). */
  nr_wire_shape nested;
} nr_wire_reply;

/* One blob descriptor of a request: where the worker finds the blob's memory. */
typedef struct nr_wire_blob {
  nr_wire_shape shape;
  uint32_t seg;     /* segment id, 0 = no memory (capacity 0) */
  int64_t cap;      /* bytes, >= 0 */
  bool shaped;
} nr_wire_blob;

/* A core -> worker message (op NR_OP_*). */
typedef struct nr_wire_request {
  /* NR_OP_CALL */
  uint32_t *forget;             /* segment ids the worker may unmap */
  uint32_t nforget;
  bool create;                  /* the creation arguments below are present */
  const char *name, *module, *layer, *param_str, *source_dir; /* never NULL when create */
  int phase, nbottom, ntop;
  int *aliases;                 /* ntop entries: bottom index a top shares, or -1 */
  /* "winfo", sent with create for a prefetched data layer (ipc/pool_prefetch.c): what
   * caffe.get_worker_info() answers in it. nreplicas 0 = absent (None). */
  int replica, nreplicas;
  int64_t first_batch;
  nr_wire_blob *blobs;
  uint32_t nblobs;
  /* NR_OP_NESTED_OK: the blob's segment and capacity; NR_OP_NESTED_ERR: exc and msg. */
  uint32_t seg;
  int64_t cap;
  int exc;
  const char *err_msg;
} nr_wire_request;

/* The request's strings (const: an encoder's caller points them at its own text) belong to
 * the struct when a decoder filled it; nr_wire_request_clear frees them. */

/* Decodes the payload of a worker message with opcode op. An empty payload is valid for
 * NR_REP_HELLO and NR_REP_OK. Returns 0, EPROTO or ENOMEM. */
int nr_wire_decode_reply(uint32_t op, const char *buf, size_t len, nr_wire_reply *out,
                         const char **why);
void nr_wire_reply_clear(nr_wire_reply *r);

/* Decodes the payload of a core message with opcode op (an empty NR_OP_CALL payload is
 * the hot path: nothing changed). Returns 0, EPROTO or ENOMEM. */
int nr_wire_decode_request(uint32_t op, const char *buf, size_t len, nr_wire_request *out,
                           const char **why);
void nr_wire_request_clear(nr_wire_request *q);

/* Decodes the message waiting in control block c (opcode op): the length is read once and
 * checked against the block, and the payload is copied out of the block before the decoder
 * reads it (the other process shares the block and could change it meanwhile). Then as
 * nr_wire_decode_reply / nr_wire_decode_request (EPROTO also for a length past the end of
 * the block; ENOMEM when the copy cannot be made). out is always safe to clear. */
int nr_wire_read_reply(const nr_ctl *c, uint32_t op, nr_wire_reply *out, const char **why);
int nr_wire_read_request(const nr_ctl *c, uint32_t op, nr_wire_request *out,
                         const char **why);

/* ---- Encoding payloads ----
 *
 * The inverse of the decoders: each writes the payload of a message with opcode op into
 * buf[0..cap) (the control block's buf) and sets *len, so that the matching decoder
 * gives back the same struct. Only the fields of that opcode are read (borrowed):
 *   core -> worker (nr_wire_encode_request)
 *     NR_OP_CALL        a map with the keys whose fields are set: "forget" (nforget > 0),
 *                       "create" (create; NULL strings are sent empty), "winfo"
 *                       (nreplicas > 0), "blobs" (nblobs > 0); none: no payload (len 0,
 *                       the hot path)
 *     NR_OP_NESTED_OK   [seg, cap]
 *     NR_OP_NESTED_ERR  [exc, err_msg]
 *   worker -> core (nr_wire_encode_reply)
 *     NR_REP_OK         {shapes} when nshapes > 0, else no payload
 *     NR_REP_ERROR      {type, msg, tb}, made to fit: type and msg are cut to cap / 4 bytes
 *                       each and the traceback from its start, by halves, until the message
 *                       fits (its last frames are the useful ones); NULL strings empty
 *     NR_REP_GROW, NR_REP_ADD_PARAM   nested: [kind, idx, [dims]]
 *     NR_REP_HELLO      no payload
 * Returns 0, ENOSPC when the payload does not fit in cap bytes (buf then holds nothing
 * usable), or EINVAL for an opcode that has no payload in that direction. */
int nr_wire_encode_request(uint32_t op, const nr_wire_request *q, char *buf, size_t cap,
                           size_t *len);
int nr_wire_encode_reply(uint32_t op, const nr_wire_reply *r, char *buf, size_t cap,
                         size_t *len);

#endif
