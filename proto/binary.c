/* binary.c: wire-format validation before protobuf-c unpacks, binary load/save, and the
 * BlobProto helpers. The validator mirrors what protobuf-c's unpack accepts, so that a
 * buffer it passes unpacks (barring out-of-memory), and says where one it rejects
 * goes wrong. */
#include "binary.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "textformat.h"

#define NR_WIRE_MAX_DEPTH 100

typedef struct nr__wire {
  const uint8_t *start;
  const char *name;
  nr_error *err;
  char path[512]; /* field names from the top, "layer.blobs" */
} nr__wire;

/* Reads a varint at *p (< end). Returns 0 on success, -1 if it runs past end, -2 if it
 * is longer than max_bytes (10 for values; protobuf-c reads tags and lengths as 32-bit
 * and refuses more than 5 bytes for those, even overlong encodings of small numbers). */
static int read_varint_max(const uint8_t **p, const uint8_t *end, uint64_t *v, int max_bytes) {
  uint64_t r = 0;
  for (int i = 0; i < max_bytes; i++) {
    if (*p >= end) return -1;
    uint8_t b = *(*p)++;
    r |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      *v = r;
      return 0;
    }
  }
  return -2;
}

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  return read_varint_max(p, end, v, 10);
}

static const char *wire_type_name(unsigned wt) {
  static const char *names[] = {"varint", "64-bit", "length-delimited", "start-group",
                                "end-group", "32-bit", "invalid (6)", "invalid (7)"};
  return names[wt & 7];
}

static unsigned expected_wire_type(ProtobufCType t) {
  switch (t) {
    case PROTOBUF_C_TYPE_SFIXED32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT:
      return 5;
    case PROTOBUF_C_TYPE_SFIXED64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
      return 1;
    case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_BYTES: case PROTOBUF_C_TYPE_MESSAGE:
      return 2;
    default:
      return 0;
  }
}

__attribute__((format(printf, 3, 4)))
static nr_status wire_error(nr__wire *W, const uint8_t *at, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return nr_err_set(W->err, NR_ERR_INPUT, "%s: %s%s%s", W->name, msg, W->path[0] ? " in " : "",
                    W->path);
}

/* Walks one message's fields in [p, end). Known message fields recurse with their
 * descriptor; unknown fields are skipped after their framing is checked, as protobuf-c
 * keeps them as unknown fields. */
