/* The pycaffe Python-layer behaviours, out of process (1, 2 and -1 workers) and in process
 * (--py-workers 0), on hand-built chains of layers. */
#include "nr_test.h"
#include "wk.h"

/* A backend for mode: 0 = in-process, else a pool of `mode` workers (-1 = sized by the layers). */
typedef struct be {
  nr_pool *pool;
  nr_py_backend *py;
  const nr_allocator *alloc;
} be;

static nr_status be_open(be *b, int mode, nr_error *err) {
  memset(b, 0, sizeof *b);
  if (mode == 0) {
    NR_TRY(nr_inproc_create(&b->py, err));
    b->alloc = nr_allocator_malloc();
    return NR_OK;
  }
  nr_pool_opts o = {mode, 30, 0, NULL, NULL, 0, 0, NULL, NULL};
  NR_TRY(nr_pool_create(&o, &b->pool, err));
  b->py = nr_pool_backend(b->pool);
  b->alloc = nr_pool_allocator(b->pool);
  return NR_OK;
}

static void be_close(be *b) {
  if (b->pool) nr_pool_destroy(b->pool);
  else nr_inproc_destroy(b->py);
}

static const int modes[] = {1, 2, -1, 0};
static int mode;

static void fill(nr_blob *b, float base) {
  for (int64_t i = 0; i < b->count; i++) b->data[i] = base + (float)i;
}

/* pycaffe test_python_layer: three ×10 layers forward and backward. Ten of them here. */
static void test_times_ten_chain(void) {
  nr_error err;
  be b;
  CHECK_OK(be_open(&b, mode, &err), &err);
  const char *cls[10];
  for (int i = 0; i < 10; i++) cls[i] = "TimesTen";
  wk_chain c;
  CHECK_OK(wk_chain_init(&c, b.py, b.alloc, 3, "nr_fx_layers", cls, NULL, NR_TRAIN, &err), &err);
  CHECK_OK(nr_blob_reshape4(c.b[0], 2, 3, 4, 5, &err), &err);
  fill(c.b[0], 1);
  CHECK_OK(wk_chain_setup(&c, &err), &err);
  CHECK_OK(wk_chain_forward(&c, &err), &err);
  CHECK_INT_EQ(c.b[3]->count, 120);
  for (int i = 0; i < 120; i++) CHECK_NEAR(c.b[3]->data[i], 1000.0f * (1 + i), 1e-2);
  for (int i = 0; i < 120; i++) c.b[3]->diff[i] = 1.0f + (float)i;
  CHECK_OK(wk_chain_backward(&c, &err), &err);
  for (int i = 0; i < 120; i++) CHECK_NEAR(c.b[0]->diff[i], 1000.0f * (1 + i), 1e-2);
  wk_chain_free(&c);

  /* ten layers, twice (the views are cached between calls) */
  CHECK_OK(wk_chain_init(&c, b.py, b.alloc, 10, "nr_fx_layers", cls, NULL, NR_TRAIN, &err), &err);
  CHECK_OK(nr_blob_reshape4(c.b[0], 1, 1, 1, 4, &err), &err);
  fill(c.b[0], 0);
  CHECK_OK(wk_chain_setup(&c, &err), &err);
  for (int rep = 0; rep < 2; rep++) {
    c.b[0]->data[0] = 1e-10f * (float)(rep + 1);
    CHECK_OK(wk_chain_forward(&c, &err), &err);
    CHECK_NEAR(c.b[10]->data[0], (rep + 1), 1e-5);
    CHECK_NEAR(c.b[10]->data[3], 3e10, 3e4);
  }
  wk_chain_free(&c);
  be_close(&b);
}

