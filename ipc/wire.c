/* wire.c: everything of the core <-> worker protocol that is not the pool's or the
 * worker's own logic: the spin-then-sleep wait, descriptor passing, and the msgpack format
 * of every payload, each encoder beside its validating decoder (see wire.h). */
#define _GNU_SOURCE
#include "wire.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

int64_t nr_wire_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Why raw futex words and not process-shared semaphores: glibc's sem_wait aborts the process
 * ("The futex facility returned an unexpected error code") when the semaphore's words hold
 * garbage, and the worker can write anything into the block they live in. A futex word is
 * just a number: the core compares it and sleeps on it, and nothing it reads there can do
 * more than end a sleep early or make one last until the slice ends.
 * The sleeping flags save the waker a syscall when nobody sleeps: the waiter sets its flag
 * and then rechecks the word, the waker publishes the word and then reads the flag
 * (sequentially consistent both), so one of them always sees the other.
 * Adaptation: the budget follows the observed answer time (see wire.h); a peer busy for
 * long stretches (slow Python, C layers between Python layers) costs little CPU. */
#define NR_WIRE_SLICE_NS 50000000 /* 50 ms: the longest sleep between checks */

static long futex(const _Atomic uint32_t *w, int op, uint32_t val, const struct timespec *t) {
  return syscall(SYS_futex, (uint32_t *)w, op, val, t, NULL, 0);
}

void nr_wire_wake(_Atomic uint32_t *seq, uint32_t value, const _Atomic uint32_t *sleeping) {
  atomic_store(seq, value);
  if (atomic_load(sleeping)) futex(seq, FUTEX_WAKE, 1, NULL);
}

void nr_wire_wake_all(_Atomic uint32_t *seq) { futex(seq, FUTEX_WAKE, 0x7fffffff, NULL); }

/* 0: *seq is want; EPROTO: strict and *seq is neither want nor want - 1; else EAGAIN. */
static int check(const _Atomic uint32_t *seq, uint32_t want, bool strict, uint32_t *seen) {
  uint32_t v = atomic_load(seq);
  *seen = v;
  if (v == want) return 0;
  return strict && v != want - 1 ? EPROTO : EAGAIN;
}

int nr_wire_wait(const _Atomic uint32_t *seq, uint32_t want, bool strict,
                 _Atomic uint32_t *sleeping, const _Atomic int *abort_flag, int64_t *spin_ns,
                 int64_t max_spin_ns, int64_t deadline_ns, _Atomic int *my_cpu,
                 const _Atomic int *peer_cpu) {
  uint32_t seen;
  int r = check(seq, want, strict, &seen);
  if (r != EAGAIN) goto done;
  int64_t budget = *spin_ns;
  int64_t start = nr_wire_now_ns();
  if (budget > 0) {
    for (unsigned i = 1;; i++) {
      cpu_relax();
      if ((r = check(seq, want, strict, &seen)) != EAGAIN) goto done;
      if ((i & 15) == 0) {
        if (nr_wire_now_ns() - start > budget) break;
        /* The peer last ran on this very CPU (a loaded machine, wake-affine scheduling):
         * spinning would only keep it off the CPU. Let it run. */
        if (peer_cpu && atomic_load_explicit(peer_cpu, memory_order_relaxed) == sched_getcpu())
          sched_yield();
      }
    }
  }
  for (;;) {
    if (abort_flag && atomic_load(abort_flag)) {
      r = ECANCELED;
      break;
    }
    int64_t now = nr_wire_now_ns(), slice = NR_WIRE_SLICE_NS;
    if (deadline_ns) {
      if (now >= deadline_ns) {
        r = ETIMEDOUT;
        break;
      }
      if (deadline_ns - now < slice) slice = deadline_ns - now;
    }
    atomic_store(sleeping, 1);
    if ((r = check(seq, want, strict, &seen)) != EAGAIN) {
      atomic_store(sleeping, 0);
      break;
    }
    struct timespec ts = {(time_t)(slice / 1000000000), (long)(slice % 1000000000)};
    futex(seq, FUTEX_WAIT, seen, &ts); /* any outcome: recheck below */
    atomic_store(sleeping, 0);
    if ((r = check(seq, want, strict, &seen)) != EAGAIN) break;
  }
  {
    int64_t waited = nr_wire_now_ns() - start;
    int64_t nb = r == 0 && waited < max_spin_ns ? 2 * waited : budget / 2;
    if (nb > max_spin_ns) nb = max_spin_ns;
    *spin_ns = nb < 1000 ? 1000 : nb;
  }
done:
  if (r == 0 && my_cpu) atomic_store_explicit(my_cpu, sched_getcpu(), memory_order_relaxed);
  return r;
}

