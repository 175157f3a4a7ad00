/* textformat.h: the protobuf text format (prototxt), read and written over protobuf-c
 * descriptors, so one parser serves every message of caffe.proto.
 *
 * Concept. A prototxt is a sequence of `field: value` and `field { ... }` entries; the
 * parser walks the ProtobufCMessageDescriptor of the message being filled, so field
 * names, types, enum names and repeatedness all come from the schema. Errors name
 * `file:line:column` (both 1-based, the column counts bytes) and say what was expected
 * and what was found. See docs/prototxt.md for the exact grammar accepted.
 *
 * Ownership. A parsed message is allocated with protobuf-c's default allocator (malloc)
 * exactly as protobuf_c_message_unpack() would, so the caller frees it with
 * protobuf_c_message_free_unpacked(msg, NULL) (nr_text_free() is the same call). The
 * printer borrows the message.
 *
 * Field names. protobuf-c reserves the struct member `base`, so schema fields that Caffe
 * calls `base` are declared `base_`: in text, a trailing underscore of a schema field
 * name is dropped (`base: 2` sets `base_`), and the printer writes it without.
 *
 * Thread safety: no global state; distinct calls may run concurrently.
 */
#ifndef NR_TEXTFORMAT_H
#define NR_TEXTFORMAT_H

#include <stdio.h>
#include <protobuf-c/protobuf-c.h>

#include "nr_status.h"

/* Deepest nesting of `{ }` blocks the parser accepts (deeper is an input error, so a
 * hostile file cannot exhaust the stack). */
#define NR_TEXT_MAX_DEPTH 100

/* Parses `len` bytes of prototxt as a message of type `desc`. `filename` only labels
 * error messages (NULL reads "<text>"); `text` need not be NUL-terminated. On success
 * *out is a new message (free with nr_text_free); on failure *out is untouched and err
 * says file:line:column and what is wrong. Returns NR_ERR_INPUT for any syntax, type,
 * range or schema error, NR_ERR_NOMEM when an allocation fails. Unknown fields and a
 * non-repeated field given twice are errors, as in Caffe. */
nr_status nr_text_parse(const char *text, size_t len, const char *filename,
                        const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                        nr_error *err);

/* Frees a message returned by nr_text_parse (or by protobuf-c's unpack). NULL is a no-op. */
void nr_text_free(ProtobufCMessage *msg);

/* Writes msg in Caffe's text style: 2-space indent, `name: "x"`, `sub {` ... `}`, enums
 * by name, floats in the shortest form that reads back to the same bits, only the fields
 * that are present (those protobuf_c_message_pack would write). Fields come in field
 * number order, like Caffe's printer. The output re-parses to an identical message.
 * Returns NR_ERR_NOMEM or NR_ERR_IO (write failed); NR_OK otherwise. */
nr_status nr_text_print(const ProtobufCMessage *msg, FILE *f);

/* Same text as nr_text_print as a new NUL-terminated malloc'd string (caller frees);
 * NULL when out of memory. */
char *nr_text_to_string(const ProtobufCMessage *msg);

/* Reads a whole file into a new malloc'd buffer (*buf, caller frees) with a NUL byte
 * after the *len bytes of content. path "-" reads standard input. Files larger than
 * 2^31 bytes are refused (Caffe's own limit). Errors: NR_ERR_IO naming the path and
 * the system error, NR_ERR_INPUT for a too-large file, NR_ERR_NOMEM. */
nr_status nr_proto_read_file(const char *path, char **buf, size_t *len, nr_error *err);

#endif