/* A bottom that changes shape between forwards reaches the tops through Python reshape. */
static void test_reshape_propagation(void) {
  nr_error err;
  be b;
  CHECK_OK(be_open(&b, mode, &err), &err);
  const char *cls[] = {"Doubler", "TimesTen", "Doubler"};
  const char *ps[] = {"", "", "5"};
  wk_chain c;
  CHECK_OK(wk_chain_init(&c, b.py, b.alloc, 3, "nr_fx_layers", cls, ps, NR_TRAIN, &err), &err);
  CHECK_OK(nr_blob_reshape4(c.b[0], 1, 2, 1, 1, &err), &err);
  fill(c.b[0], 1);
  CHECK_OK(wk_chain_setup(&c, &err), &err);
  char sh[128];
  CHECK_STR_EQ(nr_blob_shape_str(c.b[3], sh, sizeof sh), "4 2 1 1 5 (40)");
  CHECK_OK(wk_chain_forward(&c, &err), &err);
  CHECK_NEAR(c.b[3]->data[0], 10, 1e-5);
  CHECK_NEAR(c.b[3]->data[3], 20, 1e-5);
  /* grow the input far past every capacity: every top gets new memory */
  int64_t d[2] = {3000, 7};
  CHECK_OK(nr_blob_reshape(c.b[0], 2, d, &err), &err);
  fill(c.b[0], 0);
  CHECK_OK(wk_chain_forward(&c, &err), &err);
  CHECK_STR_EQ(nr_blob_shape_str(c.b[3], sh, sizeof sh), "12000 7 5 (420000)");
  CHECK_NEAR(c.b[2]->data[20999], 10.0 * 20999, 1e-1);
  CHECK_NEAR(c.b[2]->data[21000 + 5], 50, 1e-3);
  /* and shrink back */
  CHECK_OK(nr_blob_reshape4(c.b[0], 1, 1, 1, 1, &err), &err);
  CHECK_OK(wk_chain_forward(&c, &err), &err);
  CHECK_STR_EQ(nr_blob_shape_str(c.b[1], sh, sizeof sh), "2 1 1 1 (2)");
  wk_chain_free(&c);
  be_close(&b);
}

/* add_blob parameters: live in the core, diff accumulated by backward, update visible. */
static void test_param_blobs(void) {
  nr_error err;
  be b;
  CHECK_OK(be_open(&b, mode, &err), &err);
  const char *cls[] = {"Scale"};
  wk_chain c;
  CHECK_OK(wk_chain_init(&c, b.py, b.alloc, 1, "nr_fx_layers", cls, NULL, NR_TRAIN, &err), &err);
  CHECK_OK(nr_blob_reshape4(c.b[0], 1, 1, 1, 3, &err), &err);
  fill(c.b[0], 1); /* 1 2 3 */
  CHECK_OK(wk_chain_setup(&c, &err), &err);
  nr_layer *l = c.l[0];
  CHECK_INT_EQ(l->nblobs, 1);
  CHECK_INT_EQ(l->blobs[0]->count, 1);
  CHECK_NEAR(l->blobs[0]->data[0], 2, 0);
  CHECK_OK(wk_chain_forward(&c, &err), &err);
  CHECK_NEAR(c.b[1]->data[2], 6, 1e-6);
  for (int i = 0; i < 3; i++) c.b[1]->diff[i] = 1;
  CHECK_OK(wk_chain_backward(&c, &err), &err);
  CHECK_NEAR(l->blobs[0]->diff[0], 6, 1e-6); /* sum(top.diff * bottom) */
  CHECK_OK(wk_chain_backward(&c, &err), &err);
  CHECK_NEAR(l->blobs[0]->diff[0], 12, 1e-6); /* accumulated */
  CHECK_NEAR(c.b[0]->diff[1], 2, 1e-6);
  /* a solver step in the core: Python sees the new value */
  l->blobs[0]->data[0] -= 0.25f * l->blobs[0]->diff[0];
  CHECK_OK(wk_chain_forward(&c, &err), &err);
  CHECK_NEAR(c.b[1]->data[0], -1, 1e-6);
  wk_chain_free(&c);
  be_close(&b);
}

/* phase and param_str reach the object before setup; assignment broadcasts. */
static void test_phase_param_str(void) {
  nr_error err;
  be b;
  CHECK_OK(be_open(&b, mode, &err), &err);
  const char *cls[] = {"PhaseParam"};
  for (int phase = 0; phase < 2; phase++) {
    const char *ps[] = {"7.5"};
    wk_chain c;
    CHECK_OK(wk_chain_init(&c, b.py, b.alloc, 1, "nr_fx_layers", cls, ps, phase, &err), &err);
    CHECK_OK(nr_blob_reshape4(c.b[0], 2, 1, 1, 2, &err), &err);
    CHECK_OK(wk_chain_setup(&c, &err), &err);
    CHECK_OK(wk_chain_forward(&c, &err), &err);
    CHECK_NEAR(c.b[1]->data[3], phase * 100 + 7.5, 1e-6);
    wk_chain_free(&c);
  }
  be_close(&b);
}

/* Blob API details: legacy accessors, scalar blobs, keyword reshape, bad broadcast, a kept
 * view staying valid after its blob grows, two tops. */