int nr_wire_send_fds(int sock, const int *fds, const uint32_t *ids, int n) {
  while (n > 0) {
    int k = n > 200 ? 200 : n;
    union {
      struct cmsghdr h;
      char space[CMSG_SPACE(sizeof(int) * 200)];
    } cbuf;
    memset(&cbuf, 0, sizeof cbuf);
    struct iovec iov = {(void *)ids, sizeof(uint32_t) * (size_t)k};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.space;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)k);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)k);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)k);
    ssize_t r;
    do r = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0) return errno;
    /* SOCK_SEQPACKET: one message per sendmsg, never split. */
    fds += k;
    ids += k;
    n -= k;
  }
  return 0;
}

int nr_wire_recv_fds(int sock, int *fds, uint32_t *ids, int n) {
  int got = 0, rc = 0;
  while (got < n && !rc) {
    union {
      struct cmsghdr h;
      char space[CMSG_SPACE(sizeof(int) * 200)];
    } cbuf;
    int want = n - got < 200 ? n - got : 200; /* never more ids than the caller has room for */
    struct iovec iov = {ids + got, sizeof(uint32_t) * (size_t)want};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.space;
    msg.msg_controllen = sizeof cbuf.space;
    ssize_t r;
    do r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
      rc = r < 0 ? errno : EPIPE;
      break;
    }
    int k = (int)((size_t)r / sizeof(uint32_t));
    int nfd = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      int cnt = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      for (int i = 0; i < cnt; i++) { /* keep what has an id, close the rest: no leak */
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (nfd < k) fds[got + nfd++] = fd;
        else close(fd);
      }
    }
    if (nfd != k || (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))) rc = EPROTO;
    got += nfd;
  }
  if (rc)
    for (int i = 0; i < got; i++) close(fds[i]);
  return rc;
}

int nr_wbuf_write(void *data, const char *buf, size_t len) {
  nr_wbuf *w = data;
  if (w->overflow || len > w->cap - w->len) {
    w->overflow = true;
    return -1;
  }
  memcpy(w->p + w->len, buf, len);
  w->len += len;
  return 0;
}

/* ---- decoding ---- */

#include <msgpack.h>
#include <msgpack/unpack_define.h> /* MSGPACK_EMBED_STACK_SIZE */
#include <stdlib.h>

#define BAD(text)   \
  do {              \
    *why = (text);  \
    return EPROTO;  \
  } while (0)

/* Is buf[0..len) exactly one well-formed msgpack object whose declared sizes fit in len?
 * msgpack-c allocates an array's or map's element table from the count in its header
 * before it reads the elements, so a 6-byte "array of 2^32-1" would make it ask for
 * ~100 GiB. Here every declared element must have at least one byte left to come from,
 * which bounds what the unpacker allocates by a small multiple of len. And msgpack-c
 * starts a container only while fewer than MSGPACK_EMBED_STACK_SIZE non-empty ones are
 * open, and says "out of memory" for a deeper one: that is refused here as malformed. */
