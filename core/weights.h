/* weights.h: parameter blobs to and from .caffemodel messages.
 *
 * A .caffemodel is a binary NetParameter whose layers carry their parameter blobs. Blobs in
 * files may use BlobShape or the legacy num/channels/height/width, and float or double data;
 * shapes are compared as Caffe does (legacy 4-D shapes right-aligned, missing leading dims
 * count as 1).
 */
#ifndef NR_WEIGHTS_H
#define NR_WEIGHTS_H

#include "blob.h"
#include "caffe.pb-c.h"

/* Copies a BlobProto's data into b (shape must match; b keeps its shape). layer/index name
 * the blob in errors: "layer 'conv1' blob 0: shape mismatch: the net has 20 1 5 5 (500),
 * the file has 20 1 3 3 (180)". */
nr_status nr_weights_blob_from_proto(nr_blob *b, const Caffe__BlobProto *bp, const char *layer,
                                     int index, nr_error *err);

/* Reads a binary NetParameter (.caffemodel), upgrading legacy forms. *out is new; free with
 * protobuf_c_message_free_unpacked(&(*out)->base, NULL). */
nr_status nr_weights_load(const char *path, Caffe__NetParameter **out, nr_error *err);

/* Writes a message in binary form to path (atomically: a temporary file renamed). */
nr_status nr_weights_save_message(const ProtobufCMessage *msg, const char *path, nr_error *err);

#endif
