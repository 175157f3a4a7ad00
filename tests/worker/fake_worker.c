/* fake_worker: a stand-in for netrun-worker that speaks the protocol (ipc/wire.h) just
 * enough to send the core malformed or hostile replies (tests/worker/test_worker_hostile.c
 * points nr_pool_opts.worker_path at it). No Python. The misbehaviour is chosen by the
 * environment variable NR_FAKE_MODE and happens at the first forward (or at hello for
 * "hello-*" modes); every other call is answered with an empty NR_REP_OK.
 *
 * Modes: ok, hello-badop, hello-garbage, bigshape, negdim, manyaxes, badindex, badkind,
 * garbage, hugearray, hugemap, badlen, trailing, emptystr, longtype, badop, grow-badindex,
 * grow-huge, grow-garbage, die. */
#define _GNU_SOURCE
#include <errno.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "wire.h"

static nr_ctl *ctl;
static int64_t spin = 1000;
static uint32_t seq; /* the last request taken */

static void reply(uint32_t op, const void *buf, uint32_t len) {
  if (len && buf) memcpy(ctl->buf, buf, len);
  ctl->op = op;
  ctl->len = len;
  nr_wire_wake(&ctl->rep_seq, seq, &ctl->rep_sleep);
}

/* Waits for the core's next request (exits when the core is gone) and takes the
 * descriptors announced with it. */
static void next_request(pid_t parent) {
  for (;;) {
    int r = nr_wire_wait(&ctl->req_seq, seq + 1, false, &ctl->req_sleep, NULL, &spin, 0,
                         nr_wire_now_ns() + 1000000000, NULL, NULL);
    if (r == 0) {
      seq++;
      break;
    }
    if (getppid() != parent) _exit(0);
  }
  uint32_t n = ctl->nsegs;
  if (n) {
    int *fds = calloc(n, sizeof *fds);
    uint32_t *ids = calloc(n, sizeof *ids);
    if (!fds || !ids || nr_wire_recv_fds(NR_FD_SOCK, fds, ids, (int)n)) _exit(4);
    for (uint32_t i = 0; i < n; i++) close(fds[i]);
    free(fds);
    free(ids);
  }
}

typedef struct {
  nr_wbuf wb;
  msgpack_packer pk;
  char mem[1 << 16];
} packer;

static msgpack_packer *pk_init(packer *p) {
  p->wb = (nr_wbuf){p->mem, 0, sizeof p->mem, false};
  msgpack_packer_init(&p->pk, &p->wb, nr_wbuf_write);
  return &p->pk;
}

static void pk_str(msgpack_packer *pk, const char *s) {
  msgpack_pack_str(pk, strlen(s));
  msgpack_pack_str_body(pk, s, strlen(s));
}

/* {shapes: [[kind, idx, dims]]} */
static void reply_shape(int kind, int idx, int nd, const int64_t *dims) {
  packer p;
  msgpack_packer *pk = pk_init(&p);
  msgpack_pack_map(pk, 1);
  pk_str(pk, "shapes");
  msgpack_pack_array(pk, 1);
  msgpack_pack_array(pk, 3);
  msgpack_pack_int(pk, kind);
  msgpack_pack_int(pk, idx);
  msgpack_pack_array(pk, (size_t)nd);
  for (int i = 0; i < nd; i++) msgpack_pack_int64(pk, dims[i]);
  reply(NR_REP_OK, p.mem, (uint32_t)p.wb.len);
}

/* A nested grow request [kind, idx, dims]; returns what the core answered. */
static void grow(pid_t parent, int kind, int idx, int nd, const int64_t *dims) {
  packer p;
  msgpack_packer *pk = pk_init(&p);
  msgpack_pack_array(pk, 3);
  msgpack_pack_int(pk, kind);
  msgpack_pack_int(pk, idx);
  msgpack_pack_array(pk, (size_t)nd);
  for (int i = 0; i < nd; i++) msgpack_pack_int64(pk, dims[i]);
  reply(NR_REP_GROW, p.mem, (uint32_t)p.wb.len);
  next_request(parent);
  nr_wire_request q;
  const char *why = NULL;
  char msg[512];
  if (ctl->op == NR_OP_NESTED_ERR &&
      nr_wire_decode_request(ctl->op, ctl->buf, ctl->len, &q, &why) == 0)
    snprintf(msg, sizeof msg, "%s", q.err_msg);
  else
    snprintf(msg, sizeof msg, "fake worker: the core answered op %u", ctl->op);
  nr_wire_request_clear(&q);
  pk = pk_init(&p);
  msgpack_pack_map(pk, 3);
  pk_str(pk, "type");
  pk_str(pk, "ValueError");
  pk_str(pk, "msg");
  pk_str(pk, msg);
  pk_str(pk, "tb");
  pk_str(pk, "");
  reply(NR_REP_ERROR, p.mem, (uint32_t)p.wb.len);
}

