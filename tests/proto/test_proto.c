/* test_proto.c: the prototxt parser/printer, legacy upgrades and binary readers, checked
 * against Caffe's own files, hand-written legacy/current pairs, a malformed corpus and
 * mangled binaries. Data paths come from argv[1] (Caffe's files, tests/data/caffe) and argv[2]
 * (source dir), or from NR_CAFFE_DATA / NR_SOURCE_DIR. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "binary.h"
#include "caffe.pb-c.h"
#include "load.h"
#include "nr_test.h"
#include "textformat.h"
#include "upgrade.h"

static const char *caffe_dir;
static const char *source_dir;

/* Packs a message; the caller frees. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *n) {
  *n = protobuf_c_message_get_packed_size(m);
  uint8_t *b = malloc(*n + 1);
  protobuf_c_message_pack(m, b);
  return b;
}

static int same_message(const ProtobufCMessage *a, const ProtobufCMessage *b) {
  size_t na, nb;
  uint8_t *pa = pack(a, &na), *pb = pack(b, &nb);
  int same = na == nb && memcmp(pa, pb, na) == 0;
  free(pa);
  free(pb);
  return same;
}

static int is_solver_name(const char *name) { return strstr(name, "solver") != NULL; }

static const ProtobufCMessageDescriptor *desc_for(const char *name) {
  return is_solver_name(name) ? &caffe__solver_parameter__descriptor
                              : &caffe__net_parameter__descriptor;
}

static nr_status upgrade_any(ProtobufCMessage *m, int *changed, nr_error *err) {
  if (m->descriptor == &caffe__solver_parameter__descriptor)
    return nr_upgrade_solver((Caffe__SolverParameter *)m, changed, err);
  return nr_upgrade_net((Caffe__NetParameter *)m, changed, err);
}

static ProtobufCMessage *parse_str(const char *text, const ProtobufCMessageDescriptor *d,
                                   nr_error *err) {
  ProtobufCMessage *m = NULL;
  if (nr_text_parse(text, strlen(text), "test", d, &m, err) != NR_OK) return NULL;
  return m;
}

/* Every Caffe file parses (as a net, or as a solver), prints, and re-parses to the same
 * message; the upgraded message is a fixed point of the upgrader. */
static void test_caffe_files(void) {
  const char *dir = caffe_dir;
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  struct dirent *de;
  int files = 0;
  while ((de = readdir(d))) {
    if (!strstr(de->d_name, ".prototxt")) continue;
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    char *buf;
    size_t len;
    nr_error err;
    CHECK_OK(nr_proto_read_file(path, &buf, &len, &err), &err);
    ProtobufCMessage *m = NULL;
    nr_status s = nr_text_parse(buf, len, path, &caffe__net_parameter__descriptor, &m, &err);
    if (s != NR_OK)
      s = nr_text_parse(buf, len, path, &caffe__solver_parameter__descriptor, &m, &err);
    free(buf);
    if (s != NR_OK) closedir(d);
    CHECK_OK(s, &err);
    char *txt = nr_text_to_string(m);
    ProtobufCMessage *m2 = parse_str(txt, m->descriptor, &err);
    if (!m2) fprintf(stderr, "%s: reparse: %s\n", de->d_name, err.msg);
    int same = m2 && same_message(m, m2);
    nr_text_free(m2);
    free(txt);
    if (!same) {
      nr_text_free(m);
      closedir(d);
    }
    CHECK(same);
    int changed = -1;
    s = upgrade_any(m, &changed, &err);
    if (s != NR_OK) {
      nr_text_free(m);
      closedir(d);
    }
    CHECK_OK(s, &err);
    txt = nr_text_to_string(m);
    m2 = parse_str(txt, m->descriptor, &err);
    free(txt);
    int changed2 = -1;
    if (m2) upgrade_any(m2, &changed2, &err);
    same = m2 && same_message(m, m2) && changed2 == 0;
    if (!same)
      fprintf(stderr, "%s: upgrade is not a fixed point (changed2=%d)\n", de->d_name, changed2);
    nr_text_free(m2);
    nr_text_free(m);
    if (!same) closedir(d);
    CHECK(same);
    files++;
  }
  closedir(d);
  CHECK(files >= 10);
}

