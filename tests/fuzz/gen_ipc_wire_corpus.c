/* gen_ipc_wire_corpus.c: writes the seed corpus of fuzz_ipc_wire — real messages encoded
 * the way ipc/wire.c encodes them (core -> worker and worker -> core),
 * each file = one opcode byte (index into fuzz_ipc_wire.c's ops[]) + the payload.
 *   cc -I ipc -I tests/fuzz tests/fuzz/gen_ipc_wire_corpus.c $(pkg-config --cflags --libs msgpack)
 * -o gen
 *   ./gen tests/fuzz/corpus/fuzz_ipc_wire */
#include <stdio.h>

#include "wire_pack.h"

static const char *dir;
static int nfile;
/* op index as in fuzz_ipc_wire.c */
enum { HELLO, OK, ERROR, GROW, ADD_PARAM, CALL, NESTED_OK, NESTED_ERR };

static void emit(int op, msgpack_sbuffer *sb, const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/seed-%02d-%s", dir, nfile++, name);
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    return;
  }
  fputc(op, f);
  fwrite(sb->data, 1, sb->size, f);
  fclose(f);
  msgpack_sbuffer_clear(sb);
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  dir = argv[1];
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  const int64_t d4[] = {64, 1, 28, 28}, d2[] = {64, 10}, d1[] = {10};

  /* core -> worker: the first call of a layer (create + blobs), with a forget list */
  msgpack_pack_map(&pk, 3);
  pack_str(&pk, "forget");
  msgpack_pack_array(&pk, 2);
  msgpack_pack_uint32(&pk, 7);
  msgpack_pack_uint32(&pk, 9);
  pack_str(&pk, "create");
  msgpack_pack_array(&pk, 9);
  pack_str(&pk, "py_ip");
  pack_str(&pk, "mylayers");
  pack_str(&pk, "InnerProduct");
  pack_str(&pk, "{'num_output': 10}");
  pack_str(&pk, "/home/user/net");
  msgpack_pack_int(&pk, 0);
  msgpack_pack_int(&pk, 1);
  msgpack_pack_int(&pk, 2);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_int(&pk, -1);
  msgpack_pack_int(&pk, 0);
  pack_str(&pk, "blobs");
  msgpack_pack_array(&pk, 3);
  pack_desc(&pk, NR_SLOT_BOTTOM, 0, 3, 200704, 4, d4);
  pack_desc(&pk, NR_SLOT_TOP, 0, 4, 2560, 2, d2);
  pack_desc(&pk, NR_SLOT_PARAM, 0, 0, 0, 0, d1);
  emit(CALL, &sb, "call-create");
  /* a reshape: only blobs */
  msgpack_pack_map(&pk, 1);
  pack_str(&pk, "blobs");
  msgpack_pack_array(&pk, 1);
  pack_desc(&pk, NR_SLOT_TOP, 1, 5, 40, 1, d1);
  emit(CALL, &sb, "call-blobs");
  emit(CALL, &sb, "call-empty");
  /* the first call of a replicated, prefetched data layer: create + winfo */
  msgpack_pack_map(&pk, 2);
  pack_str(&pk, "create");
  msgpack_pack_array(&pk, 9);
  pack_str(&pk, "data");
  pack_str(&pk, "mydata");
  pack_str(&pk, "Loader");
  pack_str(&pk, "");
  pack_str(&pk, "");
  msgpack_pack_int(&pk, 0);
  msgpack_pack_int(&pk, 0);
  msgpack_pack_int(&pk, 2);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_int(&pk, -1);
  msgpack_pack_int(&pk, -1);
  pack_str(&pk, "winfo");
  msgpack_pack_array(&pk, 3);
  msgpack_pack_int(&pk, 1);
  msgpack_pack_int(&pk, 4);
  msgpack_pack_int64(&pk, 17);
  emit(CALL, &sb, "call-create-winfo");
  /* answers to nested requests */
  msgpack_pack_array(&pk, 2);
  msgpack_pack_uint32(&pk, 12);
  msgpack_pack_int64(&pk, 4096);
  emit(NESTED_OK, &sb, "nested-ok");
  msgpack_pack_array(&pk, 2);
  msgpack_pack_int(&pk, 1);
  pack_str(&pk, "out of memory");
  emit(NESTED_ERR, &sb, "nested-err");

  /* worker -> core */
  emit(HELLO, &sb, "hello");
  msgpack_pack_map(&pk, 1);
  pack_str(&pk, "shapes");
  msgpack_pack_array(&pk, 2);
  pack_shape(&pk, NR_SLOT_TOP, 0, 2, d2);
  pack_shape(&pk, NR_SLOT_TOP, 1, 0, d1);
  emit(OK, &sb, "ok-shapes");
  emit(OK, &sb, "ok-empty");
  msgpack_pack_map(&pk, 3);
  pack_str(&pk, "type");
  pack_str(&pk, "ValueError");
  pack_str(&pk, "msg");
  pack_str(&pk, "bad shape");
  pack_str(&pk, "tb");
  pack_str(&pk, "Traceback (most recent call last):\n  File \"mylayers.py\", line 3, in forward\n"
                "ValueError: bad shape\n");
  emit(ERROR, &sb, "error");
  msgpack_pack_map(&pk, 2);
  pack_str(&pk, "msg");
  pack_str(&pk, "No module named 'numpy'");
  pack_str(&pk, "tb");
  pack_str(&pk, "");
  emit(0 /* HELLO */, &sb, "hello-error");
  pack_shape(&pk, NR_SLOT_TOP, 0, 4, d4);
  emit(GROW, &sb, "grow");
  pack_shape(&pk, NR_SLOT_PARAM, -1, 1, d1);
  emit(ADD_PARAM, &sb, "add-param");
  msgpack_sbuffer_destroy(&sb);
  printf("%d files in %s\n", nfile, dir);
  return 0;
}