static nr_status walk(nr__wire *W, const uint8_t *p, const uint8_t *end,
                      const ProtobufCMessageDescriptor *desc, int depth) {
  if (depth > NR_WIRE_MAX_DEPTH)
    return wire_error(W, p, "messages nested deeper than %d levels at byte %zu", NR_WIRE_MAX_DEPTH,
                      (size_t)(p - W->start));
  while (p < end) {
    const uint8_t *tag_at = p;
    size_t off = (size_t)(p - W->start);
    uint64_t tag;
    int r = read_varint_max(&p, end, &tag, 5);
    if (r == -1)
      return wire_error(W, tag_at, "truncated at byte %zu (field tag runs past the end)", off);
    if (r == -2)
      return wire_error(W, tag_at, "corrupt at byte %zu (field tag varint longer than 5 bytes)",
                        off);
    unsigned wt = (unsigned)(tag & 7);
    uint64_t num = tag >> 3;
    if (num == 0 || num > 536870911u)
      return wire_error(W, tag_at, "corrupt at byte %zu (invalid field number %llu)", off,
                        (unsigned long long)num);
    const ProtobufCFieldDescriptor *f =
        desc ? protobuf_c_message_descriptor_get_field(desc, (unsigned)num) : NULL;
    if (f) {
      unsigned ew = expected_wire_type(f->type);
      int packed_ok = f->label == PROTOBUF_C_LABEL_REPEATED && ew != 2 && wt == 2;
      if (wt != ew && !packed_ok)
        return wire_error(
            W, tag_at, "corrupt at byte %zu (field %llu '%s' of %s has wire type %s, expected %s)",
            off, (unsigned long long)num, f->name, desc->name, wire_type_name(wt),
            wire_type_name(ew));
    }
    const uint8_t *val_at = p;
    switch (wt) {
      case 0: {
        uint64_t v;
        r = read_varint(&p, end, &v);
        if (r == -1)
          return wire_error(W, val_at,
                            "truncated at byte %zu (varint of field %llu runs past the end)",
                            (size_t)(val_at - W->start), (unsigned long long)num);
        if (r == -2)
          return wire_error(W, val_at,
                            "corrupt at byte %zu (varint of field %llu longer than 10 bytes)",
                            (size_t)(val_at - W->start), (unsigned long long)num);
        break;
      }
      case 1: case 5: {
        size_t need = wt == 1 ? 8 : 4;
        if ((size_t)(end - p) < need)
          return wire_error(
              W, val_at, "truncated at byte %zu (field %llu needs %zu bytes, %zu left)",
              (size_t)(val_at - W->start), (unsigned long long)num, need, (size_t)(end - p));
        p += need;
        break;
      }
      case 2: {
        uint64_t n;
        r = read_varint_max(&p, end, &n, 5);
        if (r == -1)
          return wire_error(W, val_at,
                            "truncated at byte %zu (length of field %llu runs past the end)",
                            (size_t)(val_at - W->start), (unsigned long long)num);
        if (r == -2)
          return wire_error(W, val_at,
                            "corrupt at byte %zu (length of field %llu longer than 5 bytes)",
                            (size_t)(val_at - W->start), (unsigned long long)num);
        size_t left = (size_t)(end - p);
        if (n > left)
          return wire_error(
              W, val_at,
              "truncated at byte %zu (field %llu length %llu exceeds the %zu bytes left)",
              (size_t)(val_at - W->start), (unsigned long long)num, (unsigned long long)n, left);
        const uint8_t *sub = p, *sub_end = p + n;
        p = sub_end;
        if (!f) break;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
          size_t plen = strlen(W->path);
          if (plen + strlen(f->name) + 2 < sizeof W->path)
            snprintf(W->path + plen, sizeof W->path - plen, "%s%s", plen ? "." : "", f->name);
          NR_TRY(walk(W, sub, sub_end, f->descriptor, depth + 1));
          W->path[plen] = 0;
        } else if (expected_wire_type(f->type) == 5 || expected_wire_type(f->type) == 1) {
          size_t es = expected_wire_type(f->type) == 5 ? 4 : 8;
          if (n % es)
            return wire_error(W, val_at,
                              "corrupt at byte %zu (packed field %llu '%s' has %llu bytes, not a "
                              "multiple of %zu)",
                              (size_t)(val_at - W->start), (unsigned long long)num, f->name,
                              (unsigned long long)n, es);
        } else if (expected_wire_type(f->type) == 0) {
          while (sub < sub_end) {
            const uint8_t *e_at = sub;
            uint64_t v;
            if (read_varint(&sub, sub_end, &v) != 0)
              return wire_error(W, e_at,
                                "corrupt at byte %zu (packed field %llu '%s' ends inside a varint)",
                                (size_t)(e_at - W->start), (unsigned long long)num, f->name);
          }
        }
        break;
      }
      default:
        return wire_error(W, tag_at,
                          "corrupt at byte %zu (field %llu has unsupported wire type %s)", off,
                          (unsigned long long)num, wire_type_name(wt));
    }
  }
  return NR_OK;
}

nr_status nr_proto_validate_wire(const uint8_t *buf, size_t len,
                                 const ProtobufCMessageDescriptor *desc, const char *name,
                                 nr_error *err) {
  nr__wire W;
  W.start = buf;
  W.name = name ? name : "<binary>";
  W.err = err;
  W.path[0] = 0;
  return walk(&W, buf, buf + len, desc, 0);
}

nr_status nr_proto_unpack(const uint8_t *buf, size_t len, const char *name,
                          const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                          nr_error *err) {
  NR_TRY(nr_proto_validate_wire(buf, len, desc, name, err));
  ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, buf);
  if (!m)
    return nr_err_set(err, NR_ERR_NOMEM, "%s: cannot decode %zu bytes as %s (out of memory?)",
                      name ? name : "<binary>", len, desc->name);
  *out = m;
  return NR_OK;
}

static const char *file_kind(mode_t m) {
  return S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device"
         : S_ISBLK(m) ? "a block device" : S_ISFIFO(m) ? "a pipe"
         : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

nr_status nr_proto_load_binary(const char *path, const ProtobufCMessageDescriptor *desc,
                               ProtobufCMessage **out, nr_error *err) {
  /* Weights and solver states are files of a known size: anything else (a device such as
   * /dev/urandom, a pipe) is refused before a byte is read, not after gigabytes. */
  struct stat st;
  if (stat(path, &st) != 0)
    return nr_err_set(err, NR_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode))
    return nr_err_set(err, NR_ERR_INPUT, "'%s' is %s, not a %s file", path,
                      file_kind(st.st_mode), desc == &caffe__solver_state__descriptor
                                                 ? ".solverstate" : ".caffemodel");
  char *buf = NULL;
  size_t len = 0;
  NR_TRY(nr_proto_read_file(path, &buf, &len, err));
  nr_status s = nr_proto_unpack((const uint8_t *)buf, len, path, desc, out, err);
  free(buf);
  return s;
}

nr_status nr_proto_load_solverstate(const char *path, Caffe__SolverState **out, nr_error *err) {
  ProtobufCMessage *m = NULL;
  NR_TRY(nr_proto_load_binary(path, &caffe__solver_state__descriptor, &m, err));
  *out = (Caffe__SolverState *)m;
  return NR_OK;
}