/* tests/proto/legacy/X.old.prototxt upgrades to exactly X.new.prototxt. */
static void test_legacy_pairs(void) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/tests/proto/legacy", source_dir);
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  struct dirent *de;
  int pairs = 0, failed = 0;
  while ((de = readdir(d))) {
    char *dot = strstr(de->d_name, ".old.prototxt");
    if (!dot) continue;
    char oldp[8192], newp[8192];
    snprintf(oldp, sizeof oldp, "%s/%s", dir, de->d_name);
    snprintf(newp, sizeof newp, "%s/%.*s.new.prototxt", dir, (int)(dot - de->d_name), de->d_name);
    nr_error err;
    ProtobufCMessage *a = NULL, *b = NULL;
    nr_status s;
    if (is_solver_name(de->d_name)) {
      Caffe__SolverParameter *sa = NULL;
      s = nr_proto_load_solver_text(oldp, &sa, &err);
      a = (ProtobufCMessage *)sa;
      /* load applies Caffe's snapshot_prefix default; the pair files do not carry it */
      if (sa) {
        free(sa->snapshot_prefix);
        sa->snapshot_prefix = NULL;
      }
    } else {
      Caffe__NetParameter *na = NULL;
      s = nr_proto_load_net_text(oldp, &na, &err);
      a = (ProtobufCMessage *)na;
    }
    if (s != NR_OK) {
      fprintf(stderr, "%s: %s\n", oldp, err.msg);
      failed++;
      continue;
    }
    char *buf;
    size_t len;
    int changed = -1;
    if (nr_proto_read_file(newp, &buf, &len, &err) != NR_OK ||
        nr_text_parse(buf, len, newp, desc_for(de->d_name), &b, &err) != NR_OK ||
        upgrade_any(b, &changed, &err) != NR_OK) {
      fprintf(stderr, "%s: %s\n", newp, err.msg);
      failed++;
    } else if (changed != 0 || !same_message(a, b)) {
      char *ta = nr_text_to_string(a), *tb = nr_text_to_string(b);
      fprintf(stderr, "%s: upgrade differs (changed=%d)\n--- upgraded:\n%s--- expected:\n%s",
              de->d_name, changed, ta, tb);
      free(ta);
      free(tb);
      failed++;
    }
    free(buf);
    nr_text_free(a);
    nr_text_free(b);
    pairs++;
  }
  closedir(d);
  CHECK_INT_EQ(failed, 0);
  CHECK(pairs >= 3);
}

/* Each malformed file fails with file:line:column and the expected text. */
static void test_malformed_corpus(void) {
  char dir[4096], table[8192];
  snprintf(dir, sizeof dir, "%s/tests/proto/malformed", source_dir);
  snprintf(table, sizeof table, "%s/EXPECTED", dir);
  FILE *t = fopen(table, "r");
  CHECK(t != NULL);
  char line[2048];
  int n = 0, failed = 0;
  while (fgets(line, sizeof line, t)) {
    if (line[0] == '#' || line[0] == '\n') continue;
    line[strcspn(line, "\n")] = 0;
    char *tab = strchr(line, '\t');
    if (!tab) continue;
    *tab = 0;
    char path[8192], want[8192 + 2048];
    snprintf(path, sizeof path, "%s/%s", dir, line);
    snprintf(want, sizeof want, "%s:%s", path, tab + 1);
    char *buf;
    size_t len;
    nr_error err;
    if (nr_proto_read_file(path, &buf, &len, &err) != NR_OK) {
      fprintf(stderr, "%s\n", err.msg);
      failed++;
      continue;
    }
    ProtobufCMessage *m = NULL;
    const ProtobufCMessageDescriptor *d = strncmp(line, "solver", 6) == 0
                                              ? &caffe__solver_parameter__descriptor
                                              : &caffe__net_parameter__descriptor;
    nr_status s = nr_text_parse(buf, len, path, d, &m, &err);
    free(buf);
    if (s != NR_ERR_INPUT || !strstr(err.msg, want)) {
      fprintf(stderr, "malformed %s: status %d, got \"%s\"\n  wanted \"%s\"\n", line, (int)s,
              s == NR_OK ? "(parsed!)" : err.msg, want);
      failed++;
    }
    nr_text_free(m);
    n++;
  }
  fclose(t);
  CHECK_INT_EQ(failed, 0);
  CHECK(n >= 35);
}