static void misbehave(pid_t parent, const char *mode) {
  static const uint8_t garbage[] = {0xc1, 0xc1, 0xff, 0x00, 0x13};
  /* {"shapes": array32 of 2^32-1} in 12 bytes */
  static const uint8_t hugearray[] = {0x81, 0xa6, 's', 'h', 'a', 'p', 'e', 's',
                                      0xdd, 0xff, 0xff, 0xff, 0xff};
  static const uint8_t hugemap[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0};
  static const uint8_t trailing[] = {0x80, 0x80};
  if (!strcmp(mode, "bigshape")) {
    int64_t d[3] = {1 << 16, 1 << 16, 1 << 16};
    reply_shape(NR_SLOT_TOP, 0, 3, d);
  } else if (!strcmp(mode, "negdim")) {
    int64_t d[2] = {2, -3};
    reply_shape(NR_SLOT_TOP, 0, 2, d);
  } else if (!strcmp(mode, "manyaxes")) {
    int64_t d[40];
    for (int i = 0; i < 40; i++) d[i] = 1;
    reply_shape(NR_SLOT_TOP, 0, 40, d);
  } else if (!strcmp(mode, "badindex")) {
    int64_t d[1] = {2};
    reply_shape(NR_SLOT_TOP, 5, 1, d);
  } else if (!strcmp(mode, "badkind")) {
    int64_t d[1] = {2};
    reply_shape(7, 0, 1, d);
  } else if (!strcmp(mode, "garbage")) {
    reply(NR_REP_OK, garbage, sizeof garbage);
  } else if (!strcmp(mode, "hugearray")) {
    reply(NR_REP_OK, hugearray, sizeof hugearray);
  } else if (!strcmp(mode, "hugemap")) {
    reply(NR_REP_ERROR, hugemap, sizeof hugemap);
  } else if (!strcmp(mode, "badlen")) {
    reply(NR_REP_OK, NULL, 0xfffffff0u);
  } else if (!strcmp(mode, "trailing")) {
    reply(NR_REP_OK, trailing, sizeof trailing);
  } else if (!strcmp(mode, "emptystr")) { /* valid: an exception with empty texts */
    static const uint8_t e[] = {0x83, 0xa4, 't', 'y', 'p', 'e', 0xa0, 0xa3, 'm', 's', 'g',
                                0xa0, 0xa2, 't', 'b', 0xa0};
    reply(NR_REP_ERROR, e, sizeof e);
  } else if (!strcmp(mode, "longtype")) {
    packer p;
    msgpack_packer *pk = pk_init(&p);
    char t[4000];
    memset(t, 'X', sizeof t - 1);
    t[sizeof t - 1] = '\0';
    msgpack_pack_map(pk, 1);
    pk_str(pk, "type");
    pk_str(pk, t);
    reply(NR_REP_ERROR, p.mem, (uint32_t)p.wb.len);
  } else if (!strcmp(mode, "badop")) {
    reply(12345, NULL, 0);
  } else if (!strcmp(mode, "grow-badindex")) {
    int64_t d[1] = {4};
    grow(parent, NR_SLOT_TOP, 9, 1, d);
  } else if (!strcmp(mode, "grow-huge")) {
    int64_t d[2] = {1 << 20, 1 << 20}; /* 4 TiB */
    grow(parent, NR_SLOT_TOP, 0, 2, d);
  } else if (!strcmp(mode, "grow-garbage")) {
    reply(NR_REP_GROW, garbage, sizeof garbage);
  } else if (!strcmp(mode, "die")) {
    _exit(7);
  } else {
    reply(NR_REP_OK, NULL, 0);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  pid_t parent = (pid_t)atol(argv[1]);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
  ctl = mmap(NULL, NR_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, NR_FD_CTL, 0);
  if (ctl == MAP_FAILED) _exit(3);
  const char *mode = getenv("NR_FAKE_MODE");
  if (!mode) mode = "ok";
  if (!strcmp(mode, "hello-badop")) reply(NR_REP_OK, NULL, 0);
  else if (!strcmp(mode, "hello-garbage")) reply(NR_REP_ERROR, "\xc1", 1);
  else reply(NR_REP_HELLO, NULL, 0);
  for (;;) {
    next_request(parent);
    switch (ctl->op) {
      case NR_OP_EXIT: _exit(0);
      case NR_OP_CALL:
        if (ctl->method == 2 /* NR_PY_FORWARD */) misbehave(parent, mode);
        else reply(NR_REP_OK, NULL, 0);
        break;
      default: reply(NR_REP_OK, NULL, 0);
    }
  }
}