static bool well_formed(const uint8_t *b, size_t len) {
  uint64_t left[MSGPACK_EMBED_STACK_SIZE + 1] = {1}; /* elements still to read per level */
  int depth = 0;        /* open non-empty containers */
  uint64_t pending = 1; /* objects still to read, all levels */
  size_t off = 0;
  while (pending > 0) {
    while (left[depth] == 0) depth--;
    if (off >= len || pending > len - off) return false;
    pending--;
    left[depth]--;
    uint8_t t = b[off];
    uint64_t head = 1, body = 0, items = 0;
    size_t lenbytes = 0;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
    } else if (t >= 0x80 && t <= 0x8f) {
      items = 2u * (t & 0x0f);
    } else if (t >= 0x90 && t <= 0x9f) {
      items = t & 0x0f;
    } else if (t >= 0xa0 && t <= 0xbf) {
      body = t & 0x1f;
    } else {
      switch (t) {
        case 0xc4: case 0xd9: lenbytes = 1; break;             /* bin8, str8 */
        case 0xc5: case 0xda: lenbytes = 2; break;             /* bin16, str16 */
        case 0xc6: case 0xdb: lenbytes = 4; break;             /* bin32, str32 */
        case 0xc7: lenbytes = 1; head = 2; break;              /* ext8 (+ type) */
        case 0xc8: lenbytes = 2; head = 2; break;
        case 0xc9: lenbytes = 4; head = 2; break;
        case 0xca: case 0xce: case 0xd2: head = 5; break;      /* 32-bit numbers */
        case 0xcb: case 0xcf: case 0xd3: head = 9; break;      /* 64-bit numbers */
        case 0xcc: case 0xd0: head = 2; break;
        case 0xcd: case 0xd1: head = 3; break;
        case 0xd4: head = 3; break;                            /* fixext 1..16 */
        case 0xd5: head = 4; break;
        case 0xd6: head = 6; break;
        case 0xd7: head = 10; break;
        case 0xd8: head = 18; break;
        case 0xdc: case 0xde: lenbytes = 2; break;             /* array16, map16 */
        case 0xdd: case 0xdf: lenbytes = 4; break;             /* array32, map32 */
        default: return false;                                 /* 0xc1: never used */
      }
    }
    if (lenbytes) {
      if (len - off < 1 + lenbytes) return false;
      uint64_t n = 0;
      for (size_t i = 0; i < lenbytes; i++) n = n << 8 | b[off + 1 + i];
      head = 1 + lenbytes + (head == 2); /* ext: the type byte follows the length */
      if (t == 0xdc || t == 0xdd) items = n;
      else if (t == 0xde || t == 0xdf) items = 2 * n;
      else body = n;
    }
    bool container = (t >= 0x80 && t <= 0x9f) || (t >= 0xdc && t <= 0xdf);
    if (container && depth == MSGPACK_EMBED_STACK_SIZE) return false;
    if (head + body > len - off) return false;
    off += head + body;
    pending += items;
    if (items) left[++depth] = items;
  }
  return off == len;
}

/* Unpacks exactly one object filling buf[0..len). */
static int unpack_one(msgpack_unpacked *u, const char *buf, size_t len, const char **why) {
  if (!well_formed((const uint8_t *)buf, len)) {
    *why = "not one well-formed msgpack object";
    return EPROTO;
  }
  size_t off = 0;
  msgpack_unpack_return r = msgpack_unpack_next(u, buf, len, &off);
  if (r == MSGPACK_UNPACK_NOMEM_ERROR) {
    *why = "out of memory";
    return ENOMEM;
  }
  if (r != MSGPACK_UNPACK_SUCCESS) {
    *why = "not a msgpack object";
    return EPROTO;
  }
  if (off != len) {
    *why = "bytes after the message";
    return EPROTO;
  }
  return 0;
}

static bool get_int(const msgpack_object *o, int64_t lo, int64_t hi, int64_t *v) {
  if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
    if (o->via.u64 > (uint64_t)INT64_MAX) return false;
    *v = (int64_t)o->via.u64;
  } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
    *v = o->via.i64;
  } else {
    return false;
  }
  return *v >= lo && *v <= hi;
}

