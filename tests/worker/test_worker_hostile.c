/* A hostile or buggy worker: tests/worker/fake_worker.c (NR_FAKE_MODE picks the
 * misbehaviour) sends the core malformed replies — oversized shapes, negative dims, too
 * many axes, out-of-range indices and kinds, garbage msgpack, a huge declared array or
 * map, a length past the control block, bytes after the message, an unknown opcode, bad
 * nested requests. Each must end in a clean NR_ERR_WORKER naming the layer and what was
 * wrong; the worker is killed and reaped; later calls repeat the first failure; no process,
 * descriptor or /dev/shm entry is left. Valid-but-odd replies (an exception with empty
 * strings, a nested request over --py-max-blob-bytes) are a Python error as usual.
 * Also: after a prefetched data layer's worker died with no restart left, later forwards
 * repeat the original death (never "pid 0"). */
#include <sys/stat.h>

#include "nr_test.h"
#include "wk.h"

static int shm0, fds0;

typedef struct hcase {
  const char *mode;
  nr_status want;
  const char *contains[3];
} hcase;

/* setup, reshape, forward of one Python layer 'hostile' (1 bottom, 1 top) on the fake
 * worker; the status of the first failure, its message in err; then a second forward
 * must fail at once repeating it. */
static nr_status run_case(const hcase *hc, nr_error *err, nr_status *again, nr_error *e2,
                          pid_t *pid_after) {
  *again = NR_OK;
  e2->msg[0] = '\0';
  *pid_after = -1;
  setenv("NR_FAKE_MODE", hc->mode, 1);
  nr_pool *p = NULL;
  nr_pool_opts o = {1, 20, 0, NR_FAKE_WORKER, NULL, 0, 1 << 20 /* 1 MiB */, NULL, NULL};
  nr_status s = nr_pool_create(&o, &p, err);
  if (s != NR_OK) return s;
  nr_layer_ctx ctx = {0};
  int64_t iter = 3;
  ctx.alloc = nr_pool_allocator(p);
  ctx.py = nr_pool_backend(p);
  ctx.iter = &iter;
  ctx.source_dir = ".";
  nr_blob *bot = NULL, *top = NULL;
  nr_blob_create("in", ctx.alloc, &bot, err);
  nr_blob_create("out", ctx.alloc, &top, err);
  nr_blob_reshape4(bot, 2, 1, 2, 2, err);
  nr_blob_reshape4(top, 2, 1, 2, 2, err);
  Caffe__LayerParameter lp;
  Caffe__PythonParameter pp;
  caffe__layer_parameter__init(&lp);
  caffe__python_parameter__init(&pp);
  lp.name = (char *)"hostile";
  lp.type = (char *)"Python";
  pp.module = (char *)"m";
  pp.layer = (char *)"L";
  pp.param_str = (char *)"";
  lp.python_param = &pp;
  nr_layer *l = NULL;
  s = nr_layer_create(&lp, &ctx, &bot, 1, &top, 1, &l, err);
  if (s == NR_OK) s = nr_layer_setup(l, err);
  if (s == NR_OK) s = l->type->reshape(l, err);
  if (s == NR_OK) s = l->type->forward(l, err);
  if (s == NR_ERR_WORKER && l) { /* later calls fail at once, repeating the first failure */
    *pid_after = nr_pool_worker_pid(p, 0);
    *again = l->type->forward(l, e2);
  }
  nr_layer_destroy(l);
  nr_blob_destroy(bot);
  nr_blob_destroy(top);
  nr_pool_destroy(p);
  return s;
}

static void leak_check(void) {
  CHECK_INT_EQ(wk_children(), 0);
  CHECK_INT_EQ(wk_shm_entries(), shm0);
  CHECK_INT_EQ(wk_open_fds(), fds0);
}

