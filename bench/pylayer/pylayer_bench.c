/* pylayer_bench: what one Python layer call costs, out of process vs in process.
 *
 * The layer (tests/fixtures/pylayers/nr_fx_layers.py: Trivial) reshapes its top like its
 * bottom and copies one element in forward, so the time is the call machinery, not the
 * work. One sample = reshape + forward of one layer (what a net does per Python layer per
 * iteration). The out-of-process side is a pool of one netrun-worker with every blob in
 * shared memory; the in-process side (--py-workers 0's backend) is the peer and stands in
 * for Caffe's in-process PythonLayer. Rows: blob sizes 4 KiB .. 64 MiB (the call must not
 * grow with size: no bytes are copied) and a chain of 10 Python layers (one sample = the
 * whole chain). Sides run interleaved, in blocks, in the same process.
 *
 * Output: bench/run rows (tab-separated) on stdout, a readable table on stderr.
 * usage: pylayer_bench [--quick]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "pool.h"
#include "wire.h"

typedef struct side {
  const char *name;
  nr_py_backend *py;
  const nr_allocator *alloc;
  nr_layer_ctx ctx;
  Caffe__LayerParameter lp[10];
  Caffe__PythonParameter pp[10];
  nr_layer *l[10];
  nr_blob *b[11];
  int n;
} side;

static void die(const char *what, const nr_error *err) {
  fprintf(stderr, "pylayer_bench: %s: %s\n", what, err->msg);
  exit(1);
}

static void side_build(side *s, int n, int64_t count) {
  nr_error err;
  s->n = n;
  memset(&s->ctx, 0, sizeof s->ctx);
  s->ctx.alloc = s->alloc;
  s->ctx.py = s->py;
  s->ctx.source_dir = NR_FIXTURES;
  for (int i = 0; i <= n; i++) {
    if (nr_blob_create("b", s->alloc, &s->b[i], &err)) die("blob", &err);
  }
  /* count floats as (count/784) x 1 x 28 x 28 when it divides, else flat */
  int64_t d4[4] = {count / 784, 1, 28, 28};
  int64_t d1[1] = {count};
  if (count % 784 == 0) {
    if (nr_blob_reshape(s->b[0], 4, d4, &err)) die("reshape", &err);
  } else if (nr_blob_reshape(s->b[0], 1, d1, &err)) {
    die("reshape", &err);
  }
  for (int i = 0; i < n; i++) {
    caffe__layer_parameter__init(&s->lp[i]);
    caffe__python_parameter__init(&s->pp[i]);
    s->lp[i].name = (char *)"trivial";
    s->lp[i].type = (char *)"Python";
    s->pp[i].module = (char *)"nr_fx_layers";
    s->pp[i].layer = (char *)"Trivial";
    s->lp[i].python_param = &s->pp[i];
    if (nr_layer_create(&s->lp[i], &s->ctx, &s->b[i], 1, &s->b[i + 1], 1, &s->l[i], &err) ||
        nr_layer_setup(s->l[i], &err))
      die("layer setup", &err);
  }
}

static void side_free(side *s) {
  for (int i = 0; i < s->n; i++) nr_layer_destroy(s->l[i]);
  for (int i = 0; i <= s->n; i++) nr_blob_destroy(s->b[i]);
  s->n = 0;
}

static void run_once(side *s) {
  nr_error err;
  for (int i = 0; i < s->n; i++) {
    nr_layer *l = s->l[i];
    if (l->type->reshape(l, &err) || l->type->forward(l, &err)) die("forward", &err);
  }
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Interleaved blocks of `block` calls; per-call times in us into out_a / out_b. */
static void measure(side *a, side *b, int samples, int warmup, double *ta, double *tb) {
  for (int i = 0; i < warmup; i++) {
    run_once(a);
    run_once(b);
  }
  const int block = 50;
  for (int done = 0; done < samples; done += block) {
    for (int k = 0; k < 2; k++) {
      side *s = k ? b : a;
      double *t = k ? tb : ta;
      for (int i = done; i < done + block && i < samples; i++) {
        int64_t t0 = nr_wire_now_ns();
        run_once(s);
        t[i] = (double)(nr_wire_now_ns() - t0) / 1e3;
      }
    }
  }
  qsort(ta, (size_t)samples, sizeof *ta, cmp_d);
  qsort(tb, (size_t)samples, sizeof *tb, cmp_d);
}

int main(int argc, char **argv) {
  int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  int samples = quick ? 200 : 5000, warmup = quick ? 20 : 500;
  const char *env = getenv("NR_BENCH_ITERS");
  if (env && atoi(env) > 0) samples = atoi(env);
  nr_error err;
  nr_pool *pool = NULL;
  nr_pool_opts o = {1, 0, 0, NULL, NULL, 0, 0, NULL, NULL};
  if (nr_pool_create(&o, &pool, &err)) die("pool", &err);
  nr_py_backend *inproc = NULL;
  if (nr_inproc_create(&inproc, &err)) die("in-process backend", &err);
  side out = {.name = "worker", .py = nr_pool_backend(pool), .alloc = nr_pool_allocator(pool)};
  side in = {.name = "in-process", .py = inproc, .alloc = nr_allocator_malloc()};
  double *ta = malloc(sizeof(double) * (size_t)samples);
  double *tb = malloc(sizeof(double) * (size_t)samples);
  struct {
    const char *label;
    int64_t bytes;
    int layers;
  } rows[] = {
      {"64x1x28x28 (196 KiB)", 64 * 784 * 4, 1}, {"4 KiB", 4096, 1},
      {"64 KiB", 65536, 1},                      {"1 MiB", 1 << 20, 1},
      {"16 MiB", 16 << 20, 1},                   {"64 MiB", 64 << 20, 1},
      {"chain of 10 layers, 64x1x28x28", 64 * 784 * 4, 10},
  };
  fprintf(stderr, "%-34s %12s %12s %12s %12s\n", "Python layer reshape+forward", "worker med",
          "worker p99", "in-proc med", "in-proc p99");
  for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
    int64_t count = rows[r].bytes / 4;
    side_build(&out, rows[r].layers, count);
    side_build(&in, rows[r].layers, count);
    int n = rows[r].layers > 1 ? samples / 5 : samples;
    measure(&out, &in, n, warmup, ta, tb);
    double am = ta[n / 2], ap = ta[n * 99 / 100], bm = tb[n / 2], bp = tb[n * 99 / 100];
    fprintf(stderr, "%-34s %10.2f us %10.2f us %10.2f us %10.2f us\n", rows[r].label, am, ap,
            bm, bp);
    printf("pylayer\t%s%s\tus\tlower\t%.2f\t%.2f\tin-process\t%.2f\t%.2f\tp99\t%d samples%s\n",
           rows[r].layers > 1 ? "" : "call ", rows[r].label, am, ap, bm, bp, n,
           rows[r].layers > 1 ? ", per chain" : ", per layer");
    fflush(stdout);
    side_free(&out);
    side_free(&in);
  }
  free(ta);
  free(tb);
  nr_inproc_destroy(inproc);
  nr_pool_destroy(pool);
  return 0;
}