/* The syntax Caffe files use, all in one message. */
static void test_syntax_features(void) {
  const char *text =
      "# comment\n"
      "name: 'a\\'b' \"c\\n\\t\\\\\" 'd\\101\\x42'  # adjacent strings\n"
      "input: [\"x\", 'y'] ; input: \"z\",\n"
      "input_dim: 0x10 input_dim: -7 input_dim: 010\n"
      "force_backward: True\n"
      "debug_info: t\n"
      "state: { phase: 0 level: -3 stage: \"s\" }\n"
      "layer < name: \"l\" type: \"Exp\" exp_param { base: 2 scale: .5 shift: -1e-4 }\n"
      "  loss_weight: [1, 2.5f, -inf, inf, nan, 1e-4] propagate_down: [true, false, 1, 0, f]\n"
      "  phase: TEST >\n"
      "layer { name: \"\\u00e9\" python_param { replicas: 4 } }\n";
  nr_error err;
  Caffe__NetParameter *n =
      (Caffe__NetParameter *)parse_str(text, &caffe__net_parameter__descriptor, &err);
  if (!n) fprintf(stderr, "%s\n", err.msg);
  CHECK(n != NULL);
  CHECK_STR_EQ(n->name, "a'bc\n\t\\dAB");
  CHECK_INT_EQ(n->n_input, 3);
  CHECK_STR_EQ(n->input[2], "z");
  CHECK_INT_EQ(n->n_input_dim, 3);
  CHECK_INT_EQ(n->input_dim[0], 16);
  CHECK_INT_EQ(n->input_dim[1], -7);
  CHECK_INT_EQ(n->input_dim[2], 8);
  CHECK(n->has_force_backward && n->force_backward);
  CHECK(n->has_debug_info && n->debug_info);
  CHECK_INT_EQ(n->state->phase, CAFFE__PHASE__TRAIN);
  CHECK_INT_EQ(n->state->level, -3);
  CHECK_INT_EQ(n->n_layer, 2);
  Caffe__LayerParameter *l = n->layer[0];
  CHECK_NEAR(l->exp_param->base_, 2, 0);
  CHECK_NEAR(l->exp_param->scale, 0.5, 0);
  CHECK_NEAR(l->exp_param->shift, -1e-4, 1e-9);
  CHECK_INT_EQ(l->n_loss_weight, 6);
  CHECK(isinf(l->loss_weight[2]) && l->loss_weight[2] < 0);
  CHECK(isnan(l->loss_weight[4]));
  CHECK_INT_EQ(l->n_propagate_down, 5);
  CHECK_INT_EQ(l->propagate_down[2], 1);
  CHECK_INT_EQ(l->phase, CAFFE__PHASE__TEST);
  CHECK_STR_EQ(n->layer[1]->name, "\xc3\xa9");
  CHECK_INT_EQ(n->layer[1]->python_param->replicas, 4);
  /* printed form: Caffe style, `base` without the underscore, re-parses identically */
  char *txt = nr_text_to_string(&n->base);
  CHECK(txt != NULL);
  CHECK_CONTAINS(txt, "  exp_param {\n    base: 2\n    scale: 0.5\n    shift: -0.0001\n  }\n");
  CHECK_CONTAINS(txt, "name: \"a\\'bc\\n\\t\\\\dAB\"\n");
  CHECK_CONTAINS(txt, "  phase: TEST\n");
  ProtobufCMessage *n2 = parse_str(txt, &caffe__net_parameter__descriptor, &err);
  free(txt);
  CHECK(n2 != NULL);
  int same = same_message(&n->base, n2);
  nr_text_free(n2);
  nr_text_free(&n->base);
  CHECK(same);
}

/* Float printing is the shortest form that reads back to the same float. */
static void test_float_printing(void) {
  nr_error err;
  const char *text =
      "layer { loss_weight: [0.1, 1e-8, 0.999, 3.4028235e38, 1.17549435e-38, 0.00390625, "
      "100000000, -0] }";
  Caffe__NetParameter *n =
      (Caffe__NetParameter *)parse_str(text, &caffe__net_parameter__descriptor, &err);
  CHECK(n != NULL);
  char *txt = nr_text_to_string(&n->base);
  CHECK_CONTAINS(txt, "loss_weight: 0.1\n");
  CHECK_CONTAINS(txt, "loss_weight: 1e-08\n");
  CHECK_CONTAINS(txt, "loss_weight: 0.999\n");
  CHECK_CONTAINS(txt, "loss_weight: 0.00390625\n");
  CHECK_CONTAINS(txt, "loss_weight: 1e+08\n");
  CHECK_CONTAINS(txt, "loss_weight: -0\n");
  ProtobufCMessage *n2 = parse_str(txt, &caffe__net_parameter__descriptor, &err);
  free(txt);
  int same = n2 && same_message(&n->base, n2);
  nr_text_free(n2);
  nr_text_free(&n->base);
  CHECK(same);
}

