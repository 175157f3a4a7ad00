/* load.c: the file loaders (load.h): read a file, parse it as prototxt or binary
 * protobuf, upgrade it. They sit above textformat.c, binary.c and upgrade.c, so the
 * parsers and the upgrader never call one another. */
#include "load.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

#include "binary.h"
#include "textformat.h"
#include "upgrade.h"

#define NOMEM(err) nr_err_set((err), NR_ERR_NOMEM, "out of memory upgrading")

/* Does buf parse as a message of the other kind? Then a file was given where the other was
 * wanted (a solver as --model, a .solverstate as --weights): the error says so. */
static bool parses_as(const char *buf, size_t len, bool binary,
                      const ProtobufCMessageDescriptor *d) {
  nr_error *scratch = malloc(sizeof *scratch);
  if (!scratch) return false;
  ProtobufCMessage *m = NULL;
  nr_status s = binary ? nr_proto_unpack((const uint8_t *)buf, len, "", d, &m, scratch)
                       : nr_text_parse(buf, len, "", d, &m, scratch);
  free(scratch);
  if (s != NR_OK) return false;
  bool nonempty = protobuf_c_message_get_packed_size(m) > 0;
  if (binary) protobuf_c_message_free_unpacked(m, NULL);
  else nr_text_free(m);
  return nonempty;
}

static void add_hint(nr_error *err, const char *hint) {
  size_t n = strlen(err->msg);
  snprintf(err->msg + n, sizeof err->msg - n, " (%s)", hint);
}

nr_status nr_proto_load_net_text(const char *path, Caffe__NetParameter **out, nr_error *err) {
  char *buf = NULL;
  size_t len = 0;
  ProtobufCMessage *m = NULL;
  NR_TRY(nr_proto_read_file(path, &buf, &len, err));
  nr_status s = nr_text_parse(buf, len, path, &caffe__net_parameter__descriptor, &m, err);
  if (s == NR_ERR_INPUT && parses_as(buf, len, false, &caffe__solver_parameter__descriptor))
    add_hint(err, "this file is a solver, not a net: train with `netrun train --solver FILE`, "
                  "or give the net file it names");
  free(buf);
  if (s != NR_OK) return s;
  s = nr_upgrade_net((Caffe__NetParameter *)m, NULL, err);
  if (s != NR_OK) {
    nr_err_prefix(err, "%s", path);
    nr_text_free(m);
    return s;
  }
  *out = (Caffe__NetParameter *)m;
  return NR_OK;
}

nr_status nr_proto_load_solver_text(const char *path, Caffe__SolverParameter **out, nr_error *err) {
  char *buf = NULL;
  size_t len = 0;
  ProtobufCMessage *m = NULL;
  NR_TRY(nr_proto_read_file(path, &buf, &len, err));
  nr_status s = nr_text_parse(buf, len, path, &caffe__solver_parameter__descriptor, &m, err);
  if (s == NR_ERR_INPUT && parses_as(buf, len, false, &caffe__net_parameter__descriptor))
    add_hint(err, "this file is a net, not a solver: give the solver prototxt that names it");
  free(buf);
  if (s != NR_OK) return s;
  s = nr_upgrade_solver((Caffe__SolverParameter *)m, NULL, err);
  if (s == NR_OK) s = nr_solver_default_snapshot_prefix((Caffe__SolverParameter *)m, path, err);
  if (s != NR_OK) {
    nr_err_prefix(err, "%s", path);
    nr_text_free(m);
    return s;
  }
  *out = (Caffe__SolverParameter *)m;
  return NR_OK;
}

nr_status nr_proto_load_net_binary(const char *path, Caffe__NetParameter **out, nr_error *err) {
  ProtobufCMessage *m = NULL;
  nr_status ls = nr_proto_load_binary(path, &caffe__net_parameter__descriptor, &m, err);
  struct stat sb;
  if (ls == NR_ERR_INPUT && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
    /* Only a regular file is read again for the hint: a device or a pipe was refused unread. */
    char *buf = NULL;
    size_t len = 0;
    nr_error *scratch = malloc(sizeof *scratch);
    if (scratch && nr_proto_read_file(path, &buf, &len, scratch) == NR_OK &&
        parses_as(buf, len, true, &caffe__solver_state__descriptor))
      add_hint(err, "this file is a .solverstate, not weights: resume training with "
                    "`netrun train --solver S --snapshot FILE`");
    free(buf);
    free(scratch);
  }
  if (ls != NR_OK) return ls;
  nr_status s = nr_upgrade_net((Caffe__NetParameter *)m, NULL, err);
  if (s != NR_OK) {
    nr_err_prefix(err, "%s", path);
    protobuf_c_message_free_unpacked(m, NULL);
    return s;
  }
  *out = (Caffe__NetParameter *)m;
  return NR_OK;
}

nr_status nr_upgrade_text_file(const char *in_path, FILE *out, nr_error *err) {
  char *buf = NULL;
  size_t len = 0;
  ProtobufCMessage *m = NULL;
  nr_error *net_err = NULL, *solver_err = NULL;
  nr_status s;
  NR_TRY(nr_proto_read_file(in_path, &buf, &len, err));
  net_err = malloc(sizeof *net_err);
  solver_err = malloc(sizeof *solver_err);
  if (!net_err || !solver_err) {
    s = NOMEM(err);
    goto done;
  }
  s = nr_text_parse(buf, len, in_path, &caffe__net_parameter__descriptor, &m, net_err);
  if (s == NR_OK) {
    s = nr_upgrade_net((Caffe__NetParameter *)m, NULL, err);
  } else if (s == NR_ERR_INPUT) {
    s = nr_text_parse(buf, len, in_path, &caffe__solver_parameter__descriptor, &m, solver_err);
    if (s == NR_OK) {
      s = nr_upgrade_solver((Caffe__SolverParameter *)m, NULL, err);
    } else if (s == NR_ERR_INPUT) {
      nr_err_set(err, NR_ERR_INPUT, "neither a net nor a solver: as a net: %s; as a solver: %s",
                 net_err->msg, solver_err->msg);
    } else {
      if (err) *err = *solver_err;
    }
  } else {
    if (err) *err = *net_err;
  }
  if (s == NR_OK) {
    s = nr_text_print(m, out);
    if (s != NR_OK) nr_err_set(err, s, "cannot write the upgraded text");
  }
done:
  if (m) nr_text_free(m);
  free(net_err);
  free(solver_err);
  free(buf);
  return s;
}
