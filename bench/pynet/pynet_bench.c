/* pynet_bench: what a Python layer costs inside a real net, out of process (worker pool)
 * against in process (--py-workers 0's backend), both in this one process, interleaved.
 *
 * Cases (bench/pynet/run prints the rows this program writes on stdout):
 *   lenet        LeNet (bench/lenet's layers conv1 .. ip2) whose loss is Caffe's pyloss
 *                example, a Python EuclideanLossLayer (pynet_lenet.prototxt): one training
 *                iteration, nr_solver_step(s, 1), with the layer in a worker against the
 *                same net with the layer in process. Then the same iteration run layer by
 *                layer (as `netrun time`), with a timer around each Python layer's forward
 *                (reshape + forward: two calls) and backward (one call).
 *   lenet+acc    the same net with a Python top-1 accuracy layer too (stage "acc"),
 *                forward only, on the loss layer's worker (the pool puts the net's layers on one).
 *   after D      a no-op Python layer (reshape + forward) called after D of native work
 *                (nr_gemm products, threaded like the net's GEMMs): D = 0 (back to back),
 *                50 us, 1 ms, 10 ms. What the worker does between calls is what changes.
 * Both sides run in blocks, A/B then B/A, after a warm-up; medians and p90.
 *
 * usage: pynet_bench [--quick] [--case lenet|acc|after|all]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "load.h"
#include "net.h"
#include "nr_math.h"
#include "pool.h"
#include "solver.h"
#include "wire.h"

#ifndef NR_BENCH_DIR
#define NR_BENCH_DIR "."
#endif
#ifndef NR_PYLOSS_DIR /* the folder of the project's pyloss module (bench/pynet/CMakeLists.txt) */
#error "NR_PYLOSS_DIR is not defined"
#endif
#ifndef NR_LENET_BENCH
#define NR_LENET_BENCH "../lenet/lenet_bench.prototxt"
#endif

static int quick;

static void die(const char *what, const nr_error *err) {
  fprintf(stderr, "pynet_bench: %s: %s\n", what, err ? err->msg : "failed");
  exit(1);
}