static bool get_int32(const msgpack_object *o, int lo, int hi, int *v) {
  int64_t x;
  if (!get_int(o, lo, hi, &x)) return false;
  *v = (int)x;
  return true;
}

/* A new NUL-terminated copy of a str object; *s stays NULL and false is returned for a
 * non-string (*nomem tells the two failures apart). */
static bool get_str(const msgpack_object *o, char **s, bool *nomem) {
  if (o->type != MSGPACK_OBJECT_STR) return false;
  char *c = malloc((size_t)o->via.str.size + 1);
  if (!c) {
    *nomem = true;
    return false;
  }
  /* msgpack-c gives an empty string a NULL ptr: memcpy(c, NULL, 0) is undefined */
  if (o->via.str.size) memcpy(c, o->via.str.ptr, o->via.str.size);
  c[o->via.str.size] = '\0';
  free(*s);
  *s = c;
  return true;
}

static bool key_is(const msgpack_object *k, const char *key) {
  size_t kl = strlen(key);
  return k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
         memcmp(k->via.str.ptr, key, kl) == 0;
}

static bool get_dims(const msgpack_object *o, nr_wire_shape *s) {
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > NR_WIRE_MAX_AXES) return false;
  s->nd = (int)o->via.array.size;
  for (int i = 0; i < s->nd; i++)
    if (!get_int(&o->via.array.ptr[i], 0, INT64_MAX, &s->dims[i])) return false;
  return true;
}

/* [kind, idx, [dims...]] (a shape of a REP_OK or a nested request). */
static bool get_shape(const msgpack_object *o, nr_wire_shape *s) {
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 3) return false;
  const msgpack_object *a = o->via.array.ptr;
  return get_int32(&a[0], NR_SLOT_BOTTOM, NR_SLOT_PARAM, &s->kind) &&
         get_int32(&a[1], -1, INT32_MAX, &s->idx) && get_dims(&a[2], s);
}

static bool is_array(const msgpack_object *o, uint32_t max) {
  return o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size <= max;
}

void nr_wire_reply_clear(nr_wire_reply *r) {
  free(r->shapes);
  free(r->type);
  free(r->msg);
  free(r->tb);
  memset(r, 0, sizeof *r);
}

static int decode_reply(uint32_t op, const msgpack_object *o, nr_wire_reply *r,
                        const char **why) {
  bool nomem = false;
  switch (op) {
    case NR_REP_HELLO:
    case NR_REP_ERROR:
      if (o->type != MSGPACK_OBJECT_MAP) BAD("error reply: not a map");
      for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        char **dst = key_is(k, "type") ? &r->type
                     : key_is(k, "msg") ? &r->msg
                     : key_is(k, "tb")  ? &r->tb
                                        : NULL;
        if (dst && !get_str(v, dst, &nomem)) {
          if (nomem) goto nomem;
          BAD("error reply: type, msg and tb must be strings");
        }
      }
      return 0;
    case NR_REP_OK:
      if (o->type != MSGPACK_OBJECT_MAP) BAD("reply: not a map");
      for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        if (!key_is(&o->via.map.ptr[i].key, "shapes")) continue;
        if (r->shapes) BAD("reply: shapes given twice");
        if (!is_array(v, NR_WIRE_MAX_ITEMS)) BAD("reply: shapes is not an array");
        r->shapes = calloc((size_t)v->via.array.size + 1, sizeof *r->shapes);
        if (!r->shapes) goto nomem;
        for (uint32_t j = 0; j < v->via.array.size; j++) {
          if (!get_shape(&v->via.array.ptr[j], &r->shapes[j]))
            BAD("reply: a shape is not [kind, index, [dims]] with valid numbers");
          r->nshapes++;
        }
      }
      return 0;
    case NR_REP_GROW:
    case NR_REP_ADD_PARAM:
      if (!get_shape(o, &r->nested))
        BAD("nested request: not [kind, index, [dims]] with valid numbers");
      if (op == NR_REP_ADD_PARAM && r->nested.kind != NR_SLOT_PARAM)
        BAD("add_param request for a blob that is not a parameter");
      if (op == NR_REP_GROW && r->nested.idx < 0) BAD("grow request: negative index");
      return 0;
    default:
      BAD("unknown reply opcode");
  }
