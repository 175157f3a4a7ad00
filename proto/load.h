/* load.h: the file loaders: read a Caffe file, parse it (prototxt or binary protobuf) and
 * bring it up to the current schema, as Caffe does after every read.
 *
 * Concept. Each loader is the three steps in a row: nr_proto_read_file (textformat.h),
 * then nr_text_parse (textformat.h) or nr_proto_load_binary's validated unpack (binary.h),
 * then nr_upgrade_net / nr_upgrade_solver (upgrade.h). The parsers and the upgrader work
 * on memory and know nothing of each other; only this file puts them together. Errors
 * name the file (a parse error as file:line:column, an upgrade error prefixed by the path).
 *
 * Ownership. Paths are borrowed; a loaded message is new (free with
 * protobuf_c_message_free_unpacked(msg, NULL)) and *out is set only on success.
 *
 * Thread safety: no global state; distinct calls may run concurrently.
 */
#ifndef NR_LOAD_H
#define NR_LOAD_H

#include <stdio.h>

#include "caffe.pb-c.h"
#include "nr_status.h"

/* Reads, parses and upgrades a prototxt net (path "-" = stdin). */
nr_status nr_proto_load_net_text(const char *path, Caffe__NetParameter **out, nr_error *err);

/* Reads, parses and upgrades a solver prototxt, then applies
 * nr_solver_default_snapshot_prefix (as Caffe's ReadSolverParamsFromTextFileOrDie). */
nr_status nr_proto_load_solver_text(const char *path, Caffe__SolverParameter **out,
                                    nr_error *err);

/* A .caffemodel (or binary net): nr_proto_load_binary + nr_upgrade_net (V1/V0 layers,
 * inputs, BatchNorm, legacy blob dims), as Caffe does after every net read. */
nr_status nr_proto_load_net_binary(const char *path, Caffe__NetParameter **out, nr_error *err);

/* `netrun upgrade IN [OUT]`: reads a prototxt that may be a net or a solver (whichever
 * parses; if neither, the error gives both reasons), upgrades it (no snapshot_prefix
 * defaulting) and prints the current-format text to out. */
nr_status nr_upgrade_text_file(const char *in_path, FILE *out, nr_error *err);

#endif