static void test_malformed_replies(void) {
  const char *inv = "sent an invalid reply";
  hcase cases[] = {
      {"ok", NR_OK, {NULL}},
      {"hello-badop", NR_ERR_WORKER, {"layer 'hostile'", inv, "instead of its hello"}},
      {"hello-garbage", NR_ERR_WORKER, {"layer 'hostile'", inv, "start failure reply"}},
      {"bigshape", NR_ERR_WORKER, {"m.L.forward (layer 'hostile'", inv, "--py-max-blob-bytes"}},
      {"negdim", NR_ERR_WORKER, {"layer 'hostile'", inv, "valid numbers"}},
      {"manyaxes", NR_ERR_WORKER, {"layer 'hostile'", inv, "valid numbers"}},
      {"badindex", NR_ERR_WORKER, {"layer 'hostile'", inv, "top 5, which the layer does not have"}},
      {"badkind", NR_ERR_WORKER, {"layer 'hostile'", inv, "valid numbers"}},
      {"garbage", NR_ERR_WORKER, {"layer 'hostile'", inv, "not one well-formed msgpack object"}},
      {"hugearray", NR_ERR_WORKER, {"layer 'hostile'", inv, "not one well-formed msgpack object"}},
      {"hugemap", NR_ERR_WORKER, {"layer 'hostile'", inv, "not one well-formed msgpack object"}},
      {"badlen", NR_ERR_WORKER, {"layer 'hostile'", inv, "past the end of the control block"}},
      {"trailing", NR_ERR_WORKER, {"layer 'hostile'", inv, "not one well-formed msgpack object"}},
      /* a 3999-character exception class name is cut, not an invalid reply (it lost the
       * layer's message) */
      {"longtype", NR_ERR_PYTHON, {"m.L.forward (layer 'hostile'", "raised ", "..."}},
      {"badop", NR_ERR_WORKER, {"layer 'hostile'", inv, "opcode 12345"}},
      {"grow-badindex", NR_ERR_WORKER, {"layer 'hostile'", inv, "a blob the layer does not have"}},
      {"grow-garbage", NR_ERR_WORKER, {"layer 'hostile'", inv, "not one well-formed msgpack"}},
      {"die", NR_ERR_WORKER, {"layer 'hostile'", "exited with status 7"}},
      /* valid replies: a Python error, the worker lives on */
      {"emptystr",
       NR_ERR_PYTHON,
       {"m.L.forward (layer 'hostile', phase TRAIN, iteration 3) raised Exception: "}},
      {"grow-huge",
       NR_ERR_PYTHON,
       {"raised ValueError", "blob 'out' of 4398046511104 bytes is too large",
        "--py-max-blob-bytes"}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    nr_error err;
    err.msg[0] = '\0';
    nr_error e2;
    nr_status again;
    pid_t pid_after;
    nr_status s = run_case(&cases[i], &err, &again, &e2, &pid_after);
    if (s != cases[i].want || getenv("NR_SHOW"))
      fprintf(stderr, "  mode %s: %d %s\n    again: %s\n", cases[i].mode, (int)s, err.msg, e2.msg);
    CHECK_INT_EQ(s, cases[i].want);
    for (int k = 0; k < 3 && cases[i].contains[k]; k++)
      CHECK_CONTAINS(err.msg, cases[i].contains[k]);
    if (s == NR_ERR_WORKER) {
      CHECK_INT_EQ(pid_after, 0); /* killed, reaped and closed */
      CHECK_INT_EQ(again, NR_ERR_WORKER);
      CHECK_CONTAINS(e2.msg, "died earlier in this run");
      for (int k = 0; k < 3 && cases[i].contains[k]; k++)
        CHECK_CONTAINS(e2.msg, cases[i].contains[k]);
      CHECK(!strstr(e2.msg, "pid 0"));
    }
    leak_check();
  }
}

/* A prefetched data layer (no bottoms) whose worker dies: the forward that needs the lost
 * batch reports the death; later forwards repeat it instead of "pid 0". */
static void test_data_layer_death_repeats(void) {
  setenv("NR_FAKE_MODE", "die", 1);
  nr_error err;
  nr_pool *p = NULL;
  nr_pool_opts o = {1, 20, 0, NR_FAKE_WORKER, NULL, 2, 0, NULL, NULL};
  CHECK_OK(nr_pool_create(&o, &p, &err), &err);
  nr_layer_ctx ctx = {0};
  int64_t iter = 0;
  ctx.alloc = nr_pool_allocator(p);
  ctx.py = nr_pool_backend(p);
  ctx.iter = &iter;
  ctx.source_dir = ".";
  nr_blob *top = NULL;
  CHECK_OK(nr_blob_create("data", ctx.alloc, &top, &err), &err);
  CHECK_OK(nr_blob_reshape4(top, 2, 1, 2, 2, &err), &err);
  Caffe__LayerParameter lp;
  Caffe__PythonParameter pp;
  caffe__layer_parameter__init(&lp);
  caffe__python_parameter__init(&pp);
  lp.name = (char *)"src";
  lp.type = (char *)"Python";
  pp.module = (char *)"m";
  pp.layer = (char *)"Data";
  pp.param_str = (char *)"";
  lp.python_param = &pp;
  nr_layer *l = NULL;
  CHECK_OK(nr_layer_create(&lp, &ctx, NULL, 0, &top, 1, &l, &err), &err);
  CHECK_OK(nr_layer_setup(l, &err), &err);
  nr_status s = l->type->reshape(l, &err);
  if (s == NR_OK) s = l->type->forward(l, &err);
  CHECK_INT_EQ(s, NR_ERR_WORKER);
  CHECK_CONTAINS(err.msg, "m.Data.forward (layer 'src'");
  CHECK_CONTAINS(err.msg, "exited with status 7");
  char first[sizeof err.msg];
  snprintf(first, sizeof first, "%s", err.msg);
  for (int k = 0; k < 2; k++) {
    s = l->type->forward(l, &err);
    CHECK_INT_EQ(s, NR_ERR_WORKER);
    CHECK_CONTAINS(err.msg, "died earlier in this run");
    CHECK_CONTAINS(err.msg, "exited with status 7");
    CHECK(!strstr(err.msg, "pid 0"));
    if (getenv("NR_SHOW")) fprintf(stderr, "  first: %s\n  again: %s\n", first, err.msg);
  }
  nr_layer_destroy(l);
  nr_blob_destroy(top);
  nr_pool_destroy(p);
  leak_check();
}

int main(void) {
  shm0 = wk_shm_entries();
  fds0 = wk_open_fds();
  NR_RUN(test_malformed_replies);
  NR_RUN(test_data_layer_death_repeats);
  return NR_TEST_EXIT();
}