nomem:
  *why = "out of memory";
  return ENOMEM;
}

int nr_wire_decode_reply(uint32_t op, const char *buf, size_t len, nr_wire_reply *out,
                         const char **why) {
  memset(out, 0, sizeof *out);
  if (len == 0) {
    if (op == NR_REP_HELLO || op == NR_REP_OK) return 0;
    BAD("empty payload");
  }
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  int rc = unpack_one(&u, buf, len, why);
  if (rc == 0) rc = decode_reply(op, &u.data, out, why);
  msgpack_unpacked_destroy(&u);
  return rc;
}

void nr_wire_request_clear(nr_wire_request *q) {
  free(q->forget);
  free((void *)q->name); /* the decoder's own copies (see wire.h) */
  free((void *)q->module);
  free((void *)q->layer);
  free((void *)q->param_str);
  free((void *)q->source_dir);
  free(q->aliases);
  free(q->blobs);
  free((void *)q->err_msg);
  memset(q, 0, sizeof *q);
}

/* [name, module, layer, param_str, source_dir, phase, nbottom, ntop, [aliases]] */
static int decode_create(const msgpack_object *o, nr_wire_request *q, const char **why) {
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 9)
    BAD("create: not an array of 9");
  const msgpack_object *a = o->via.array.ptr;
  const char **s[5] = {&q->name, &q->module, &q->layer, &q->param_str, &q->source_dir};
  bool nomem = false;
  for (int i = 0; i < 5; i++) {
    char *v = NULL;
    if (!get_str(&a[i], &v, &nomem)) {
      if (nomem) goto nomem;
      BAD("create: name, module, layer, param_str and source_dir must be strings");
    }
    *s[i] = v;
  }
  if (!get_int32(&a[5], 0, 1, &q->phase)) BAD("create: phase is not 0 or 1");
  if (!get_int32(&a[6], 0, (int)NR_WIRE_MAX_ITEMS, &q->nbottom) ||
      !get_int32(&a[7], 0, (int)NR_WIRE_MAX_ITEMS, &q->ntop))
    BAD("create: bad bottom or top count");
  if (!is_array(&a[8], NR_WIRE_MAX_ITEMS) || a[8].via.array.size != (uint32_t)q->ntop)
    BAD("create: aliases do not match the top count");
  q->aliases = calloc((size_t)q->ntop + 1, sizeof *q->aliases);
  if (!q->aliases) goto nomem;
  for (int i = 0; i < q->ntop; i++)
    if (!get_int32(&a[8].via.array.ptr[i], -1, q->nbottom - 1, &q->aliases[i]))
      BAD("create: an alias is not -1 or a bottom index");
  q->create = true;
  return 0;
nomem:
  *why = "out of memory";
  return ENOMEM;
}

/* [kind, idx, seg, cap, shaped, [dims]] */
static bool get_blob(const msgpack_object *o, nr_wire_blob *b) {
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 6) return false;
  const msgpack_object *a = o->via.array.ptr;
  int64_t seg;
  if (!get_int32(&a[0], NR_SLOT_BOTTOM, NR_SLOT_PARAM, &b->shape.kind) ||
      !get_int32(&a[1], 0, INT32_MAX, &b->shape.idx) || !get_int(&a[2], 0, UINT32_MAX, &seg) ||
      !get_int(&a[3], 0, INT64_MAX, &b->cap) || a[4].type != MSGPACK_OBJECT_BOOLEAN ||
      !get_dims(&a[5], &b->shape))
    return false;
  b->seg = (uint32_t)seg;
  b->shaped = a[4].via.boolean;
  return true;
}

