/* Faults in Python layers: exceptions, crashes, exits, hangs, bad modules, absurd
 * reshapes — in setup, forward and backward. Each case checks the status, the message a
 * user reads, and that nothing leaks (no /dev/shm entry, no process, no descriptor). */
#include <sys/stat.h>

#include "nr_test.h"
#include "wk.h"
#include "wire.h"

static int shm0, fds0;

typedef struct fcase {
  const char *module, *cls, *param_str;
  int nbottom;           /* 1, or 0 for "wrong bottom count" */
  nr_status want;
  const char *contains[4];
} fcase;

/* Runs the case through setup, forward, backward with a fresh pool; returns the status of
 * the first failure and its message in err. */
static nr_status run_case(const fcase *fc, double timeout, nr_error *err) {
  nr_pool *p = NULL;
  nr_pool_opts o = {1, timeout, 0, NULL, NULL, 0, 0, NULL, NULL};
  nr_status s = nr_pool_create(&o, &p, err);
  if (s != NR_OK) return s;
  nr_layer_ctx ctx = {0};
  int64_t iter = 42;
  ctx.alloc = nr_pool_allocator(p);
  ctx.py = nr_pool_backend(p);
  ctx.iter = &iter;
  ctx.source_dir = wk_fixtures();
  nr_blob *bot = NULL, *top = NULL;
  nr_blob_create("in", ctx.alloc, &bot, err);
  nr_blob_create("out", ctx.alloc, &top, err);
  nr_blob_reshape4(bot, 2, 1, 2, 2, err);
  Caffe__LayerParameter lp;
  Caffe__PythonParameter pp;
  caffe__layer_parameter__init(&lp);
  caffe__python_parameter__init(&pp);
  lp.name = (char *)"faulty";
  lp.type = (char *)"Python";
  pp.module = (char *)fc->module;
  pp.layer = (char *)fc->cls;
  pp.param_str = (char *)(fc->param_str ? fc->param_str : "");
  lp.python_param = &pp;
  nr_layer *l = NULL;
  s = nr_layer_create(&lp, &ctx, &bot, fc->nbottom, &top, 1, &l, err);
  if (s == NR_OK) s = nr_layer_setup(l, err);
  if (s == NR_OK) s = l->type->reshape(l, err);
  if (s == NR_OK) s = l->type->forward(l, err);
  if (s == NR_OK) {
    l->prop_down[0] = true;
    s = l->type->backward(l, err);
  }
  if (s == NR_ERR_WORKER && l) { /* its worker is gone: later calls fail fast, clearly */
    nr_error e2;
    nr_status again = l->type->forward(l, &e2);
    if (again != NR_ERR_WORKER || !strstr(e2.msg, "died earlier in this run")) {
      fprintf(stderr, "  call after a worker death: %d %s\n", (int)again, e2.msg);
      s = NR_ERR_INTERNAL;
    }
  }
  nr_layer_destroy(l);
  nr_blob_destroy(bot);
  nr_blob_destroy(top);
  nr_pool_destroy(p);
  return s;
}

static void check_case(const fcase *fc, double timeout) {
  nr_error err;
  err.msg[0] = '\0';
  nr_status s = run_case(fc, timeout, &err);
  if (s != fc->want || getenv("NR_SHOW"))
    fprintf(stderr, "  case %s/%s: %s\n", fc->cls, fc->param_str, err.msg);
  CHECK_INT_EQ(s, fc->want);
  for (int i = 0; i < 4 && fc->contains[i]; i++) CHECK_CONTAINS(err.msg, fc->contains[i]);
  CHECK_INT_EQ(wk_children(), 0);
  CHECK_INT_EQ(wk_shm_entries(), shm0);
  CHECK_INT_EQ(wk_open_fds(), fds0);
}

static const char *methods[] = {"setup", "forward", "backward"};

static void test_raise(void) {
  for (int m = 0; m < 3; m++) {
    char ps[64], want[128], where[128];
    snprintf(ps, sizeof ps, "%s:raise", methods[m]);
    snprintf(want, sizeof want, "ValueError: fixture failure in %s", methods[m]);
    snprintf(where, sizeof where,
             "nr_fx_layers.Fault.%s (layer 'faulty', phase TRAIN, iteration 42)", methods[m]);
    fcase fc = {"nr_fx_layers", "Fault", ps, 1, NR_ERR_PYTHON,
                {where, want, "Traceback (most recent call last)", "nr_fx_layers.py\", line"}};
    check_case(&fc, 0);
  }
}

static void test_segfault(void) {
  for (int m = 0; m < 3; m++) {
    char ps[64], where[128];
    snprintf(ps, sizeof ps, "%s:segv", methods[m]);
    snprintf(where, sizeof where, "nr_fx_layers.Fault.%s (layer 'faulty'", methods[m]);
    fcase fc = {"nr_fx_layers", "Fault", ps, 1, NR_ERR_WORKER,
                {where, "killed by signal SIGSEGV", "Last Python stack", "nr_fx_layers.py"}};
    check_case(&fc, 0);
  }
}

static void test_os_exit(void) {
  for (int m = 0; m < 3; m++) {
    char ps[64], where[128];
    snprintf(ps, sizeof ps, "%s:exit", methods[m]);
    snprintf(where, sizeof where, "nr_fx_layers.Fault.%s", methods[m]);
    fcase fc = {"nr_fx_layers", "Fault", ps, 1, NR_ERR_WORKER, {where, "exited with status 7"}};
    check_case(&fc, 0);
  }
}

