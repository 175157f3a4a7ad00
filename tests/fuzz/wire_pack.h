/* wire_pack.h: msgpack encoders of the control-block payloads, byte for byte as ipc/wire.c's
 * nr_wire_encode_request / nr_wire_encode_reply write them, for the seed-corpus generators
 * (gen_ipc_wire_corpus.c, gen_worker_request_corpus.c), which build with msgpack-c alone
 * and also write malformed payloads. */
#ifndef NR_WIRE_PACK_H
#define NR_WIRE_PACK_H

#include <msgpack.h>
#include <string.h>

#include "wire.h"

static inline void pack_str(msgpack_packer *pk, const char *s) {
  size_t n = strlen(s);
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s, n);
}

/* A blob descriptor of a call: [kind, idx, seg, cap, shaped (true), [dims]]. */
static inline void pack_desc(msgpack_packer *pk, int kind, int idx, uint32_t seg, int64_t cap,
                      int nd, const int64_t *dims) {
  msgpack_pack_array(pk, 6);
  msgpack_pack_int(pk, kind);
  msgpack_pack_int(pk, idx);
  msgpack_pack_uint32(pk, seg);
  msgpack_pack_int64(pk, cap);
  msgpack_pack_true(pk);
  msgpack_pack_array(pk, (size_t)nd);
  for (int i = 0; i < nd; i++) msgpack_pack_int64(pk, dims[i]);
}

/* A reshaped blob of a reply, or a nested request: [kind, idx, [dims]]. */
static inline void pack_shape(msgpack_packer *pk, int kind, int idx, int nd, const int64_t *dims) {
  msgpack_pack_array(pk, 3);
  msgpack_pack_int(pk, kind);
  msgpack_pack_int(pk, idx);
  msgpack_pack_array(pk, (size_t)nd);
  for (int i = 0; i < nd; i++) msgpack_pack_int64(pk, dims[i]);
}

#endif