static int decode_request(uint32_t op, const msgpack_object *o, nr_wire_request *q,
                          const char **why) {
  bool nomem = false;
  int rc;
  switch (op) {
    case NR_OP_CALL:
      if (o->type != MSGPACK_OBJECT_MAP) BAD("request: not a map");
      for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (key_is(k, "forget")) {
          if (q->forget) BAD("request: forget given twice");
          if (!is_array(v, NR_WIRE_MAX_ITEMS)) BAD("request: forget is not an array");
          q->forget = calloc((size_t)v->via.array.size + 1, sizeof *q->forget);
          if (!q->forget) goto nomem;
          for (uint32_t j = 0; j < v->via.array.size; j++) {
            int64_t id;
            if (!get_int(&v->via.array.ptr[j], 0, UINT32_MAX, &id))
              BAD("request: a forget id is not a segment id");
            q->forget[q->nforget++] = (uint32_t)id;
          }
        } else if (key_is(k, "create")) {
          if (q->create) BAD("request: create given twice");
          if ((rc = decode_create(v, q, why)) != 0) return rc;
        } else if (key_is(k, "winfo")) { /* [replica, replicas, first batch] */
          int64_t first;
          if (q->nreplicas) BAD("request: winfo given twice");
          if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != 3 ||
              !get_int32(&v->via.array.ptr[1], 1, 4096, &q->nreplicas) ||
              !get_int32(&v->via.array.ptr[0], 0, q->nreplicas - 1, &q->replica) ||
              !get_int(&v->via.array.ptr[2], 0, INT64_MAX, &first))
            BAD("request: winfo is not [replica, replicas, first batch]");
          q->first_batch = first;
        } else if (key_is(k, "blobs")) {
          if (q->blobs) BAD("request: blobs given twice");
          if (!is_array(v, NR_WIRE_MAX_ITEMS)) BAD("request: blobs is not an array");
          q->blobs = calloc((size_t)v->via.array.size + 1, sizeof *q->blobs);
          if (!q->blobs) goto nomem;
          for (uint32_t j = 0; j < v->via.array.size; j++) {
            if (!get_blob(&v->via.array.ptr[j], &q->blobs[j]))
              BAD("request: a blob is not [kind, index, segment, capacity, shaped, [dims]]");
            q->nblobs++;
          }
        }
      }
      return 0;
    case NR_OP_NESTED_OK: {
      int64_t seg;
      if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 2 ||
          !get_int(&o->via.array.ptr[0], 0, UINT32_MAX, &seg) ||
          !get_int(&o->via.array.ptr[1], 0, INT64_MAX, &q->cap))
        BAD("nested answer: not [segment, capacity]");
      q->seg = (uint32_t)seg;
      if ((q->seg == 0) != (q->cap == 0)) BAD("nested answer: segment 0 needs capacity 0");
      return 0;
    }
    case NR_OP_NESTED_ERR:
      if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 2 ||
          !get_int32(&o->via.array.ptr[0], 0, 2, &q->exc))
        BAD("nested error: not [kind 0..2, message]");
      char *m = NULL;
      if (!get_str(&o->via.array.ptr[1], &m, &nomem)) {
        if (nomem) goto nomem;
        BAD("nested error: the message is not a string");
      }
      q->err_msg = m;
      return 0;
    default:
      BAD("unknown request opcode");
  }
nomem:
  *why = "out of memory";
  return ENOMEM;
}

int nr_wire_decode_request(uint32_t op, const char *buf, size_t len, nr_wire_request *out,
                           const char **why) {
  memset(out, 0, sizeof *out);
  if (len == 0) {
    if (op == NR_OP_CALL) return 0;
    BAD("empty payload");
  }
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  int rc = unpack_one(&u, buf, len, why);
  if (rc == 0) rc = decode_request(op, &u.data, out, why);
  msgpack_unpacked_destroy(&u);
  return rc;
}

/* Copies the payload of the message in c out of the block into *copy (new; NULL for an
 * empty payload), its length read once and checked. 0, EPROTO or ENOMEM. */