static double now_us(void) { return (double)nr_wire_now_ns() / 1e3; }

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Quantile q of v[0..n) (sorts v). */
static double quant(double *v, int n, double q) {
  if (n <= 0) return 0;
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  double pos = (n - 1) * q;
  int lo = (int)pos, hi = lo + 1 < n ? lo + 1 : lo;
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

static double load1(void) {
  double l[1] = {0};
  return getloadavg(l, 1) == 1 ? l[0] : -1;
}

static double max_load;
static void note_load(void) {
  double l = load1();
  if (l > max_load) max_load = l;
}

/* ---- LeNet with Python layers ---- */

static const char *const shared_layers[] = {"conv1", "pool1", "conv2", "pool2",
                                            "ip1",   "relu1", "ip2"};

static const Caffe__LayerParameter *find_layer(const Caffe__NetParameter *n, const char *name) {
  for (size_t i = 0; i < n->n_layer; i++)
    if (n->layer[i]->name && strcmp(n->layer[i]->name, name) == 0) return n->layer[i];
  return NULL;
}

/* The benchmark's layers conv1 .. ip2 must be bench/lenet's, byte for byte. */
static void check_same_layers(const Caffe__NetParameter *a, const Caffe__NetParameter *b) {
  for (size_t k = 0; k < sizeof shared_layers / sizeof shared_layers[0]; k++) {
    const Caffe__LayerParameter *x = find_layer(a, shared_layers[k]);
    const Caffe__LayerParameter *y = find_layer(b, shared_layers[k]);
    size_t lx = x ? protobuf_c_message_get_packed_size(&x->base) : 0;
    size_t ly = y ? protobuf_c_message_get_packed_size(&y->base) : 0;
    uint8_t *px = malloc(lx + 1), *py = malloc(ly + 1);
    int same = x && y && px && py && lx == ly;
    if (same) {
      protobuf_c_message_pack(&x->base, px);
      protobuf_c_message_pack(&y->base, py);
      same = memcmp(px, py, lx) == 0;
    }
    free(px);
    free(py);
    if (!same) {
      fprintf(stderr, "pynet_bench: layer '%s' of pynet_lenet.prototxt differs from %s\n",
              shared_layers[k], NR_LENET_BENCH);
      exit(1);
    }
  }
}

typedef struct lside {
  const char *name;
  nr_solver *s;
  nr_net *net;
  double *whole; /* ms per iteration */
  double *lf, *lb, *af; /* us: loss forward, loss backward, accuracy forward */
  int nwhole, nlayers;
  int iloss, iacc;
} lside;

static void fill_inputs(nr_net *n) {
  nr_rng r;
  nr_rng_seed(&r, 42);
  nr_blob *data = nr_net_blob(n, "data"), *target = nr_net_blob(n, "target"),
          *label = nr_net_blob(n, "label");
  for (int64_t i = 0; i < data->count; i++) data->data[i] = (float)nr_rng_uniform(&r);
  memset(target->data, 0, (size_t)target->count * sizeof(float));
  for (int64_t i = 0; i < label->count; i++) {
    int c = (int)nr_rng_below(&r, 10);
    label->data[i] = (float)c;
    target->data[i * 10 + c] = 1;
  }
}

static int layer_index(const nr_net *n, const char *name) {
  for (int i = 0; i < n->nlayers; i++)
    if (strcmp(n->layers[i]->name, name) == 0) return i;
  return -1;
}

static void lside_make(lside *x, const char *name, Caffe__NetParameter *net,
                       Caffe__SolverParameter *sp, const nr_allocator *alloc,
                       nr_py_backend *py, bool acc, int cap) {
  nr_error err;
  static const char *const stages[] = {"acc"};
  memset(x, 0, sizeof *x);
  x->name = name;
  sp->net_param = net;
  nr_solver_opts so = {.alloc = alloc, .py = py, .stages = acc ? stages : NULL,
                       .nstages = acc ? 1 : 0, .log = fopen("/dev/null", "w")};
  nr_status st = nr_solver_create(sp, &so, &x->s, &err);
  sp->net_param = NULL;
  if (st) die("solver", &err);
  x->net = nr_solver_net(x->s);
  fill_inputs(x->net);
  x->iloss = layer_index(x->net, "loss");
  x->iacc = layer_index(x->net, "accuracy");
  x->whole = calloc((size_t)cap, sizeof(double));
  x->lf = calloc((size_t)cap, sizeof(double));
  x->lb = calloc((size_t)cap, sizeof(double));
  x->af = calloc((size_t)cap, sizeof(double));
}

static void lside_free(lside *x) {
  nr_solver_destroy(x->s); /* its log (/dev/null) stays open: a few descriptors */
  free(x->whole);
  free(x->lf);
  free(x->lb);
  free(x->af);
}

static void run_whole(lside *x, int n, bool keep) {
  nr_error err;
  for (int i = 0; i < n; i++) {
    double t0 = now_us();
    if (nr_solver_step(x->s, 1, &err)) die(x->name, &err);
    if (keep) x->whole[x->nwhole++] = (now_us() - t0) / 1e3;
  }
}

/* Layer by layer as `netrun time` (clear diffs, forward, backward; the update runs in the
 * whole mode), timing the Python layers. */
static void run_layers(lside *x, int n, bool keep) {
  nr_error err;
  nr_net *net = x->net;
  for (int it = 0; it < n; it++) {
    double lf = 0, lb = 0, af = 0;
    nr_net_clear_param_diffs(net);
    for (int i = 0; i < net->nlayers; i++) {
      double a = now_us();
      if (nr_net_forward_layer(net, i, NULL, &err)) die(x->name, &err);
      double d = now_us() - a;
      if (i == x->iloss) lf = d;
      if (i == x->iacc) af = d;
    }
    for (int i = net->nlayers - 1; i >= 0; i--) {
      double a = now_us();
      if (nr_net_backward_layer(net, i, &err)) die(x->name, &err);
      if (i == x->iloss) lb = now_us() - a;
    }
    if (keep) {
      x->lf[x->nlayers] = lf;
      x->lb[x->nlayers] = lb;
      x->af[x->nlayers] = af;
      x->nlayers++;
    }
  }
}

static void row(const char *cas, const char *unit, double *a, int na, double *b, int nb,
                const char *note) {
  double am = quant(a, na, 0.5), at = quant(a, na, 0.9);
  double bm = quant(b, nb, 0.5), bt = quant(b, nb, 0.9);
  printf("pynet\t%s\t%s\tlower\t%.4g\t%.4g\tin-process\t%.4g\t%.4g\tp90\t%s\n", cas, unit, am,
         at, bm, bt, note);
  fflush(stdout);
  fprintf(stderr, "pynet: %-52s worker %9.4g (p90 %9.4g)  in-process %9.4g (p90 %9.4g) %s  "
          "diff %+.3g %s (%.2f %%)\n", cas, am, at, bm, bt, unit, am - bm, unit,
          bm > 0 ? 100 * (am - bm) / bm : 0);
}

static void case_lenet(nr_pool *pool, nr_py_backend *inproc, bool acc) {
  nr_error err;
  Caffe__NetParameter *net = NULL, *ref = NULL;
  Caffe__SolverParameter *sp = NULL;
  if (nr_proto_load_net_text(NR_BENCH_DIR "/pynet_lenet.prototxt", &net, &err))
    die("pynet_lenet.prototxt", &err);
  if (nr_proto_load_net_text(NR_LENET_BENCH, &ref, &err)) die(NR_LENET_BENCH, &err);
  check_same_layers(net, ref);
  if (nr_proto_load_solver_text(NR_BENCH_DIR "/pynet_solver.prototxt", &sp, &err))
    die("pynet_solver.prototxt", &err);
  int iters = quick ? 6 : 60, warm = quick ? 2 : 10, block = quick ? 2 : 3;
  const char *env = getenv("NR_BENCH_ITERS");
  if (env && atoi(env) > 0) iters = atoi(env);
  if ((env = getenv("NR_BENCH_WARMUP")) && atoi(env) >= 0) warm = atoi(env);
  if ((env = getenv("NR_BENCH_BLOCK")) && atoi(env) > 0) block = atoi(env);
  lside w, in;
  lside_make(&w, "worker", net, sp, nr_pool_allocator(pool), nr_pool_backend(pool), acc,
             iters + block);
  lside_make(&in, "in-process", net, sp, nr_allocator_malloc(), inproc, acc, iters + block);
  run_whole(&w, warm, false);
  run_whole(&in, warm, false);
  run_layers(&w, warm, false);
  run_layers(&in, warm, false);
  for (int r = 0; w.nwhole < iters; r++) {
    lside *o[2] = {r % 2 ? &in : &w, r % 2 ? &w : &in};
    for (int k = 0; k < 2; k++) run_whole(o[k], block, true);
    for (int k = 0; k < 2; k++) run_layers(o[k], block, true);
    note_load();
  }
  const nr_blob *lw = nr_net_blob(w.net, "loss"), *li = nr_net_blob(in.net, "loss");
  char note[300];
  snprintf(note, sizeof note, "n=%d per side, blocks of %d; loss after training: worker %.5g, "
           "in-process %.5g; load %.1f", w.nwhole, block, (double)lw->data[0],
           (double)li->data[0], max_load);
  const char *title =
      acc ? "LeNet iteration, Python loss + accuracy" : "LeNet iteration, Python loss";
  row(title, "ms", w.whole, w.nwhole, in.whole, in.nwhole, note);
  row("  Python loss forward (reshape + forward)", "us", w.lf, w.nlayers, in.lf, in.nlayers,
      "layer by layer, as netrun time");
  row("  Python loss backward", "us", w.lb, w.nlayers, in.lb, in.nlayers, "");
  if (acc)
    row("  Python accuracy forward (reshape + forward)", "us", w.af, w.nlayers, in.af,
        in.nlayers, "");
  lside_free(&w);
  lside_free(&in);
  protobuf_c_message_free_unpacked(&net->base, NULL);
  protobuf_c_message_free_unpacked(&ref->base, NULL);
  protobuf_c_message_free_unpacked(&sp->base, NULL);
}

/* ---- a no-op Python layer after native work ---- */

typedef struct nside {
  const char *name;
  nr_layer_ctx ctx;
  Caffe__LayerParameter lp;
  Caffe__PythonParameter pp;
  nr_layer *l;
  nr_blob *b[2];
} nside;

static void nside_make(nside *s, const char *name, const nr_allocator *alloc,
                       nr_py_backend *py) {
  nr_error err;
  memset(s, 0, sizeof *s);
  s->name = name;
  s->ctx.alloc = alloc;
  s->ctx.py = py;
  s->ctx.source_dir = NR_BENCH_DIR;
  int64_t d[4] = {64, 1, 28, 28};
  if (nr_blob_create("in", alloc, &s->b[0], &err) || nr_blob_create("out", alloc, &s->b[1], &err) ||
      nr_blob_reshape(s->b[0], 4, d, &err))
    die("blob", &err);
  caffe__layer_parameter__init(&s->lp);
  caffe__python_parameter__init(&s->pp);
  s->lp.name = (char *)"noop";
  s->lp.type = (char *)"Python";
  s->pp.module = (char *)"pynet_layers";
  s->pp.layer = (char *)"Noop";
  s->lp.python_param = &s->pp;
  if (nr_layer_create(&s->lp, &s->ctx, &s->b[0], 1, &s->b[1], 1, &s->l, &err) ||
      nr_layer_setup(s->l, &err))
    die("noop layer", &err);
}

static void nside_free(nside *s) {
  nr_layer_destroy(s->l);
  nr_blob_destroy(s->b[0]);
  nr_blob_destroy(s->b[1]);
}

/* Native work: `reps` products of 64x256 by 256x256 (threaded, as a layer's GEMM). */
static float *ga, *gb, *gc;
static void native(int reps) {
  for (int i = 0; i < reps; i++) nr_gemm(false, false, 64, 256, 256, 1.0f, ga, gb, 0.0f, gc);
}

/* Native work of `reps` products, then one reshape + forward of the no-op layer; the call's
 * time in us. */
static double noop_sample(nside *s, int reps, double *native_us) {
  nr_error err;
  double t0 = now_us();
  native(reps);
  double t1 = now_us();
  nr_layer *l = s->l;
  if (l->type->reshape(l, &err) || l->type->forward(l, &err)) die(s->name, &err);
  double t2 = now_us();
  if (native_us) *native_us = t1 - t0;
  return t2 - t1;
}

static void case_after(nr_pool *pool, nr_py_backend *inproc) {
  ga = calloc(64 * 256, sizeof(float));
  gb = calloc(256 * 256, sizeof(float));
  gc = calloc(64 * 256, sizeof(float));
  if (!ga || !gb || !gc) die("out of memory", NULL);
  for (int i = 0; i < 256 * 256; i++) gb[i] = (float)(i % 7) * 0.25f;
  for (int i = 0; i < 64 * 256; i++) ga[i] = (float)(i % 5) * 0.5f;
  double cal[101];
  native(20);
  for (int i = 0; i < 101; i++) {
    double t0 = now_us();
    native(1);
    cal[i] = now_us() - t0;
  }
  double unit = quant(cal, 101, 0.5);
  fprintf(stderr, "pynet: native work unit (64x256x256 GEMM): %.1f us\n", unit);
  nside w, in;
  nside_make(&w, "worker", nr_pool_allocator(pool), nr_pool_backend(pool));
  nside_make(&in, "in-process", nr_allocator_malloc(), inproc);
  struct {
    const char *label;
    double us;
    int samples, block;
  } rows[] = {{"no-op Python layer, back to back", 0, 3000, 50},
              {"no-op Python layer after 50 us of native work", 50, 1500, 25},
              {"no-op Python layer after 1 ms of native work", 1000, 300, 10},
              {"no-op Python layer after 10 ms of native work", 10000, 60, 3}};
  for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
    int n = quick ? rows[r].samples / 20 + 4 : rows[r].samples, block = rows[r].block;
    if (quick && block > 4) block = 4;
    int reps = rows[r].us <= 0 ? 0 : (int)(rows[r].us / unit + 0.5);
    if (rows[r].us > 0 && reps < 1) reps = 1;
    double *ta = calloc((size_t)n + (size_t)block, sizeof(double));
    double *tb = calloc((size_t)n + (size_t)block, sizeof(double));
    double *nat = calloc(2 * ((size_t)n + (size_t)block), sizeof(double));
    double *nata = nat, *natb = nat + n + block; /* the native work before each side's calls */
    int na = 0, nb = 0;
    for (int i = 0; i < (quick ? 4 : 20); i++) {
      noop_sample(&w, reps, NULL);
      noop_sample(&in, reps, NULL);
    }
    for (int k = 0; na < n; k++) {
      nside *o[2] = {k % 2 ? &in : &w, k % 2 ? &w : &in};
      for (int j = 0; j < 2; j++)
        for (int i = 0; i < block; i++) {
          double nu;
          double t = noop_sample(o[j], reps, &nu);
          if (o[j] == &w) nata[na] = nu, ta[na++] = t;
          else natb[nb] = nu, tb[nb++] = t;
        }
      note_load();
    }
    char note[200];
    snprintf(note, sizeof note, "%d samples per side, blocks of %d; native work %d x GEMM "
             "64x256x256, median %.0f us before the worker's calls, %.0f us before the "
             "in-process ones; load %.1f", na, block, reps, quant(nata, na, 0.5),
             quant(natb, nb, 0.5), max_load);
    row(rows[r].label, "us", ta, na, tb, nb, note);
    free(ta);
    free(tb);
    free(nat);
  }
  nside_free(&w);
  nside_free(&in);
  free(ga);
  free(gb);
  free(gc);
}

