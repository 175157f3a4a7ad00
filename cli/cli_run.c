/* cli_run.c: `netrun test`, `netrun time` and `netrun check`: build one net from a model
 * prototxt and score it, time it, or describe it. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "binary.h"
#include "cli.h"
#include "load.h"
#include "pylayer.h"

typedef struct run_opts {
  bool verbose;
  const char *model;
  const char *weights;
  const char *phase;
  const char *stage;
  int level;
  int iterations;
} run_opts;

typedef struct built {
  nr_runtime *py;
  nr_net *net;
  char **stages;
} built;

static void built_free(built *b) {
  nr_net_destroy(b->net);
  nr_runtime_destroy(b->py);
  nr_cli_free_split(b->stages);
}

static bool has_python_layer(const Caffe__NetParameter *p) {
  for (size_t i = 0; i < p->n_layer; i++)
    if (p->layer[i]->type && strcmp(p->layer[i]->type, "Python") == 0) return true;
  return false;
}

/* Loads the model, starts a Python runtime if the net needs one, builds the net. */
static int build(const char *cmd, const run_opts *o, int default_phase, FILE *log, built *b,
                 nr_error *err) {
  memset(b, 0, sizeof *b);
  if (!o->model) {
    nr_cli_error("%s: --model is required (see netrun %s --help)", cmd, cmd);
    return 2;
  }
  int phase = default_phase;
  if (o->phase && nr_cli_phase(o->phase, &phase) != 0) {
    nr_cli_error("%s: --phase must be TRAIN or TEST, not '%s'", cmd, o->phase);
    return 2;
  }
  Caffe__NetParameter *param = NULL;
  if (nr_proto_load_net_text(o->model, &param, err) != NR_OK) {
    nr_cli_error("%s", err->msg);
    return 1;
  }
  int nst = 0;
  b->stages = nr_cli_split(o->stage, &nst);
  char *dir = nr_cli_dirname(o->model);
  nr_net_opts no = {0};
  no.phase = phase;
  no.level = o->level;
  no.stages = (const char *const *)b->stages;
  no.nstages = nst;
  no.seed = 1701;
  no.source_dir = dir;
  no.log = log;
  nr_status st = NR_OK;
  if (has_python_layer(param)) {
    st = nr_cli_py_start(&b->py, err);
    no.py = nr_runtime_backend(b->py);
    no.alloc = nr_runtime_allocator(b->py);
  }
  if (st == NR_OK) st = nr_net_create(param, &no, &b->net, err);
  if (st == NR_OK && o->weights) st = nr_net_load_weights(b->net, o->weights, nr_cli_log(), err);
  protobuf_c_message_free_unpacked(&param->base, NULL);
  free(dir);
  if (st != NR_OK) {
    nr_cli_error("%s", err->msg);
    built_free(b);
    return 1;
  }
  return 0;
}

static const char *usage_common =
    "--model NET.prototxt [--weights W.caffemodel[,W2]] [--phase TRAIN|TEST] [--level N] "
    "[--stage S[,S2]]";