static int ctl_payload(const nr_ctl *c, char **copy, uint32_t *len, const char **why) {
  *copy = NULL;
  *len = *(const volatile uint32_t *)&c->len;
  if (*len > NR_CTL_BUF_MAX) BAD("payload length past the end of the control block");
  if (!*len) return 0;
  if (!(*copy = malloc(*len))) {
    *why = "out of memory";
    return ENOMEM;
  }
  memcpy(*copy, c->buf, *len);
  return 0;
}

/* nr_wire_read_reply (r) or nr_wire_read_request (q). */
static int read_ctl(const nr_ctl *c, uint32_t op, nr_wire_reply *r, nr_wire_request *q,
                    const char **why) {
  if (r) memset(r, 0, sizeof *r);
  if (q) memset(q, 0, sizeof *q);
  char *copy;
  uint32_t len;
  int rc = ctl_payload(c, &copy, &len, why);
  if (rc == 0)
    rc = r ? nr_wire_decode_reply(op, copy, len, r, why)
           : nr_wire_decode_request(op, copy, len, q, why);
  free(copy);
  return rc;
}

int nr_wire_read_reply(const nr_ctl *c, uint32_t op, nr_wire_reply *out, const char **why) {
  return read_ctl(c, op, out, NULL, why);
}

int nr_wire_read_request(const nr_ctl *c, uint32_t op, nr_wire_request *out,
                         const char **why) {
  return read_ctl(c, op, NULL, out, why);
}

/* ---- encoding ---- */

/* Packs at most max bytes of s (NULL = ""). */
static void pack_str(msgpack_packer *pk, const char *s, size_t max) {
  size_t n = s ? strlen(s) : 0;
  if (n > max) n = max;
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s ? s : "", n);
}

static void pack_key(msgpack_packer *pk, const char *key) { pack_str(pk, key, SIZE_MAX); }

static void pack_dims(msgpack_packer *pk, int nd, const int64_t *dims) {
  msgpack_pack_array(pk, (size_t)nd);
  for (int i = 0; i < nd; i++) msgpack_pack_int64(pk, dims[i]);
}

/* [kind, idx, [dims...]] (get_shape) */
static void pack_shape(msgpack_packer *pk, const nr_wire_shape *s) {
  msgpack_pack_array(pk, 3);
  msgpack_pack_int(pk, s->kind);
  msgpack_pack_int(pk, s->idx);
  pack_dims(pk, s->nd, s->dims);
}

/* [kind, idx, seg, cap, shaped, [dims]] (get_blob) */
static void pack_blob(msgpack_packer *pk, const nr_wire_blob *b) {
  msgpack_pack_array(pk, 6);
  msgpack_pack_int(pk, b->shape.kind);
  msgpack_pack_int(pk, b->shape.idx);
  msgpack_pack_uint32(pk, b->seg);
  msgpack_pack_int64(pk, b->cap);
  if (b->shaped) msgpack_pack_true(pk);
  else msgpack_pack_false(pk);
  pack_dims(pk, b->shape.nd, b->shape.dims);
}

/* [name, module, layer, param_str, source_dir, phase, nbottom, ntop, [aliases]]
 * (decode_create) */
static void pack_create(msgpack_packer *pk, const nr_wire_request *q) {
  msgpack_pack_array(pk, 9);
  pack_str(pk, q->name, SIZE_MAX);
  pack_str(pk, q->module, SIZE_MAX);
  pack_str(pk, q->layer, SIZE_MAX);
  pack_str(pk, q->param_str, SIZE_MAX);
  pack_str(pk, q->source_dir, SIZE_MAX);
  msgpack_pack_int(pk, q->phase);
  msgpack_pack_int(pk, q->nbottom);
  msgpack_pack_int(pk, q->ntop);
  msgpack_pack_array(pk, (size_t)q->ntop);
  for (int i = 0; i < q->ntop; i++) msgpack_pack_int(pk, q->aliases[i]);
}

