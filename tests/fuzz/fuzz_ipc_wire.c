/* fuzz_ipc_wire.c: libFuzzer target for the IPC payload decoders (ipc/wire.h), both
 * directions: what the core decodes from a worker (nr_wire_decode_reply) and what a worker
 * decodes from the core (nr_wire_decode_request).
 * Input: byte 0 picks the opcode (see ops[]), the rest is the msgpack payload as it would
 * sit in the control block. A decoder must never crash, leak or read out of bounds; what it
 * accepts must satisfy the limits wire.h promises; what it refuses must say why, as EPROTO:
 * ENOMEM from an input this small is a malformed message mistaken for an allocation
 * failure (a worker dies on ENOMEM), and a real one is reported by libFuzzer itself.
 * What a decoder accepts, the matching encoder (nr_wire_encode_*) must write back so that
 * decoding it again gives the same message. */
#include <errno.h>
#include <stdbool.h>
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

static bool same_str(const char *a, const char *b) { /* the encoder sends NULL as "" */
  return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool same_shape(const nr_wire_shape *a, const nr_wire_shape *b) {
  if (a->kind != b->kind || a->idx != b->idx || a->nd != b->nd) return false;
  for (int i = 0; i < a->nd; i++)
    if (a->dims[i] != b->dims[i]) return false;
  return true;
}

/* Encodes the message decoded for op (reply r, or request q when r is NULL) and decodes
 * the result again into *br / *bq. The encoder gets room enough not to cut a string (it
 * cuts them at a quarter of its room). */
static void round_trip(uint32_t op, const nr_wire_reply *r, const nr_wire_request *q,
                       size_t len, nr_wire_reply *br, nr_wire_request *bq) {
  size_t cap = 4 * len + 4096, n = 0;
  char *buf = malloc(cap);
  const char *why = NULL;
  must(buf != NULL);
  if (r) {
    must(nr_wire_encode_reply(op, r, buf, cap, &n) == 0);
    must(nr_wire_decode_reply(op, buf, n, br, &why) == 0);
  } else {
    must(nr_wire_encode_request(op, q, buf, cap, &n) == 0);
    must(nr_wire_decode_request(op, buf, n, bq, &why) == 0);
  }
  free(buf);
}

/* r, accepted for op, encoded and decoded again, is r. */
static void check_reply_round_trip(uint32_t op, const nr_wire_reply *r, size_t len) {
  if (op == NR_REP_HELLO) return; /* its encoder sends no payload */
  nr_wire_reply b;
  round_trip(op, r, NULL, len, &b, NULL);
  must(b.nshapes == r->nshapes);
  for (uint32_t i = 0; i < r->nshapes; i++) must(same_shape(&b.shapes[i], &r->shapes[i]));
  if (op == NR_REP_ERROR)
    must(same_str(b.type, r->type) && same_str(b.msg, r->msg) && same_str(b.tb, r->tb));
  if (op == NR_REP_GROW || op == NR_REP_ADD_PARAM) must(same_shape(&b.nested, &r->nested));
  nr_wire_reply_clear(&b);
}

/* q, accepted for op, encoded and decoded again, is q. */
static void check_request_round_trip(uint32_t op, const nr_wire_request *q, size_t len) {
  nr_wire_request b;
  round_trip(op, NULL, q, len, NULL, &b);
  must(b.nforget == q->nforget);
  for (uint32_t i = 0; i < q->nforget; i++) must(b.forget[i] == q->forget[i]);
  must(b.create == q->create);
  if (q->create) {
    must(same_str(b.name, q->name) && same_str(b.module, q->module) &&
         same_str(b.layer, q->layer) && same_str(b.param_str, q->param_str) &&
         same_str(b.source_dir, q->source_dir));
    must(b.phase == q->phase && b.nbottom == q->nbottom && b.ntop == q->ntop);
    for (int i = 0; i < q->ntop; i++) must(b.aliases[i] == q->aliases[i]);
  }
  must(b.nreplicas == q->nreplicas && b.replica == q->replica &&
       b.first_batch == q->first_batch);
  must(b.nblobs == q->nblobs);
  for (uint32_t i = 0; i < q->nblobs; i++) {
    const nr_wire_blob *x = &b.blobs[i], *y = &q->blobs[i];
    must(same_shape(&x->shape, &y->shape) && x->seg == y->seg && x->cap == y->cap &&
         x->shaped == y->shaped);
  }
  must(b.seg == q->seg && b.cap == q->cap && b.exc == q->exc);
  must(same_str(b.err_msg, q->err_msg));
  nr_wire_request_clear(&b);
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
      check_reply_round_trip(op, &r, len);
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
      check_request_round_trip(op, &q, len);
    } else {
      must(rc == EPROTO && why && *why);
    }
    nr_wire_request_clear(&q);
  }
  return 0;
}
