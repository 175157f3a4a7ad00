/* fuzz_prototxt.c: libFuzzer target for the prototxt parser, printer and upgrader.
 * Input: arbitrary bytes as a net (and as a solver). Whatever parses must print,
 * re-parse to the same message, and upgrade without crashing; errors must be clean. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "caffe.pb-c.h"
#include "textformat.h"
#include "upgrade.h"

static void must(int cond) {
  if (!cond) abort(); /* a broken invariant is a finding */
}

static void check_roundtrip(const ProtobufCMessage *m) {
  char *txt = nr_text_to_string(m);
  if (!txt) return;
  ProtobufCMessage *m2 = NULL;
  nr_error err;
  must(nr_text_parse(txt, strlen(txt), "printed", m->descriptor, &m2, &err) == NR_OK);
  size_t a = protobuf_c_message_get_packed_size(m), b = protobuf_c_message_get_packed_size(m2);
  must(a == b);
  uint8_t *pa = malloc(a + 1), *pb = malloc(b + 1);
  if (pa && pb) {
    protobuf_c_message_pack(m, pa);
    protobuf_c_message_pack(m2, pb);
    /* NaN payloads print as "nan": compare everything else bytewise */
    if (!strstr(txt, "nan")) must(memcmp(pa, pb, a) == 0);
  }
  free(pa);
  free(pb);
  free(txt);
  nr_text_free(m2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nr_error err;
  ProtobufCMessage *m = NULL;
  if (nr_text_parse((const char *)data, size, "fuzz", &caffe__net_parameter__descriptor, &m,
                    &err) == NR_OK) {
    check_roundtrip(m);
    int changed = 0;
    if (nr_upgrade_net((Caffe__NetParameter *)m, &changed, &err) == NR_OK) check_roundtrip(m);
    nr_text_free(m);
  } else {
    must(err.msg[0] != 0);
  }
  m = NULL;
  if (nr_text_parse((const char *)data, size, "fuzz", &caffe__solver_parameter__descriptor, &m,
                    &err) == NR_OK) {
    int changed = 0;
    if (nr_upgrade_solver((Caffe__SolverParameter *)m, &changed, &err) == NR_OK) check_roundtrip(m);
    nr_text_free(m);
  }
  return 0;
}