static int encoded(const nr_wbuf *wb, size_t *len) {
  if (wb->overflow) return ENOSPC;
  *len = wb->len;
  return 0;
}

int nr_wire_encode_request(uint32_t op, const nr_wire_request *q, char *buf, size_t cap,
                           size_t *len) {
  nr_wbuf wb = {buf, 0, cap, false};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &wb, nr_wbuf_write);
  *len = 0;
  switch (op) {
    case NR_OP_CALL: {
      size_t keys = (q->nforget > 0) + q->create + (q->nreplicas > 0) + (q->nblobs > 0);
      if (!keys) return 0; /* the hot path: nothing changed */
      msgpack_pack_map(&pk, keys);
      if (q->nforget) {
        pack_key(&pk, "forget");
        msgpack_pack_array(&pk, q->nforget);
        for (uint32_t i = 0; i < q->nforget; i++) msgpack_pack_uint32(&pk, q->forget[i]);
      }
      if (q->create) {
        pack_key(&pk, "create");
        pack_create(&pk, q);
      }
      if (q->nreplicas) {
        /* "winfo": [replica, replicas, first batch] of a prefetched data layer, what
         * caffe.get_worker_info() returns in it (a key of its own: a worker that does not
         * know it skips it, and the replication tests fail loudly) */
        pack_key(&pk, "winfo");
        msgpack_pack_array(&pk, 3);
        msgpack_pack_int(&pk, q->replica);
        msgpack_pack_int(&pk, q->nreplicas);
        msgpack_pack_int64(&pk, q->first_batch);
      }
      if (q->nblobs) {
        pack_key(&pk, "blobs");
        msgpack_pack_array(&pk, q->nblobs);
        for (uint32_t i = 0; i < q->nblobs; i++) pack_blob(&pk, &q->blobs[i]);
      }
      return encoded(&wb, len);
    }
    case NR_OP_NESTED_OK:
      msgpack_pack_array(&pk, 2);
      msgpack_pack_uint32(&pk, q->seg);
      msgpack_pack_int64(&pk, q->cap);
      return encoded(&wb, len);
    case NR_OP_NESTED_ERR:
      msgpack_pack_array(&pk, 2);
      msgpack_pack_int(&pk, q->exc);
      pack_str(&pk, q->err_msg, SIZE_MAX);
      return encoded(&wb, len);
    default:
      return EINVAL;
  }
}

int nr_wire_encode_reply(uint32_t op, const nr_wire_reply *r, char *buf, size_t cap,
                         size_t *len) {
  nr_wbuf wb = {buf, 0, cap, false};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &wb, nr_wbuf_write);
  *len = 0;
  switch (op) {
    case NR_REP_HELLO:
      return 0;
    case NR_REP_OK:
      if (!r->nshapes) return 0; /* the hot path: no blob reshaped */
      msgpack_pack_map(&pk, 1);
      pack_key(&pk, "shapes");
      msgpack_pack_array(&pk, r->nshapes);
      for (uint32_t i = 0; i < r->nshapes; i++) pack_shape(&pk, &r->shapes[i]);
      return encoded(&wb, len);
    case NR_REP_ERROR: {
      const char *tb = r->tb ? r->tb : "";
      size_t tbl = strlen(tb);
      for (;;) {
        wb = (nr_wbuf){buf, 0, cap, false};
        msgpack_pack_map(&pk, 3);
        pack_key(&pk, "type");
        pack_str(&pk, r->type, cap / 4);
        pack_key(&pk, "msg");
        pack_str(&pk, r->msg, cap / 4);
        pack_key(&pk, "tb");
        pack_str(&pk, tb + strlen(tb) - tbl, tbl);
        if (!wb.overflow || !tbl) return encoded(&wb, len);
        tbl /= 2;
      }
    }
    case NR_REP_GROW:
    case NR_REP_ADD_PARAM:
      pack_shape(&pk, &r->nested);
      return encoded(&wb, len);
    default:
      return EINVAL;
  }
}