nr_status nr_proto_save_binary(const char *path, const ProtobufCMessage *msg, nr_error *err) {
  uint8_t *buf = NULL;
  char *tmp = NULL;
  FILE *f = NULL;
  nr_status s;
  size_t n = protobuf_c_message_get_packed_size(msg);
  buf = malloc(n ? n : 1);
  size_t tlen = strlen(path) + 32;
  tmp = malloc(tlen);
  if (!buf || !tmp) {
    s = nr_err_set(err, NR_ERR_NOMEM, "out of memory writing '%s'", path);
    goto fail;
  }
  protobuf_c_message_pack(msg, buf);
  snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
  f = fopen(tmp, "wb");
  if (!f) {
    s = nr_err_set(err, NR_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    goto fail;
  }
  if (fwrite(buf, 1, n, f) != n || fflush(f) != 0) {
    s = nr_err_set(err, NR_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    goto fail_unlink;
  }
  if (fclose(f) != 0) {
    f = NULL;
    s = nr_err_set(err, NR_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    goto fail_unlink;
  }
  f = NULL;
  if (rename(tmp, path) != 0) {
    s = nr_err_set(err, NR_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    goto fail_unlink;
  }
  free(tmp);
  free(buf);
  return NR_OK;
fail_unlink:
  if (f) fclose(f);
  f = NULL;
  unlink(tmp);
fail:
  if (f) fclose(f);
  free(tmp);
  free(buf);
  return s;
}

/* ------------------------------------------------------------------------------------ */

static int blob_is_legacy(const Caffe__BlobProto *b) {
  return b->has_num || b->has_channels || b->has_height || b->has_width;
}

nr_status nr_blobproto_shape(const Caffe__BlobProto *b, int64_t *dims, int *naxes, nr_error *err) {
  if (blob_is_legacy(b)) {
    int32_t legacy[4] = {b->num, b->channels, b->height, b->width};
    for (int i = 0; i < 4; i++) {
      if (legacy[i] < 0)
        return nr_err_set(err, NR_ERR_INPUT, "blob has negative legacy dimension %d",
                          (int)legacy[i]);
      dims[i] = legacy[i];
    }
    *naxes = 4;
    return NR_OK;
  }
  size_t n = b->shape ? b->shape->n_dim : 0;
  if (n > NR_BLOB_MAX_AXES)
    return nr_err_set(err, NR_ERR_INPUT, "blob has %zu axes; at most %d are allowed", n,
                      NR_BLOB_MAX_AXES);
  for (size_t i = 0; i < n; i++) {
    if (b->shape->dim[i] < 0)
      return nr_err_set(err, NR_ERR_INPUT, "blob has negative dimension %lld at axis %zu",
                        (long long)b->shape->dim[i], i);
    dims[i] = b->shape->dim[i];
  }
  *naxes = (int)n;
  return NR_OK;
}

int nr_blobproto_shape_compatible(const Caffe__BlobProto *b, const int64_t *dims, int naxes) {
  int64_t sd[NR_BLOB_MAX_AXES];
  int sn = 0;
  if (nr_blobproto_shape(b, sd, &sn, NULL) != NR_OK) return 0;
  if (sn == naxes) {
    int same = 1;
    for (int i = 0; i < sn; i++) same &= sd[i] == dims[i];
    if (same) return 1;
  }
  if (sn != 4 || naxes > 4) return 0;
  /* Right-aligned legacy comparison: pad the blob's shape on the left with 1s. */
  for (int i = 0; i < 4; i++) {
    int j = i - (4 - naxes);
    int64_t want = j >= 0 ? dims[j] : 1;
    if (sd[i] != want) return 0;
  }
  return 1;
}

size_t nr_blobproto_count(const Caffe__BlobProto *b, int diff) {
  if (diff) return b->n_diff ? b->n_diff : b->n_double_diff;
  return b->n_data ? b->n_data : b->n_double_data;
}

nr_status nr_blobproto_get_floats(const Caffe__BlobProto *b, int diff, float *dst, size_t count,
                                  nr_error *err) {
  const float *f = diff ? b->diff : b->data;
  size_t nf = diff ? b->n_diff : b->n_data;
  const double *d = diff ? b->double_diff : b->double_data;
  size_t nd = diff ? b->n_double_diff : b->n_double_data;
  if (nf) {
    if (nf != count)
      return nr_err_set(err, NR_ERR_INPUT, "blob %s has %zu values, expected %zu",
                        diff ? "diff" : "data", nf, count);
    memcpy(dst, f, count * sizeof *dst);
    return NR_OK;
  }
  if (nd != count)
    return nr_err_set(err, NR_ERR_INPUT, "blob %s has %zu values, expected %zu",
                      diff ? "diff" : "data", nd, count);
  for (size_t i = 0; i < count; i++) dst[i] = (float)d[i];
  return NR_OK;
}