static void test_blob_api(void) {
  nr_error err;
  be b;
  CHECK_OK(be_open(&b, mode, &err), &err);
  nr_layer_ctx ctx = {0};
  ctx.alloc = b.alloc;
  ctx.py = b.py;
  ctx.source_dir = wk_fixtures();
  nr_blob *bot = NULL, *t[2] = {NULL, NULL};
  CHECK_OK(nr_blob_create("in", b.alloc, &bot, &err), &err);
  CHECK_OK(nr_blob_create("t0", b.alloc, &t[0], &err), &err);
  CHECK_OK(nr_blob_create("t1", b.alloc, &t[1], &err), &err);
  CHECK_OK(nr_blob_reshape4(bot, 2, 3, 4, 5, &err), &err);
  fill(bot, 0);
  Caffe__LayerParameter lp;
  Caffe__PythonParameter pp;
  caffe__layer_parameter__init(&lp);
  caffe__python_parameter__init(&pp);
  lp.name = (char *)"api";
  lp.type = (char *)"Python";
  pp.module = (char *)"nr_fx_layers";
  pp.layer = (char *)"BlobApi";
  lp.python_param = &pp;
  nr_layer *l = NULL;
  CHECK_OK(nr_layer_create(&lp, &ctx, &bot, 1, t, 2, &l, &err), &err);
  CHECK_OK(nr_layer_setup(l, &err), &err);
  CHECK_INT_EQ(t[0]->num_axes, 0);
  CHECK_INT_EQ(t[0]->count, 1);
  CHECK_NEAR(t[0]->data[0], 7, 0);
  CHECK_INT_EQ(t[1]->num_axes, 5);
  CHECK_OK(l->type->reshape(l, &err), &err);
  CHECK_OK(l->type->forward(l, &err), &err);
  CHECK_NEAR(t[0]->data[0], 7140, 1e-3);
  CHECK_INT_EQ(t[1]->count, 2);
  CHECK(t[1]->buf->capacity >= 1000000);
  nr_layer_destroy(l);
  nr_blob_destroy(bot);
  nr_blob_destroy(t[0]);
  nr_blob_destroy(t[1]);
  be_close(&b);
}

/* Same results with in-process, 1, 2 and one-per-layer workers. */
static float results[4][64];
static void test_identical_results(void) {
  nr_error err;
  for (int k = 0; k < 4; k++) {
    be b;
    CHECK_OK(be_open(&b, modes[k], &err), &err);
    const char *cls[] = {"Doubler", "Scale", "TimesTen", "Scale"};
    wk_chain c;
    CHECK_OK(wk_chain_init(&c, b.py, b.alloc, 4, "nr_fx_layers", cls, NULL, NR_TRAIN, &err), &err);
    CHECK_OK(nr_blob_reshape4(c.b[0], 2, 2, 2, 2, &err), &err);
    fill(c.b[0], 0.5f);
    CHECK_OK(wk_chain_setup(&c, &err), &err);
    CHECK_OK(wk_chain_forward(&c, &err), &err);
    for (int i = 0; i < 32; i++) c.b[4]->diff[i] = (float)i / 7;
    CHECK_OK(wk_chain_backward(&c, &err), &err);
    for (int i = 0; i < 32; i++) results[k][i] = c.b[4]->data[i];
    for (int i = 0; i < 16; i++) results[k][32 + i] = c.b[0]->diff[i];
    results[k][48] = c.l[1]->blobs[0]->diff[0];
    results[k][49] = c.l[3]->blobs[0]->diff[0];
    wk_chain_free(&c);
    be_close(&b);
  }
  for (int k = 1; k < 4; k++)
    for (int i = 0; i < 50; i++) CHECK(memcmp(&results[0][i], &results[k][i], sizeof(float)) == 0);
}

int main(void) {
  int shm0 = wk_shm_entries();
  for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
    mode = modes[k];
    fprintf(stderr, "-- py-workers %d\n", mode);
    NR_RUN(test_times_ten_chain);
    NR_RUN(test_reshape_propagation);
    NR_RUN(test_param_blobs);
    NR_RUN(test_phase_param_str);
    NR_RUN(test_blob_api);
  }
  NR_RUN(test_identical_results);
  if (wk_shm_entries() != shm0) {
    fprintf(stderr, "FAIL: /dev/shm changed (%d -> %d entries)\n", shm0, wk_shm_entries());
    nr_test_failed_cases++;
  }
  if (wk_children() != 0) {
    fprintf(stderr, "FAIL: %d child processes left\n", wk_children());
    nr_test_failed_cases++;
  }
  return NR_TEST_EXIT();
}
