/* gen_worker_request_corpus.c: writes the seed corpus of fuzz_worker_request — layer
 * lifecycles as the pool (ipc/pool_call.c) drives them (create + blobs at setup, reshape,
 * forward, backward, release) over the layers of fuzz_worker_layers.py, and the bad requests the
 * worker must refuse. Input format: see fuzz_worker_request.c.
 *   cc -I ipc -I tests/fuzz tests/fuzz/gen_worker_request_corpus.c $(pkg-config --cflags --libs
 * msgpack) -o gen
 *   ./gen tests/fuzz/corpus/fuzz_worker_request */
#include <stdio.h>

#include "wire_pack.h"

/* opcode index as in fuzz_worker_request.c's ops[] */
enum { CALL = 0, RELEASE = 3, NESTED_OK = 4, UNKNOWN = 7 };
enum { SETUP, RESHAPE, FORWARD, BACKWARD };
/* segments byte */
enum { ANNOUNCE_MORE = 4, ANNOUNCE_NONE = 8, LEN_PAST_BLOCK = 16 };

static const char *dir;
static int nfile;
static FILE *out;
static msgpack_sbuffer sb;
static msgpack_packer pk;

static void begin(const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/seed-%02d-%s", dir, nfile++, name);
  if (!(out = fopen(path, "wb"))) perror(path);
}

static void end(void) {
  if (out) fclose(out);
  out = NULL;
}

/* One request: the header (segs: count | flags; segment 0 holds s0 * 64 bytes, the others
 * s1 * 64; nested: 2 bits per nested answer) and the payload packed into sb so far. */
static void request(int op, int layer, int method, int nprop, int segs, int s0, int s1,
                    int nested) {
  unsigned char h[13] = {(unsigned char)op, (unsigned char)layer, (unsigned char)method,
                         (unsigned char)(nprop & 255), (unsigned char)(nprop >> 8), 0xff,
                         (unsigned char)segs, (unsigned char)s0, (unsigned char)s1,
                         (unsigned char)s1,
                         (unsigned char)nested, (unsigned char)(sb.size & 255),
                         (unsigned char)(sb.size >> 8)};
  if (out) {
    fwrite(h, 1, sizeof h, out);
    fwrite(sb.data, 1, sb.size, out);
  }
  msgpack_sbuffer_clear(&sb);
}

/* "create": [name, module, class, param_str, source_dir, phase, nbottom, ntop, aliases] */
static void pack_create(const char *cls, const char *param_str, int nbottom, int ntop,
                        int inplace) {
  pack_str(&pk, "create");
  msgpack_pack_array(&pk, 9);
  pack_str(&pk, cls);
  pack_str(&pk, "fuzz_worker_layers");
  pack_str(&pk, cls);
  pack_str(&pk, param_str);
  pack_str(&pk, "");
  msgpack_pack_int(&pk, 0);
  msgpack_pack_int(&pk, nbottom);
  msgpack_pack_int(&pk, ntop);
  msgpack_pack_array(&pk, (size_t)ntop);
  for (int i = 0; i < ntop; i++) msgpack_pack_int(&pk, inplace && i < nbottom ? i : -1);
}

static const int64_t d44[] = {4, 4}, d23[] = {2, 3}, d8[] = {8}, d0[] = {0};

/* Setup of layer `layer` (class cls) with bottom 0 in segment 1 (4x4, 2 * 64 bytes) and
 * top 0 in segment 2 when top_seg (4x4), else an empty top (grown on reshape). */
static void setup(int layer, const char *cls, const char *param_str, bool top_seg,
                  int nested) {
  msgpack_pack_map(&pk, 2);
  pack_create(cls, param_str, 1, 1, 0);
  pack_str(&pk, "blobs");
  msgpack_pack_array(&pk, 2);
  pack_desc(&pk, NR_SLOT_BOTTOM, 0, 1, 16, 2, d44);
  if (top_seg) pack_desc(&pk, NR_SLOT_TOP, 0, 2, 16, 2, d44);
  else pack_desc(&pk, NR_SLOT_TOP, 0, 0, 0, 1, d0); /* empty: no memory yet */
  request(CALL, layer, SETUP, 0, 2, 2, 2, nested);
}

/* reshape, forward, backward (propagate_down for 1 bottom), with nested answers */
static void run(int layer, int nested) {
  request(CALL, layer, RESHAPE, 0, 0, 0, 0, nested);
  request(CALL, layer, FORWARD, 0, 0, 0, 0, nested);
  request(CALL, layer, BACKWARD, 1, 0, 0, 0, nested);
}

