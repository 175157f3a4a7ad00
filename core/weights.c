#include "weights.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binary.h"
#include "load.h"

nr_status nr_weights_blob_from_proto(nr_blob *b, const Caffe__BlobProto *bp, const char *layer,
                                     int index, nr_error *err) {
  if (!nr_blobproto_shape_compatible(bp, b->shape, b->num_axes)) {
    int64_t dims[NR_MAX_AXES];
    int n = 0;
    char have[256], want[512] = "(invalid)";
    if (nr_blobproto_shape(bp, dims, &n, NULL) == NR_OK) {
      size_t off = 0;
      int64_t cnt = 1;
      for (int i = 0; i < n && off + 24 < sizeof want; i++) {
        off += (size_t)snprintf(want + off, sizeof want - off, "%lld ", (long long)dims[i]);
        cnt *= dims[i];
      }
      snprintf(want + off, sizeof want - off, "(%lld)", (long long)cnt);
    }
    return nr_err_set(err, NR_ERR_INPUT,
                      "layer '%s' blob %d: shape mismatch: the net has %s, the file has %s",
                      layer, index, nr_blob_shape_str(b, have, sizeof have), want);
  }
  if (nr_blobproto_get_floats(bp, 0, b->data, (size_t)b->count, err) != NR_OK)
    return nr_err_prefix(err, "layer '%s' blob %d", layer, index);
  return NR_OK;
}

nr_status nr_weights_load(const char *path, Caffe__NetParameter **out, nr_error *err) {
  return nr_proto_load_net_binary(path, out, err);
}

nr_status nr_weights_save_message(const ProtobufCMessage *msg, const char *path,
                                  nr_error *err) {
  return nr_proto_save_binary(path, msg, err);
}
