/* fuzz_ipc_wire.c: libFuzzer target for the IPC payload decoders (ipc/wire.h), both
 * directions: what the core decodes from a worker (nr_wire_decode_reply) and what a worker
 * decodes from the core (nr_wire_decode_request).
 * Input: byte 0 picks the opcode (see ops[]), the rest is the msgpack payload as it would
 * sit in the control block. A decoder must never crash, leak or read out of bounds; what it
 * accepts must satisfy the limits wire.h promises; what it refuses must say why, as EPROTO:
 * ENOMEM from an input this small is a malformed message mistaken for an allocation
 * failure (a worker dies on ENOMEM), and a real one is reported by libFuzzer itself. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static void must(int cond) {
  if (!cond) abort(); /* a broken invariant is a finding */
}

static const uint32_t ops[] = {NR_REP_HELLO, NR_REP_OK, NR_REP_ERROR, NR_REP_GROW,
                               NR_REP_ADD_PARAM, NR_OP_CALL, NR_OP_NESTED_OK,
                               NR_OP_NESTED_ERR, NR_OP_RELEASE, 0};
#define NOPS (sizeof ops / sizeof ops[0])

static void check_shape(const nr_wire_shape *s) {
  must(s->kind >= NR_SLOT_BOTTOM && s->kind <= NR_SLOT_PARAM);
  must(s->idx >= -1);
  must(s->nd >= 0 && s->nd <= NR_WIRE_MAX_AXES);
  for (int i = 0; i < s->nd; i++) must(s->dims[i] >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint32_t op = ops[data[0] % NOPS];
  const char *buf = (const char *)data + 1;
  size_t len = size - 1;
  const char *why = NULL;
  if (op >= NR_REP_HELLO || op == 0) {
    nr_wire_reply r;
    int rc = nr_wire_decode_reply(op, buf, len, &r, &why);
    if (rc == 0) {
      for (uint32_t i = 0; i < r.nshapes; i++) check_shape(&r.shapes[i]);
      if (op == NR_REP_GROW || op == NR_REP_ADD_PARAM) check_shape(&r.nested);
      if (r.msg) must(strlen(r.msg) <= len);
    } else {
      must(rc == EPROTO && why && *why);
    }
    nr_wire_reply_clear(&r);
  }
  if (op < NR_REP_HELLO) {
    nr_wire_request q;
    int rc = nr_wire_decode_request(op, buf, len, &q, &why);
    if (rc == 0) {
      for (uint32_t i = 0; i < q.nblobs; i++) {
        check_shape(&q.blobs[i].shape);
        must(q.blobs[i].cap >= 0);
      }
      if (q.create) {
        must(q.name && q.module && q.layer && q.param_str && q.source_dir);
        for (int i = 0; i < q.ntop; i++) must(q.aliases[i] >= -1 && q.aliases[i] < q.nbottom);
      }
      if (q.nreplicas) must(q.replica >= 0 && q.replica < q.nreplicas && q.first_batch >= 0);
      if (op == NR_OP_NESTED_ERR) must(q.err_msg != NULL);
    } else {
      must(rc == EPROTO && why && *why);
    }
    nr_wire_request_clear(&q);
  }
  return 0;
}