static void test_hang_timeout(void) {
  for (int m = 0; m < 3; m++) {
    char ps[64], where[128];
    snprintf(ps, sizeof ps, "%s:hang", methods[m]);
    snprintf(where, sizeof where, "nr_fx_layers.Fault.%s", methods[m]);
    fcase fc = {"nr_fx_layers", "Fault", ps, 1, NR_ERR_WORKER,
                {where, "did not return within 0.5 s (--py-timeout)", "Last Python stack",
                 "in _maybe"}};
    int64_t t0 = nr_wire_now_ns();
    check_case(&fc, 0.5);
    CHECK(nr_wire_now_ns() - t0 < 3000000000LL);
  }
}

static void test_system_exit(void) {
  for (int m = 0; m < 3; m++) {
    char ps[64];
    snprintf(ps, sizeof ps, "%s:sysexit", methods[m]);
    fcase fc = {"nr_fx_layers", "Fault", ps, 1, NR_ERR_PYTHON,
                {"raised SystemExit", "a layer cannot end netrun", "sys.exit(3)"}};
    check_case(&fc, 0);
  }
}

static void test_absurd_reshape(void) {
  for (int m = 0; m < 3; m++) {
    char ps[64];
    snprintf(ps, sizeof ps, "%s:absurd", methods[m]);
    fcase fc = {"nr_fx_layers", "Fault", ps, 1, NR_ERR_PYTHON,
                {"raised ValueError", "is too large", "top[0].reshape(1 << 20"}};
    check_case(&fc, 0);
    snprintf(ps, sizeof ps, "%s:negative", methods[m]);
    fcase fc2 = {"nr_fx_layers", "Fault", ps, 1, NR_ERR_PYTHON,
                 {"raised ValueError", "negative dimension -3 at axis 1"}};
    check_case(&fc2, 0);
  }
}

static void test_bad_modules(void) {
  fcase cases[] = {
      {"nr_fx_importerr", "L", "", 1, NR_ERR_PYTHON,
       {"nr_fx_importerr.L.setup", "ModuleNotFoundError",
        "No module named 'nr_fx_module_that_does_not_exist'", "nr_fx_importerr.py"}},
      {"nr_fx_syntax", "L", "", 1, NR_ERR_PYTHON,
       {"raised SyntaxError", "nr_fx_syntax.py", "line 2"}},
      {"nr_fx_layers", "Missing", "", 1, NR_ERR_PYTHON,
       {"raised AttributeError", "module 'nr_fx_layers'", "has no attribute 'Missing'"}},
      {"nr_fx_layers", "NotALayer", "", 1, NR_ERR_PYTHON,
       {"raised TypeError", "nr_fx_layers.NotALayer is not a subclass of caffe.Layer"}},
      {"nr_fx_layers", "NoMethods", "", 1, NR_ERR_PYTHON,
       {"raised NotImplementedError", "does not define setup(self, bottom, top)"}},
      {"layers/nr_fx_layers.py", "TimesTen", "", 1, NR_ERR_PYTHON,
       {"raised ImportError", "is a file name, not a module name", "module: 'nr_fx_layers'"}},
      {"nr_fx_no_such_module", "L", "", 1, NR_ERR_PYTHON,
       {"ModuleNotFoundError", "No module named 'nr_fx_no_such_module'"}},
      /* wrong bottom count: the layer indexes bottom[0] of an empty list */
      {"nr_fx_layers", "TimesTen", "", 0, NR_ERR_PYTHON,
       {"nr_fx_layers.TimesTen.reshape", "raised IndexError", "list index out of range"}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], 0);
}

static void test_no_backend(void) {
  nr_error err;
  nr_layer_ctx ctx = {0};
  nr_blob *bot = NULL, *top = NULL;
  CHECK_OK(nr_blob_create("in", NULL, &bot, &err), &err);
  CHECK_OK(nr_blob_create("out", NULL, &top, &err), &err);
  Caffe__LayerParameter lp;
  Caffe__PythonParameter pp;
  caffe__layer_parameter__init(&lp);
  caffe__python_parameter__init(&pp);
  lp.name = (char *)"py";
  lp.type = (char *)"Python";
  pp.module = (char *)"m";
  pp.layer = (char *)"L";
  lp.python_param = &pp;
  nr_layer *l = NULL;
  CHECK_OK(nr_layer_create(&lp, &ctx, &bot, 1, &top, 1, &l, &err), &err);
  CHECK_INT_EQ(nr_layer_setup(l, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "no Python backend to run m.L");
  CHECK_CONTAINS(err.msg, "--py-workers");
  lp.python_param = NULL;
  CHECK_INT_EQ(nr_layer_setup(l, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "python_param { module:");
  nr_layer_destroy(l);
  nr_blob_destroy(bot);
  nr_blob_destroy(top);
}

/* A missing worker executable is a clear error, not a hang. */
static void test_no_worker_binary(void) {
  nr_error err;
  nr_pool *p = NULL;
  nr_pool_opts o = {1, 0, 0, "/nonexistent/netrun-worker", NULL, 0, 0, NULL, NULL};
  CHECK_INT_EQ(nr_pool_create(&o, &p, &err), NR_ERR_IO);
  CHECK_CONTAINS(err.msg, "cannot find the netrun-worker executable at /nonexistent");
  CHECK(p == NULL);
}

int main(void) {
  shm0 = wk_shm_entries();
  fds0 = wk_open_fds();
  NR_RUN(test_raise);
  NR_RUN(test_segfault);
  NR_RUN(test_os_exit);
  NR_RUN(test_hang_timeout);
  NR_RUN(test_system_exit);
  NR_RUN(test_absurd_reshape);
  NR_RUN(test_bad_modules);
  NR_RUN(test_no_backend);
  NR_RUN(test_no_worker_binary);
  return NR_TEST_EXIT();
}
