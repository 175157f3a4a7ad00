/* fuzz_caffemodel.c: libFuzzer target for the binary reader. Input: arbitrary bytes
 * as a NetParameter (.caffemodel) and a SolverState. The wire validator must reject
 * anything protobuf-c cannot unpack (so unpack after validation never fails except on
 * out-of-memory), and an unpacked net must upgrade and repack without crashing. */
#include <stdint.h>
#include <stdlib.h>

#include "binary.h"
#include "upgrade.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nr_error err;
  ProtobufCMessage *m = NULL;
  if (nr_proto_unpack(data, size, "fuzz.caffemodel", &caffe__net_parameter__descriptor, &m, &err) ==
      NR_OK) {
    int changed = 0;
    Caffe__NetParameter *net = (Caffe__NetParameter *)m;
    if (nr_upgrade_net(net, &changed, &err) == NR_OK) {
      for (size_t i = 0; i < net->n_layer; i++) {
        for (size_t k = 0; k < net->layer[i]->n_blobs; k++) {
          int64_t dims[NR_BLOB_MAX_AXES];
          int n;
          nr_blobproto_shape(net->layer[i]->blobs[k], dims, &n, &err);
        }
      }
    }
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len + 1);
    if (buf) protobuf_c_message_pack(m, buf);
    free(buf);
    protobuf_c_message_free_unpacked(m, NULL);
  } else if (err.status == NR_ERR_NOMEM) {
    abort(); /* validation passed but protobuf-c refused: validator and unpack disagree */
  }
  m = NULL;
  if (nr_proto_unpack(data, size, "fuzz.solverstate", &caffe__solver_state__descriptor, &m, &err) ==
      NR_OK)
    protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}