int nr_cmd_test(int argc, char **argv) {
  run_opts o = {0};
  o.iterations = 50;
  const nr_flag flags[] = {
      {"model", NR_FLAG_STR, &o.model, "the net prototxt"},
      {"weights", NR_FLAG_STR, &o.weights, "comma-separated .caffemodel files (optional)"},
      {"iterations", NR_FLAG_INT, &o.iterations, "batches to score (default 50)"},
      {"verbose", NR_FLAG_BOOL, &o.verbose, "also print every output of every batch"},
      {"phase", NR_FLAG_STR, &o.phase, "TRAIN or TEST (default TEST)"},
      {"level", NR_FLAG_INT, &o.level, "net state level"},
      {"stage", NR_FLAG_STR, &o.stage, "comma-separated net state stages"},
      {NULL, 0, NULL, NULL}};
  char usage[512];
  snprintf(usage, sizeof usage, "netrun test %s [--iterations N]", usage_common);
  const char *pos[1];
  int npos;
  int r = nr_cli_parse("test", usage, flags, argc, argv, pos, &npos, 0);
  if (r) return r;
  if (o.iterations < 1) {
    nr_cli_error("test: --iterations must be at least 1");
    return 2;
  }
  static nr_error err;
  FILE *log = nr_cli_log();
  built b;
  if ((r = build("test", &o, NR_TEST, NULL, &b, &err))) return r;
  if (!o.weights) fprintf(log, "Not initializing the weights from a file: using the fillers\n");
  fprintf(log, "Running for %d iterations.\n", o.iterations);
  nr_net *n = b.net;
  nr_net_scores sc = {0};
  double loss = 0;
  for (int i = 0; i < o.iterations; i++) {
    float l = 0;
    if (nr_net_forward(n, &l, &err) != NR_OK || nr_net_scores_add(&sc, n, &err) != NR_OK) {
      nr_cli_error("test: batch %d: %s", i, err.msg);
      nr_net_scores_free(&sc);
      built_free(&b);
      return 1;
    }
    loss += l;
    for (int j = 0; o.verbose && j < n->noutputs; j++)
      for (int64_t k = 0; k < n->outputs[j]->count; k++)
        fprintf(log, "Batch %d, %s = %g\n", i, n->outputs[j]->name, n->outputs[j]->data[k]);
  }
  fprintf(log, "Loss: %g\n", loss / o.iterations);
  int64_t idx = 0;
  for (int j = 0; j < n->noutputs; j++) {
    float w = nr_net_output_loss_weight(n, j);
    for (int64_t k = 0; k < sc.counts[j]; k++, idx++) {
      double mean = sc.sum[idx] / o.iterations;
      if (w != 0)
        fprintf(log, "%s = %g (* %g = %g loss)\n", n->outputs[j]->name, mean, w, w * mean);
      else
        fprintf(log, "%s = %g\n", n->outputs[j]->name, mean);
    }
  }
  nr_net_scores_free(&sc);
  built_free(&b);
  return 0;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int nr_cmd_time(int argc, char **argv) {
  run_opts o = {0};
  o.iterations = 50;
  const nr_flag flags[] = {
      {"model", NR_FLAG_STR, &o.model, "the net prototxt"},
      {"weights", NR_FLAG_STR, &o.weights, "comma-separated .caffemodel files (optional)"},
      {"iterations", NR_FLAG_INT, &o.iterations, "iterations to time (default 50)"},
      {"phase", NR_FLAG_STR, &o.phase, "TRAIN or TEST (default TRAIN)"},
      {"level", NR_FLAG_INT, &o.level, "net state level"},
      {"stage", NR_FLAG_STR, &o.stage, "comma-separated net state stages"},
      {NULL, 0, NULL, NULL}};
  char usage[512];
  snprintf(usage, sizeof usage, "netrun time %s [--iterations N]", usage_common);
  const char *pos[1];
  int npos;
  int r = nr_cli_parse("time", usage, flags, argc, argv, pos, &npos, 0);
  if (r) return r;
  if (o.iterations < 1) {
    nr_cli_error("time: --iterations must be at least 1");
    return 2;
  }
  static nr_error err;
  FILE *log = nr_cli_log();
  built b;
  if ((r = build("time", &o, NR_TRAIN, NULL, &b, &err))) return r;
  nr_net *n = b.net;
  double *fwd = calloc((size_t)n->nlayers + 1, sizeof *fwd);
  double *bwd = calloc((size_t)n->nlayers + 1, sizeof *bwd);
  if (!fwd || !bwd) {
    free(fwd);
    free(bwd);
    built_free(&b);
    nr_cli_error("time: out of memory");
    return 1;
  }
  float loss = 0;
  fprintf(log, "Performing Forward\n");
  nr_status st = nr_net_forward(n, &loss, &err);
  if (st == NR_OK) {
    fprintf(log, "Initial loss: %g\n", loss);
    fprintf(log, "Performing Backward\n");
    st = nr_net_backward(n, &err);
  }
  double total_f = 0, total_b = 0, t0 = now_ms();
  if (st == NR_OK) {
    fprintf(log, "*** Benchmark begins ***\n");
    fprintf(log, "Testing for %d iterations.\n", o.iterations);
  }
  for (int it = 0; it < o.iterations && st == NR_OK; it++) {
    double it0 = now_ms();
    for (int i = 0; i < n->nlayers && st == NR_OK; i++) {
      double a = now_ms();
      st = nr_net_forward_layer(n, i, NULL, &err);
      fwd[i] += now_ms() - a;
    }
    total_f += now_ms() - it0;
    double b0 = now_ms();
    for (int i = n->nlayers - 1; i >= 0 && st == NR_OK; i--) {
      double a = now_ms();
      st = nr_net_backward_layer_all(n, i, &err); /* a deploy net's too, as caffe time */
      bwd[i] += now_ms() - a;
    }
    total_b += now_ms() - b0;
    if (st == NR_OK)
      fprintf(log, "Iteration: %d forward-backward time: %.4g ms.\n", it + 1, now_ms() - it0);
  }
  double total = now_ms() - t0;
  if (st == NR_OK) {
    fprintf(log, "Average time per layer: \n");
    for (int i = 0; i < n->nlayers; i++) {
      fprintf(log, "%10s\tforward: %.5g ms.\n", n->layers[i]->name, fwd[i] / o.iterations);
      fprintf(log, "%10s\tbackward: %.5g ms.\n", n->layers[i]->name, bwd[i] / o.iterations);
    }
    fprintf(log, "Average Forward pass: %.5g ms.\n", total_f / o.iterations);
    fprintf(log, "Average Backward pass: %.5g ms.\n", total_b / o.iterations);
    fprintf(log, "Average Forward-Backward: %.5g ms.\n", total / o.iterations);
    fprintf(log, "Total Time: %.5g ms.\n", total);
    /* Data layers (no bottoms: Python data layers, Data, HDF5Data...) prefetch ahead of
     * the net: their forward is the time the net waited for a batch. */
    double wait = 0;
    char names[512] = "";
    size_t off = 0;
    for (int i = 0; i < n->nlayers; i++) {
      if (n->layers[i]->nbottom != 0 || !strcmp(n->layers[i]->type->name, "Input")) continue;
      wait += fwd[i];
      if (off < sizeof names - 64)
        off += (size_t)snprintf(names + off, sizeof names - off, "%s%s", off ? ", " : "",
                                n->layers[i]->name);
    }
    if (*names)
      fprintf(log, "data wait: %.4g ms per iteration (forward of %s)\n", wait / o.iterations,
              names);
    fprintf(log, "*** Benchmark ends ***\n");
  } else {
    nr_cli_error("time: %s", err.msg);
  }
  free(fwd);
  free(bwd);
  built_free(&b);
  return st == NR_OK ? 0 : 1;
}

static void human_bytes(double bytes, char *buf, size_t len) {
  const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    u++;
  }
  snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

int nr_cmd_check(int argc, char **argv) {
  run_opts o = {0};
  const nr_flag flags[] = {
      {"model", NR_FLAG_STR, &o.model, "the net prototxt"},
      {"weights", NR_FLAG_STR, &o.weights, "comma-separated .caffemodel files to check too"},
      {"phase", NR_FLAG_STR, &o.phase, "TRAIN or TEST (default TEST)"},
      {"level", NR_FLAG_INT, &o.level, "net state level"},
      {"stage", NR_FLAG_STR, &o.stage, "comma-separated net state stages"},
      {NULL, 0, NULL, NULL}};
  char usage[512];
  snprintf(usage, sizeof usage, "netrun check %s", usage_common);
  const char *pos[1];
  int npos;
  int r = nr_cli_parse("check", usage, flags, argc, argv, pos, &npos, 0);
  if (r) return r;
  static nr_error err;
  built b;
  if ((r = build("check", &o, NR_TEST, NULL, &b, &err))) return r;
  nr_net *n = b.net;
  printf("net '%s', phase %s: %d layers, %d blobs\n", n->name,
         n->phase == NR_TRAIN ? "TRAIN" : "TEST", n->nlayers, n->nblobs);
  printf("%-4s %-24s %-20s %-28s %12s %10s\n", "#", "layer", "type", "top shapes", "params",
         "memory");
  int64_t total_params = 0;
  double total_mem = 0;
  for (int i = 0; i < n->nlayers; i++) {
    nr_layer *l = n->layers[i];
    int64_t params = 0;
    for (int j = 0; j < l->nblobs; j++) params += l->blobs[j]->count;
    double mem = 0;
    for (int t = 0; t < l->ntop; t++) {
      bool inplace = false;
      for (int k = 0; k < l->nbottom; k++) inplace |= l->bottom[k] == l->top[t];
      if (!inplace) mem += (double)l->top[t]->count * 2 * sizeof(float);
    }
    mem += (double)params * 2 * sizeof(float);
    total_params += params;
    total_mem += mem;
    char shapes[1024] = "";
    size_t off = 0;
    for (int t = 0; t < l->ntop && off < sizeof shapes - 64; t++) {
      off += (size_t)snprintf(shapes + off, sizeof shapes - off, "%s", t ? "; " : "");
      for (int a = 0; a < l->top[t]->num_axes && off < sizeof shapes - 32; a++)
        off += (size_t)snprintf(shapes + off, sizeof shapes - off, "%s%lld", a ? "x" : "",
                                (long long)l->top[t]->shape[a]);
      if (l->top[t]->num_axes == 0)
        off += (size_t)snprintf(shapes + off, sizeof shapes - off, "scalar");
    }
    char m[32];
    human_bytes(mem, m, sizeof m);
    printf("%-4d %-24s %-20s %-28s %12lld %10s\n", i, l->name, l->type->name, shapes,
           (long long)params, m);
  }
  char m[32];
  human_bytes(total_mem, m, sizeof m);
  printf("total: %lld learnable values in %d parameter blobs, %s of blob memory\n",
         (long long)total_params, n->nlearnable, m);
  printf("outputs:");
  for (int k = 0; k < n->noutputs; k++) printf(" %s", n->outputs[k]->name);
  printf("\n");
  built_free(&b);
  return 0;
}

int nr_cmd_upgrade(int argc, char **argv) {
  const nr_flag flags[] = {{NULL, 0, NULL, NULL}};
  const char *pos[2];
  int npos;
  int r = nr_cli_parse("upgrade", "netrun upgrade IN [OUT]  (IN may be - for stdin)", flags,
                       argc, argv, pos, &npos, 2);
  if (r) return r;
  if (npos < 1) {
    nr_cli_error("upgrade: give the prototxt to upgrade (netrun upgrade IN [OUT])");
    return 2;
  }
  static nr_error err;
  FILE *out = stdout;
  char tmp[4096] = "";
  if (npos == 2 && strcmp(pos[1], "-") != 0) {
    snprintf(tmp, sizeof tmp, "%s.tmp", pos[1]);
    out = fopen(tmp, "w");
    if (!out) {
      nr_cli_error("upgrade: cannot write %s", pos[1]);
      return 1;
    }
  }
  nr_status st = nr_upgrade_text_file(pos[0], out, &err);
  if (out != stdout) {
    if (fclose(out) != 0 && st == NR_OK)
      st = nr_err_set(&err, NR_ERR_IO, "%s: write failed", pos[1]);
    if (st == NR_OK && rename(tmp, pos[1]) != 0)
      st = nr_err_set(&err, NR_ERR_IO, "%s: cannot write", pos[1]);
    if (st != NR_OK) remove(tmp);
  }
  if (st != NR_OK) {
    nr_cli_error("%s", err.msg);
    return 1;
  }
  return 0;
}