int main(int argc, char **argv) {
  const char *which = "all";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) quick = 1;
    else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) which = argv[++i];
    else {
      fprintf(stderr, "usage: pynet_bench [--quick] [--case lenet|acc|after|all]\n");
      return 2;
    }
  }
  /* The layers' modules (this folder's, and the loss in tests/e2e/pylayers): on the
   * workers' and the embedded interpreter's path, whatever the current directory. */
  setenv("PYTHONPATH", NR_BENCH_DIR ":" NR_PYLOSS_DIR, 1);
  nr_error err;
  nr_pool *pool = NULL;
  nr_pool_opts o = {.nworkers = -1, .python_path = NR_BENCH_DIR ":" NR_PYLOSS_DIR};
  if (nr_pool_create(&o, &pool, &err)) die("pool", &err);
  nr_py_backend *inproc = NULL;
  if (nr_inproc_create(&inproc, &err)) die("in-process backend", &err);
  max_load = load1();
  bool all = strcmp(which, "all") == 0;
  if (all || strcmp(which, "lenet") == 0) case_lenet(pool, inproc, false);
  if (all || strcmp(which, "acc") == 0) case_lenet(pool, inproc, true);
  if (all || strcmp(which, "after") == 0) case_after(pool, inproc);
  nr_inproc_destroy(inproc);
  nr_pool_destroy(pool);
  return 0;
}