static void lifecycle(const char *name, const char *cls, const char *param_str, bool top_seg,
                      int nested) {
  begin(name);
  setup(1, cls, param_str, top_seg, nested);
  run(1, nested);
  request(RELEASE, 1, 0, 0, 0, 0, 0, 0);
  end();
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  dir = argv[1];
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

  /* nested answers: 0x00 all granted, 0x55 all refused, 0xaa unknown segment, 0xff short */
  lifecycle("identity", "Identity", "", true, 0);
  lifecycle("identity-grow", "Identity", "", false, 0);
  lifecycle("scale", "Scale", "3", false, 0);
  lifecycle("scale-refused", "Scale", "3", false, 0x55);
  lifecycle("scale-unknown-segment", "Scale", "5", false, 0xaa);
  lifecycle("scale-short-segment", "Scale", "2", false, 0xff);
  lifecycle("params", "Params", "2", false, 0);
  lifecycle("params-mixed", "Params", "3", false, 0x1b);
  lifecycle("raise", "Raise", "", true, 0);
  lifecycle("raise-grow", "Raise", "", false, 0);

  /* a blob kept past its layer's release, grown by another layer */
  begin("keep-released");
  setup(1, "Keep", "", false, 0);
  setup(2, "Keep", "", false, 0);
  request(RELEASE, 1, 0, 0, 0, 0, 0, 0);
  request(CALL, 2, FORWARD, 0, 0, 0, 0, 0);
  end();

  /* in-place top (alias of bottom 0), parameters the core already has, a forget list and
   * a prefetched data layer's winfo */
  begin("inplace-params-forget-winfo");
  msgpack_pack_map(&pk, 4);
  pack_create("Identity", "", 1, 1, 1);
  pack_str(&pk, "winfo");
  msgpack_pack_array(&pk, 3);
  msgpack_pack_int(&pk, 1);
  msgpack_pack_int(&pk, 2);
  msgpack_pack_int(&pk, 9);
  pack_str(&pk, "forget");
  msgpack_pack_array(&pk, 1);
  msgpack_pack_uint32(&pk, 3);
  pack_str(&pk, "blobs");
  msgpack_pack_array(&pk, 3);
  pack_desc(&pk, NR_SLOT_BOTTOM, 0, 1, 16, 2, d44);
  pack_desc(&pk, NR_SLOT_PARAM, 0, 2, 8, 1, d8);
  pack_desc(&pk, NR_SLOT_PARAM, 1, 0, 0, 1, d0);
  request(CALL, 1, SETUP, 0, 3, 2, 1, 0);
  run(1, 0);
  end();

  /* requests the worker refuses, after a good setup of layer 1 */
  static const struct {
    const char *name;
    int op, layer, method, nprop, segs;
    int bad_blob; /* 0 none, 1 cap past segment, 2 unknown segment, 3 shape past cap */
  } bad[] = {
      {"bad-method", CALL, 1, 9, 0, 0, 0},
      {"bad-nprop", CALL, 1, BACKWARD, 300, 0, 0},
      {"bad-len", CALL, 1, FORWARD, 0, LEN_PAST_BLOCK, 0},
      {"bad-missing-fd", CALL, 1, FORWARD, 0, 1 | ANNOUNCE_MORE, 0},
      {"bad-unannounced-fd", CALL, 1, FORWARD, 0, 2 | ANNOUNCE_NONE, 0},
      {"bad-unknown-layer", CALL, 7, FORWARD, 0, 0, 0},
      {"bad-release-unknown", RELEASE, 7, 0, 0, 0, 0},
      {"bad-opcode", UNKNOWN, 1, 0, 0, 0, 0},
      {"bad-nested-out-of-turn", NESTED_OK, 1, 0, 0, 0, 0},
      {"bad-cap-past-segment", CALL, 1, RESHAPE, 0, 1, 1},
      {"bad-unknown-segment", CALL, 1, RESHAPE, 0, 0, 2},
      {"bad-shape-past-cap", CALL, 1, RESHAPE, 0, 0, 3},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    begin(bad[i].name);
    setup(1, "Identity", "", true, 0);
    if (bad[i].bad_blob) {
      msgpack_pack_map(&pk, 1);
      pack_str(&pk, "blobs");
      msgpack_pack_array(&pk, 1);
      if (bad[i].bad_blob == 1) pack_desc(&pk, NR_SLOT_TOP, 0, 1, 64, 2, d23);
      if (bad[i].bad_blob == 2) pack_desc(&pk, NR_SLOT_TOP, 0, 99, 16, 2, d23);
      if (bad[i].bad_blob == 3) pack_desc(&pk, NR_SLOT_TOP, 0, 2, 4, 2, d23);
    }
    request(bad[i].op, bad[i].layer, bad[i].method, bad[i].nprop, bad[i].segs, 1, 1, 0);
    request(CALL, 1, FORWARD, 0, 0, 0, 0, 0); /* still works */
    end();
  }
  begin("bad-create-twice");
  setup(1, "Identity", "", true, 0);
  setup(1, "Identity", "", true, 0);
  end();

  msgpack_sbuffer_destroy(&sb);
  printf("%d files in %s\n", nfile, dir);
  return 0;
}
