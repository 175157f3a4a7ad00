/* lenet_bench: netrun's side of the LeNet training benchmark (bench/lenet/run drives it).
 *
 * One iteration is what a user's `netrun train` does on LeNet: clear the parameter diffs,
 * forward, backward, SGD with momentum and weight decay, data -= diff. Two ways to time it,
 * both on the same net and solver:
 *   whole N   N calls of nr_solver_step(s, 1): the real training loop, nothing added. This is
 *             the headline number.
 *   layers N  N iterations run layer by layer (nr_net_forward_layer / backward_layer, then
 *             the solver's update arithmetic), each layer timed on its own, as `netrun time`
 *             does, plus the update. Timers between layers cost a little, so the headline
 *             comes from `whole`, the breakdown from `layers`.
 * The program is a small server so the driver can interleave it with the PyTorch peer
 * without paying process start-up per block: it reads commands on stdin and answers one
 * line per request (whole) or per iteration (layers) on stdout:
 *   whole N   ->  "whole loss=L t1 t2 ... tN"          (ms per iteration)
 *   layers N  ->  N lines "layers total=T name/f=ms name/b=ms ... update=ms loss=L"
 *   info      ->  "info key=value ..."
 * Anything else (and EOF) ends the program. Errors go to stderr with exit status 1.
 *
 * Before serving, it checks that the benchmark net's layers conv1 .. ip2 are byte for byte
 * the layers of Caffe's mnist-lenet.prototxt (tests/data/caffe) (compared as packed protobuf
 * messages), so the benchmark cannot drift from the net it claims to measure.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "load.h"
#include "net.h"
#include "nr_math.h"
#include "solver.h"

#ifndef NR_BENCH_DIR
#define NR_BENCH_DIR "."
#endif
#ifndef NR_CAFFE_LENET
#define NR_CAFFE_LENET "tests/data/caffe/mnist-lenet.prototxt"
#endif

static const char *const shared_layers[] = {"conv1", "pool1", "conv2", "pool2",
                                            "ip1",   "relu1", "ip2"};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const Caffe__LayerParameter *find_layer(const Caffe__NetParameter *n, const char *name) {
  for (size_t i = 0; i < n->n_layer; i++)
    if (n->layer[i]->name && strcmp(n->layer[i]->name, name) == 0) return n->layer[i];
  return NULL;
}

/* The benchmark net must carry the shared net's layers unchanged. */
static nr_status check_same_layers(const Caffe__NetParameter *bench,
                                   const Caffe__NetParameter *shared, nr_error *err) {
  for (size_t k = 0; k < sizeof shared_layers / sizeof shared_layers[0]; k++) {
    const Caffe__LayerParameter *a = find_layer(bench, shared_layers[k]);
    const Caffe__LayerParameter *b = find_layer(shared, shared_layers[k]);
    if (!a || !b)
      return nr_err_set(err, NR_ERR_INPUT, "layer '%s' missing from the %s net",
                        shared_layers[k], a ? "shared" : "benchmark");
    size_t la = protobuf_c_message_get_packed_size(&a->base);
    size_t lb = protobuf_c_message_get_packed_size(&b->base);
    uint8_t *pa = malloc(la + 1), *pb = malloc(lb + 1);
    int same = pa && pb && la == lb;
    if (same) {
      protobuf_c_message_pack(&a->base, pa);
      protobuf_c_message_pack(&b->base, pb);
      same = memcmp(pa, pb, la) == 0;
    }
    free(pa);
    free(pb);
    if (!same)
      return nr_err_set(err, NR_ERR_INPUT,
                        "layer '%s' differs from Caffe's mnist-lenet.prototxt (tests/data/caffe)",
                        shared_layers[k]);
  }
  return NR_OK;
}

typedef struct bench {
  nr_solver *solver;
  nr_net *net;                 /* borrowed from the solver */
  float **hist;                /* momentum history of the layer-by-layer update */
  float base_lr, momentum, weight_decay;
} bench;

/* The solver's SGD update (apply_update in core/solver.c, fixed rate, no clipping, no
 * iter_size) on our own history, so the layer-by-layer mode can time it alone. */
static void sgd_update(bench *b) {
  nr_net *n = b->net;
  for (int i = 0; i < n->nlearnable; i++) { /* SGD with L2 decay: the solver's fused step */
    nr_blob *p = n->learnable[i];
    nr_solver_sgd_step(p->count, p->data, p->diff, b->hist[i],
                       b->weight_decay * n->decay_mult[i], b->base_lr * n->lr_mult[i],
                       b->momentum);
  }
}

static float loss_value(const nr_net *n) {
  const nr_blob *l = nr_net_blob(n, "loss");
  return l && l->count > 0 ? l->data[0] : 0.0f;
}

static nr_status run_whole(bench *b, int iters, nr_error *err) {
  double *t = calloc((size_t)iters, sizeof *t);
  if (!t) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  nr_status st = NR_OK;
  for (int i = 0; i < iters && st == NR_OK; i++) {
    double t0 = now_ms();
    st = nr_solver_step(b->solver, 1, err);
    t[i] = now_ms() - t0;
  }
  if (st == NR_OK) {
    printf("whole loss=%.6g", (double)loss_value(b->net));
    for (int i = 0; i < iters; i++) printf(" %.4f", t[i]);
    printf("\n");
    fflush(stdout);
  }
  free(t);
  return st;
}