/* Nesting far beyond the schema, and the library never crashes on it. */
static void test_deep_nesting(void) {
  size_t depth = 5000;
  char *t = malloc(depth * 8 + 1);
  size_t k = 0;
  for (size_t i = 0; i < depth; i++) k += (size_t)sprintf(t + k, "layer { ");
  nr_error err;
  ProtobufCMessage *m = NULL;
  nr_status s = nr_text_parse(t, k, "deep.prototxt", &caffe__net_parameter__descriptor, &m, &err);
  free(t);
  CHECK_INT_EQ(s, NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "deep.prototxt:1:9: unknown field 'layer' in caffe.LayerParameter");
}

static const char *small_model =
    "name: \"tiny\"\n"
    "layer { name: \"data\" type: \"Input\" top: \"data\" input_param { shape { dim: 1 dim: 3 } } "
    "}\n"
    "layer { name: \"ip\" type: \"InnerProduct\" bottom: \"data\" top: \"ip\"\n"
    "  param { lr_mult: 1 } param { lr_mult: 2 }\n"
    "  inner_product_param { num_output: 2 weight_filler { type: \"xavier\" } }\n"
    "  blobs { shape { dim: 2 dim: 3 } data: [1, 2, 3, 4, 5, 6] }\n"
    "  blobs { shape { dim: 2 } data: [0.5, -0.5] }\n"
    "}\n";

static char *temp_path(const char *suffix) {
  char *p = malloc(256);
  snprintf(p, 256, "/tmp/nr_test_proto_%ld%s", (long)getpid(), suffix);
  return p;
}

/* text -> message -> .caffemodel -> message gives the same message. */
static void test_binary_roundtrip(void) {
  nr_error err;
  ProtobufCMessage *m = parse_str(small_model, &caffe__net_parameter__descriptor, &err);
  CHECK(m != NULL);
  char *path = temp_path(".caffemodel");
  CHECK_OK(nr_proto_save_binary(path, m, &err), &err);
  Caffe__NetParameter *back = NULL;
  nr_status s = nr_proto_load_net_binary(path, &back, &err);
  unlink(path);
  free(path);
  CHECK_OK(s, &err);
  int same = same_message(m, &back->base);
  CHECK_INT_EQ(back->layer[1]->blobs[0]->n_data, 6);
  nr_text_free(&back->base);
  nr_text_free(m);
  CHECK(same);
  /* missing file */
  s = nr_proto_load_net_binary("/nonexistent/x.caffemodel", &back, &err);
  CHECK_INT_EQ(s, NR_ERR_IO);
  CHECK_CONTAINS(err.msg, "/nonexistent/x.caffemodel");
}

/* Every strict prefix of a model either is itself a valid message (it ends on a field
 * boundary) or gives a clean "truncated"/"corrupt" error with a byte offset. */
static void test_truncation(void) {
  nr_error err;
  ProtobufCMessage *m = parse_str(small_model, &caffe__net_parameter__descriptor, &err);
  CHECK(m != NULL);
  size_t n;
  uint8_t *b = pack(m, &n);
  nr_text_free(m);
  int errors = 0, bad = 0;
  for (size_t len = 0; len < n; len++) {
    uint8_t *cp = malloc(len ? len : 1); /* exact size so ASan sees any over-read */
    memcpy(cp, b, len);
    ProtobufCMessage *out = NULL;
    nr_status s =
        nr_proto_unpack(cp, len, "model.caffemodel", &caffe__net_parameter__descriptor, &out, &err);
    if (s == NR_OK) {
      protobuf_c_message_free_unpacked(out, NULL);
    } else {
      errors++;
      if (s != NR_ERR_INPUT || !strstr(err.msg, "model.caffemodel: ") ||
          !strstr(err.msg, " at byte ")) {
        fprintf(stderr, "prefix %zu: %s\n", len, err.msg);
        bad++;
      }
    }
    free(cp);
  }
  /* the message from the spec: a length that overruns the buffer */
  uint8_t trunc[] = {0xa2, 0x06, 0x88, 0x27, 0x0a};
  nr_status s = nr_proto_unpack(trunc, sizeof trunc, "model.caffemodel",
                                &caffe__net_parameter__descriptor, (ProtobufCMessage **)&m, &err);
  free(b);
  CHECK_INT_EQ(s, NR_ERR_INPUT);
  CHECK_CONTAINS(
      err.msg,
      "model.caffemodel: truncated at byte 2 (field 100 length 5000 exceeds the 1 bytes left)");
  CHECK_INT_EQ(bad, 0);
  CHECK(errors > (int)n / 2);
}

