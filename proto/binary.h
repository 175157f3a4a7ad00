/* binary.h: binary protobuf files (.caffemodel, .solverstate, mean .binaryproto) and the
 * BlobProto helpers every weight reader needs.
 *
 * Concept. protobuf-c's unpack only says "NULL" when bytes are bad. Before unpacking,
 * netrun walks the wire format itself (tags, varints, lengths, nested messages known to
 * the schema, packed arrays) so a truncated or corrupt file is reported as
 *   model.caffemodel: truncated at byte 1234 in layer.blobs (field 5 length 5000 exceeds
 *   the 20 bytes left)
 * Files may be up to 2 GB (Caffe's limit).
 *
 * Ownership. Loaded messages are protobuf-c messages: free with
 * protobuf_c_message_free_unpacked(msg, NULL) (or the generated __free_unpacked). The
 * helpers below borrow their arguments.
 *
 * Thread safety: no global state.
 */
#ifndef NR_BINARY_H
#define NR_BINARY_H

#include <stddef.h>
#include <stdint.h>

#include "caffe.pb-c.h"
#include "nr_status.h"

/* Most axes a blob may have (Caffe's kMaxBlobAxes). */
#define NR_BLOB_MAX_AXES 32

/* Checks that buf[0..len) is well-formed protobuf wire data for `desc`: every tag valid,
 * every varint/fixed/length-delimited value inside the buffer, fields known to the
 * schema carried with a wire type protobuf-c accepts, nested messages valid too (depth
 * limit 100). `name` labels the message (a file name). NR_ERR_INPUT with the byte offset
 * on failure. */
nr_status nr_proto_validate_wire(const uint8_t *buf, size_t len,
                                 const ProtobufCMessageDescriptor *desc, const char *name,
                                 nr_error *err);

/* Validates then unpacks; *out is new on success. NR_ERR_INPUT or NR_ERR_NOMEM. */
nr_status nr_proto_unpack(const uint8_t *buf, size_t len, const char *name,
                          const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                          nr_error *err);

/* Reads, validates and unpacks a binary file as `desc` (path "-" = stdin). */
nr_status nr_proto_load_binary(const char *path, const ProtobufCMessageDescriptor *desc,
                               ProtobufCMessage **out, nr_error *err);

/* A .solverstate. */
nr_status nr_proto_load_solverstate(const char *path, Caffe__SolverState **out, nr_error *err);

/* Packs msg and writes it to path atomically (a temporary file in the same directory,
 * then rename), so a crash never leaves a half-written snapshot under the final name.
 * NR_ERR_IO naming the path, NR_ERR_NOMEM. */
nr_status nr_proto_save_binary(const char *path, const ProtobufCMessage *msg, nr_error *err);

/* The shape of a stored blob: `shape` if the blob has no legacy dims, else the legacy
 * 4-D num/channels/height/width (Caffe's rule: any legacy field set means legacy).
 * dims must hold NR_BLOB_MAX_AXES. NR_ERR_INPUT for negative dims or too many axes. */
nr_status nr_blobproto_shape(const Caffe__BlobProto *b, int64_t *dims, int *naxes, nr_error *err);

/* Whether a stored blob can be loaded into a blob of shape dims[0..naxes): equal shapes,
 * or — for 4-axis stored shapes, which may come from legacy num/channels/height/width —
 * equal when both are right-aligned with missing leading axes taken as 1 (a legacy bias
 * 1x1x1xN fits a blob of shape [N]), as Caffe compares legacy blobs. */
int nr_blobproto_shape_compatible(const Caffe__BlobProto *b, const int64_t *dims, int naxes);

/* Number of stored values: data (or diff when `diff` is non-zero), float or double. */
size_t nr_blobproto_count(const Caffe__BlobProto *b, int diff);

/* Copies the blob's data (or diff) into dst[0..count) as float, converting double_data /
 * double_diff. NR_ERR_INPUT ("has N values, expected M") when the stored count differs. */
nr_status nr_blobproto_get_floats(const Caffe__BlobProto *b, int diff, float *dst, size_t count,
                                  nr_error *err);

#endif