static nr_status run_layers(bench *b, int iters, nr_error *err) {
  nr_net *n = b->net;
  double *fwd = calloc((size_t)n->nlayers, sizeof *fwd);
  double *bwd = calloc((size_t)n->nlayers, sizeof *bwd);
  nr_status st = fwd && bwd ? NR_OK : nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  for (int it = 0; it < iters && st == NR_OK; it++) {
    double t0 = now_ms();
    nr_net_clear_param_diffs(n);
    for (int i = 0; i < n->nlayers && st == NR_OK; i++) {
      double a = now_ms();
      st = nr_net_forward_layer(n, i, NULL, err);
      fwd[i] = now_ms() - a;
    }
    for (int i = n->nlayers - 1; i >= 0 && st == NR_OK; i--) {
      double a = now_ms();
      st = nr_net_backward_layer(n, i, err);
      bwd[i] = now_ms() - a;
    }
    if (st != NR_OK) break;
    double u0 = now_ms();
    sgd_update(b);
    double t1 = now_ms();
    printf("layers total=%.4f", t1 - t0);
    for (int i = 0; i < n->nlayers; i++)
      printf(" %s/f=%.4f %s/b=%.4f", n->layers[i]->name, fwd[i], n->layers[i]->name, bwd[i]);
    printf(" update=%.4f loss=%.6g\n", t1 - u0, (double)loss_value(n));
    fflush(stdout);
  }
  free(fwd);
  free(bwd);
  return st;
}

static void fill_inputs(nr_net *n) {
  nr_rng r;
  nr_rng_seed(&r, 42);
  nr_blob *data = nr_net_blob(n, "data"), *label = nr_net_blob(n, "label");
  for (int64_t i = 0; data && i < data->count; i++) data->data[i] = (float)nr_rng_uniform(&r);
  for (int64_t i = 0; label && i < label->count; i++)
    label->data[i] = (float)nr_rng_below(&r, 10);
}

int main(int argc, char **argv) {
  const char *dir = NR_BENCH_DIR, *shared_path = NR_CAFFE_LENET;
  int check_only = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--check") == 0) check_only = 1;
    else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) dir = argv[++i];
    else if (strcmp(argv[i], "--shared") == 0 && i + 1 < argc) shared_path = argv[++i];
    else {
      fprintf(stderr,
              "usage: lenet_bench [--check] [--dir BENCH_LENET_DIR] [--shared LENET_PROTOTXT]\n"
              "  reads commands on stdin: 'whole N', 'layers N', 'info'\n");
      return 2;
    }
  }
  static nr_error err;
  Caffe__NetParameter *net = NULL, *shared = NULL;
  Caffe__SolverParameter *sp = NULL;
  bench b = {0};
  FILE *devnull = NULL;
  nr_status st;
  int rc = 1;
  char path[4096];
  snprintf(path, sizeof path, "%s/lenet_bench.prototxt", dir);
  if (nr_proto_load_net_text(path, &net, &err) != NR_OK) goto fail;
  if (nr_proto_load_net_text(shared_path, &shared, &err) != NR_OK) goto fail;
  if (check_same_layers(net, shared, &err) != NR_OK) {
    nr_err_prefix(&err, "%s vs %s", path, shared_path);
    goto fail;
  }
  snprintf(path, sizeof path, "%s/lenet_bench_solver.prototxt", dir);
  if (nr_proto_load_solver_text(path, &sp, &err) != NR_OK) goto fail;
  sp->net_param = net; /* borrowed: reset before sp is freed */
  devnull = fopen("/dev/null", "w"); /* the solver's log: display is 0, so nearly silent */
  nr_solver_opts so = {.log = devnull ? devnull : stderr};
  st = nr_solver_create(sp, &so, &b.solver, &err);
  sp->net_param = NULL;
  if (st != NR_OK) goto fail;
  b.net = nr_solver_net(b.solver);
  b.base_lr = sp->base_lr;
  b.momentum = sp->momentum;
  b.weight_decay = sp->weight_decay;
  b.hist = calloc((size_t)b.net->nlearnable, sizeof *b.hist);
  for (int i = 0; b.hist && i < b.net->nlearnable; i++)
    if (!(b.hist[i] = calloc((size_t)b.net->learnable[i]->count, sizeof(float)))) {
      nr_err_set(&err, NR_ERR_NOMEM, "out of memory");
      goto fail;
    }
  fill_inputs(b.net);
  if (check_only) {
    printf("ok: %s layers conv1..ip2 match %s; %d layers, %d learnable blobs\n", dir,
           shared_path, b.net->nlayers, b.net->nlearnable);
    rc = 0;
    goto done;
  }
  char line[256];
  while (fgets(line, sizeof line, stdin)) {
    int iters = 0;
    if (sscanf(line, "whole %d", &iters) == 1 && iters > 0) {
      if (run_whole(&b, iters, &err) != NR_OK) goto fail;
    } else if (sscanf(line, "layers %d", &iters) == 1 && iters > 0) {
      if (run_layers(&b, iters, &err) != NR_OK) goto fail;
    } else if (strncmp(line, "info", 4) == 0) {
      printf("info blas_threads=%d gemm=%s blas=\"%s\" layers=%d\n", openblas_get_num_threads(),
             nr__gemm_kernel_name(), openblas_get_config(), b.net->nlayers);
      fflush(stdout);
    } else {
      break;
    }
  }
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "lenet_bench: %s\n", err.msg);
  rc = 1;
done:
  for (int i = 0; b.hist && b.net && i < b.net->nlearnable; i++) free(b.hist[i]);
  free(b.hist);
  nr_solver_destroy(b.solver);
  if (sp) protobuf_c_message_free_unpacked(&sp->base, NULL);
  if (net) protobuf_c_message_free_unpacked(&net->base, NULL);
  if (shared) protobuf_c_message_free_unpacked(&shared->base, NULL);
  if (devnull) fclose(devnull);
  return rc;
}