/* Random byte flips never crash; whatever validates also unpacks. */
static void test_byte_flips(void) {
  nr_error err;
  ProtobufCMessage *m = parse_str(small_model, &caffe__net_parameter__descriptor, &err);
  CHECK(m != NULL);
  size_t n;
  uint8_t *b = pack(m, &n);
  nr_text_free(m);
  uint32_t seed = 12345;
  int ok = 0, rejected = 0;
  for (int iter = 0; iter < 3000; iter++) {
    uint8_t *cp = malloc(n);
    memcpy(cp, b, n);
    int flips = 1 + iter % 4;
    for (int k = 0; k < flips; k++) {
      seed = seed * 1103515245u + 12345u;
      size_t at = (seed >> 8) % n;
      seed = seed * 1103515245u + 12345u;
      cp[at] ^= (uint8_t)(1u << ((seed >> 16) % 8));
    }
    ProtobufCMessage *out = NULL;
    nr_status s = nr_proto_unpack(cp, n, "flip", &caffe__net_parameter__descriptor, &out, &err);
    if (s == NR_OK) {
      ok++;
      /* an upgrade of arbitrary (valid) content must not crash either */
      int changed;
      nr_upgrade_net((Caffe__NetParameter *)out, &changed, &err);
      protobuf_c_message_free_unpacked(out, NULL);
    } else {
      rejected++;
      if (s != NR_ERR_INPUT) {
        free(cp);
        free(b);
      }
      CHECK_INT_EQ(s, NR_ERR_INPUT);
    }
    free(cp);
  }
  free(b);
  CHECK(ok > 0 && rejected > 0);
}

static void test_blob_helpers(void) {
  nr_error err;
  const char *t =
      "layer { name: \"l\" blobs { num: 1 channels: 1 height: 1 width: 3 double_data: [1.5, 2.5, "
      "3.5] }\n"
      "        blobs { shape { dim: 2 dim: 2 } data: [1, 2, 3, 4] } }";
  Caffe__NetParameter *n =
      (Caffe__NetParameter *)parse_str(t, &caffe__net_parameter__descriptor, &err);
  CHECK(n != NULL);
  Caffe__BlobProto *legacy = n->layer[0]->blobs[0], *modern = n->layer[0]->blobs[1];
  int64_t dims[NR_BLOB_MAX_AXES];
  int na = 0;
  CHECK_OK(nr_blobproto_shape(legacy, dims, &na, &err), &err);
  CHECK_INT_EQ(na, 4);
  CHECK_INT_EQ(dims[3], 3);
  int64_t want1[] = {3}, want2[] = {2, 2}, want3[] = {1, 3};
  CHECK(nr_blobproto_shape_compatible(legacy, want1, 1));
  CHECK(nr_blobproto_shape_compatible(legacy, want3, 2));
  CHECK(!nr_blobproto_shape_compatible(legacy, want2, 2));
  CHECK(nr_blobproto_shape_compatible(modern, want2, 2));
  CHECK(!nr_blobproto_shape_compatible(modern, want1, 1));
  CHECK_INT_EQ(nr_blobproto_count(legacy, 0), 3);
  float f[4];
  CHECK_OK(nr_blobproto_get_floats(legacy, 0, f, 3, &err), &err);
  CHECK_NEAR(f[2], 3.5, 0);
  CHECK_INT_EQ(nr_blobproto_get_floats(modern, 0, f, 3, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "has 4 values, expected 3");
  /* the upgrade turns legacy dims into a shape, still compatible with [3] */
  int changed = 0;
  CHECK_OK(nr_upgrade_net(n, &changed, &err), &err);
  CHECK_INT_EQ(changed, 1);
  CHECK(legacy->shape && legacy->shape->n_dim == 4 && !legacy->has_num);
  CHECK(nr_blobproto_shape_compatible(legacy, want1, 1));
  nr_text_free(&n->base);
}

static void test_upgrade_errors(void) {
  nr_error err;
  const char *both = "layer { name: \"a\" } layers { name: \"b\" type: RELU }";
  ProtobufCMessage *m = parse_str(both, &caffe__net_parameter__descriptor, &err);
  CHECK(m != NULL);
  nr_status s = nr_upgrade_net((Caffe__NetParameter *)m, NULL, &err);
  nr_text_free(m);
  CHECK_INT_EQ(s, NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "both 'layer'");
  m = parse_str("input: \"a\" input_dim: 1 input_dim: 2", &caffe__net_parameter__descriptor, &err);
  s = nr_upgrade_net((Caffe__NetParameter *)m, NULL, &err);
  nr_text_free(m);
  CHECK_INT_EQ(s, NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "need 4 per input");
  m = parse_str("solver_type: ADAM type: \"Adam\"", &caffe__solver_parameter__descriptor, &err);
  s = nr_upgrade_solver((Caffe__SolverParameter *)m, NULL, &err);
  nr_text_free(m);
  CHECK_INT_EQ(s, NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "both");
  m = parse_str("layers { layer { name: \"x\" type: \"warp\" } }",
                &caffe__net_parameter__descriptor, &err);
  s = nr_upgrade_net((Caffe__NetParameter *)m, NULL, &err);
  nr_text_free(m);
  CHECK_INT_EQ(s, NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "unknown type 'warp'");
}

/* `netrun upgrade`: decides net vs solver, prints current-format text. */
static void test_upgrade_text_file(void) {
  char in[8192];
  nr_error err;
  snprintf(in, sizeof in, "%s/tests/proto/legacy/solver_type.old.prototxt", source_dir);
  char *outp = temp_path(".txt");
  FILE *f = fopen(outp, "w+");
  CHECK(f != NULL);
  nr_status s = nr_upgrade_text_file(in, f, &err);
  fclose(f);
  CHECK_OK(s, &err);
  char *buf;
  size_t len;
  CHECK_OK(nr_proto_read_file(outp, &buf, &len, &err), &err);
  CHECK_CONTAINS(buf, "type: \"Nesterov\"\n");
  CHECK(!strstr(buf, "solver_type"));
  free(buf);
  snprintf(in, sizeof in, "%s/tests/proto/legacy/v1_lenet.old.prototxt", source_dir);
  f = fopen(outp, "w+");
  s = nr_upgrade_text_file(in, f, &err);
  fclose(f);
  CHECK_OK(s, &err);
  CHECK_OK(nr_proto_read_file(outp, &buf, &len, &err), &err);
  CHECK_CONTAINS(buf, "layer {\n  name: \"mnist\"\n  type: \"Data\"\n");
  free(buf);
  f = fopen(outp, "w+");
  snprintf(in, sizeof in, "%s/tests/proto/malformed/unknown_top_field.prototxt", source_dir);
  s = nr_upgrade_text_file(in, f, &err);
  fclose(f);
  unlink(outp);
  free(outp);
  CHECK_INT_EQ(s, NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "neither a net nor a solver");
  CHECK_CONTAINS(err.msg, "caffe.SolverParameter");
}

int main(int argc, char **argv) {
  caffe_dir = argc > 1 ? argv[1] : getenv("NR_CAFFE_DATA");
  source_dir = argc > 2 ? argv[2] : getenv("NR_SOURCE_DIR");
  if (!caffe_dir || !source_dir) {
    fprintf(stderr,
            "usage: test_proto CAFFE_DATA SOURCE_DIR (or set NR_CAFFE_DATA, NR_SOURCE_DIR)\n");
    return 2;
  }
  NR_RUN(test_caffe_files);
  NR_RUN(test_legacy_pairs);
  NR_RUN(test_malformed_corpus);
  NR_RUN(test_syntax_features);
  NR_RUN(test_float_printing);
  NR_RUN(test_deep_nesting);
  NR_RUN(test_binary_roundtrip);
  NR_RUN(test_truncation);
  NR_RUN(test_byte_flips);
  NR_RUN(test_blob_helpers);
  NR_RUN(test_upgrade_errors);
  NR_RUN(test_upgrade_text_file);
  return NR_TEST_EXIT();
}
