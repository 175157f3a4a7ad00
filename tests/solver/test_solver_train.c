/* Training through the solver, Caffe's way (test_gradient_based_solver.cpp): a
 * least-squares net (Input -> InnerProduct -> EuclideanLoss) trained by every solver type,
 * each update compared with a reference computed here in double precision from the
 * formulas of caffe-reference.md §6; snapshot + restore against uninterrupted training
 * (bit-identical); the same random_seed twice (bit-identical); the log lines users' parsers
 * read; the rescue snapshot on a mid-training error; stop/snapshot requests; validation. */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nr_test.h"
#include "solver.h"
#include "textformat.h"

enum { N = 4, K = 3 };

static char tmpdir[64];

static const char *least_squares_net =
    "  name: 'LeastSquares'\n"
    "  layer { name: 'input' type: 'Input' top: 'data' top: 'targets'\n"
    "          input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 1 } } }\n"
    "  layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip'\n"
    "          param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }\n"
    "          inner_product_param { num_output: 1\n"
    "            weight_filler { type: 'gaussian' std: 1 }\n"
    "            bias_filler { type: 'gaussian' std: 1 } } }\n"
    "  layer { name: 'loss' type: 'EuclideanLoss' bottom: 'ip' bottom: 'targets' top: 'loss' }\n";

static const char *dummy_data_net =
    "  name: 'LeastSquaresDummy'\n"
    "  layer { name: 'data' type: 'DummyData' top: 'data' top: 'targets'\n"
    "          dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 1 }\n"
    "            data_filler { type: 'gaussian' std: 1 } data_filler { type: 'gaussian' std: 1 } } "
    "}\n"
    "  layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip'\n"
    "          inner_product_param { num_output: 1\n"
    "            weight_filler { type: 'gaussian' std: 1 }\n"
    "            bias_filler { type: 'gaussian' std: 1 } } }\n"
    "  layer { name: 'loss' type: 'EuclideanLoss' bottom: 'ip' bottom: 'targets' top: 'loss' }\n";

/* Parses "net_param { <net> } <extra>" as a SolverParameter. */
static Caffe__SolverParameter *solver_param(const char *net, const char *extra, nr_error *err) {
  size_t len = strlen(net) + strlen(extra) + 64;
  char *text = malloc(len);
  snprintf(text, len, "net_param {\n%s}\n%s\n", net ? net : "", extra);
  ProtobufCMessage *m = NULL;
  nr_status st = nr_text_parse(text, strlen(text), "<solver>", &caffe__solver_parameter__descriptor,
                               &m, err);
  free(text);
  return st == NR_OK ? (Caffe__SolverParameter *)m : NULL;
}

/* Fixed inputs of the least-squares problem, the same for every solver built. */
static void fill_inputs(nr_net *n) {
  nr_blob *x = nr_net_blob(n, "data"), *y = nr_net_blob(n, "targets");
  for (int i = 0; i < N * K; i++) x->data[i] = (float)sin(0.9 * i + 0.3);
  for (int i = 0; i < N; i++) y->data[i] = (float)cos(1.7 * i) * 2.0f;
}

static FILE *null_log(void) {
  static FILE *f;
  if (!f) f = fopen("/dev/null", "w");
  return f;
}

static nr_solver *make_solver(const char *net, const char *extra, FILE *log, nr_error *err) {
  Caffe__SolverParameter *p = solver_param(net, extra, err);
  if (!p) return NULL;
  nr_solver_opts o;
  memset(&o, 0, sizeof o);
  o.log = log ? log : null_log();
  nr_solver *s = NULL;
  if (nr_solver_create(p, &o, &s, err) != NR_OK) s = NULL;
  protobuf_c_message_free_unpacked(&p->base, NULL);
  return s;
}

/* ---- the reference ------------------------------------------------------------------------ */

typedef struct ref_cfg {
  nr_solver_kind kind;
  const char *policy; /* fixed, inv, step */
  double base_lr, gamma, power;
  int stepsize;
  double momentum, momentum2, delta, rms_decay;
  double weight_decay;
  bool l1;
  int iter_size;
  double clip;
} ref_cfg;

static double sgnd(double v) { return (v > 0) - (v < 0); }

static void check_against_reference(const ref_cfg *c, const char *extra) {
  nr_error err;
  nr_solver *s = make_solver(least_squares_net, extra, NULL, &err);
  if (!s) NR_FAIL_("solver for [%s]: %s", extra, err.msg);
  nr_net *n = nr_solver_net(s);
  fill_inputs(n);
  CHECK_INT_EQ(n->nlearnable, 2);
  const nr_blob *Wb = n->learnable[0], *bb = n->learnable[1];
  CHECK_INT_EQ(Wb->count, K);
  CHECK_INT_EQ(bb->count, 1);
  const float *X = nr_net_blob(n, "data")->data, *Y = nr_net_blob(n, "targets")->data;
  /* params: 0..K-1 weights, K bias */
  double w[K + 1], h1[K + 1] = {0}, h2[K + 1] = {0};
  const double lr_mult[K + 1] = {1, 1, 1, 2}, decay_mult[K + 1] = {1, 1, 1, 0};
  for (int j = 0; j < K; j++) w[j] = Wb->data[j];
  w[K] = bb->data[0];
  for (int t = 0; t < 5; t++) {
    double g[K + 1] = {0}, loss = 0;
    for (int i = 0; i < N; i++) {
      double r = w[K] - Y[i];
      for (int j = 0; j < K; j++) r += w[j] * X[i * K + j];
      loss += r * r / (2.0 * N);
      for (int j = 0; j < K; j++) g[j] += r * X[i * K + j] / N;
      g[K] += r / N;
    }
    for (int j = 0; j <= K; j++) g[j] *= c->iter_size; /* accumulated over iter_size passes */
    if (c->clip >= 0) {
      double ss = 0;
      for (int j = 0; j <= K; j++) ss += g[j] * g[j];
      if (sqrt(ss) > c->clip)
        for (int j = 0; j <= K; j++) g[j] *= c->clip / sqrt(ss);
    }
    double rate = c->base_lr;
    if (strcmp(c->policy, "inv") == 0) rate = c->base_lr * pow(1 + c->gamma * t, -c->power);
    if (strcmp(c->policy, "step") == 0) rate = c->base_lr * pow(c->gamma, t / c->stepsize);
    for (int j = 0; j <= K; j++) {
      g[j] /= c->iter_size;
      g[j] += c->weight_decay * decay_mult[j] * (c->l1 ? sgnd(w[j]) : w[j]);
      const double lr = rate * lr_mult[j], mu = c->momentum, d = c->delta;
      double u = 0;
      switch (c->kind) {
      case NR_SOLVER_SGD:
        h1[j] = mu * h1[j] + lr * g[j];
        u = h1[j];
        break;
      case NR_SOLVER_NESTEROV: {
        double prev = h1[j];
        h1[j] = mu * h1[j] + lr * g[j];
        u = (1 + mu) * h1[j] - mu * prev;
        break;
      }
      case NR_SOLVER_ADAGRAD:
        h1[j] += g[j] * g[j];
        u = lr * g[j] / (sqrt(h1[j]) + d);
        break;
      case NR_SOLVER_RMSPROP:
        h1[j] = c->rms_decay * h1[j] + (1 - c->rms_decay) * g[j] * g[j];
        u = lr * g[j] / (sqrt(h1[j]) + d);
        break;
      case NR_SOLVER_ADADELTA: {
        h1[j] = mu * h1[j] + (1 - mu) * g[j] * g[j];
        double v = g[j] * sqrt((h2[j] + d) / (h1[j] + d));
        h2[j] = mu * h2[j] + (1 - mu) * v * v;
        u = lr * v;
        break;
      }
      case NR_SOLVER_ADAM:
        h1[j] = mu * h1[j] + (1 - mu) * g[j];
        h2[j] = c->momentum2 * h2[j] + (1 - c->momentum2) * g[j] * g[j];
        u = lr * sqrt(1 - pow(c->momentum2, t + 1)) / (1 - pow(mu, t + 1)) * h1[j] /
            (sqrt(h2[j]) + d);
        break;
      }
      w[j] -= u;
    }
    if (nr_solver_step(s, 1, &err) != NR_OK) {
      nr_solver_destroy(s);
      NR_FAIL_("step %d for [%s]: %s", t, extra, err.msg);
    }
    double got_loss = nr_solver_smoothed_loss(s);
    for (int j = 0; j <= K; j++) {
      double got = j < K ? Wb->data[j] : bb->data[0];
      if (!(fabs(got - w[j]) <= 1e-5 * (1 + fabs(w[j])))) {
        nr_solver_destroy(s);
        NR_FAIL_("[%s] iteration %d param %d: solver %.9g, reference %.9g", extra, t, j, got, w[j]);
      }
    }
    if (!(fabs(got_loss - loss) <= 1e-5 * (1 + loss))) {
      nr_solver_destroy(s);
      NR_FAIL_("[%s] iteration %d loss: solver %.9g, reference %.9g", extra, t, got_loss, loss);
    }
  }
  CHECK_INT_EQ(nr_solver_iter(s), 5);
  nr_solver_destroy(s);
}

static ref_cfg cfg(nr_solver_kind k) {
  ref_cfg c = {k, "fixed", 0.05, 0, 0, 1, 0, 0.999f, 1e-8f, 0.99f, 0, false, 1, -1};
  return c;
}

static void test_sgd(void) { ref_cfg c = cfg(NR_SOLVER_SGD);
  check_against_reference(&c, "base_lr: 0.05 lr_policy: 'fixed'"); }
static void test_sgd_momentum_l2(void) {
  ref_cfg c = cfg(NR_SOLVER_SGD);
  c.momentum = 0.9f;
  c.weight_decay = 0.1f;
  check_against_reference(&c, "base_lr: 0.05 lr_policy: 'fixed' momentum: 0.9 weight_decay: 0.1");
}
static void test_sgd_momentum_l1(void) {
  ref_cfg c = cfg(NR_SOLVER_SGD);
  c.momentum = 0.9f;
  c.weight_decay = 0.1f;
  c.l1 = true;
  check_against_reference(&c, "base_lr: 0.05 lr_policy: 'fixed' momentum: 0.9 weight_decay: 0.1 "
                              "regularization_type: 'L1'");
}
static void test_sgd_iter_size(void) {
  ref_cfg c = cfg(NR_SOLVER_SGD);
  c.momentum = 0.9f;
  c.weight_decay = 0.1f;
  c.iter_size = 4;
  check_against_reference(&c, "base_lr: 0.05 lr_policy: 'fixed' momentum: 0.9 weight_decay: 0.1 "
                              "iter_size: 4");
}
static void test_sgd_clip(void) {
  ref_cfg c = cfg(NR_SOLVER_SGD);
  c.momentum = 0.5f;
  c.clip = 0.1f;
  c.iter_size = 2;
  check_against_reference(&c, "base_lr: 0.05 lr_policy: 'fixed' momentum: 0.5 clip_gradients: 0.1 "
                              "iter_size: 2");
}
static void test_sgd_inv_policy(void) {
  ref_cfg c = cfg(NR_SOLVER_SGD);
  c.policy = "inv";
  c.gamma = 0.5f;
  c.power = 0.75f;
  c.momentum = 0.9f;
  check_against_reference(&c,
                          "base_lr: 0.05 lr_policy: 'inv' gamma: 0.5 power: 0.75 momentum: 0.9");
}
static void test_sgd_step_policy(void) {
  ref_cfg c = cfg(NR_SOLVER_SGD);
  c.policy = "step";
  c.gamma = 0.1f;
  c.stepsize = 2;
  check_against_reference(&c, "base_lr: 0.05 lr_policy: 'step' gamma: 0.1 stepsize: 2");
}
static void test_nesterov(void) {
  ref_cfg c = cfg(NR_SOLVER_NESTEROV);
  c.momentum = 0.9f;
  c.weight_decay = 0.1f;
  check_against_reference(&c, "type: 'Nesterov' base_lr: 0.05 lr_policy: 'fixed' momentum: 0.9 "
                              "weight_decay: 0.1");
}
static void test_adagrad(void) {
  ref_cfg c = cfg(NR_SOLVER_ADAGRAD);
  c.weight_decay = 0.1f;
  check_against_reference(&c, "type: 'AdaGrad' base_lr: 0.05 lr_policy: 'fixed' weight_decay: 0.1");
}
static void test_rmsprop(void) {
  ref_cfg c = cfg(NR_SOLVER_RMSPROP);
  c.rms_decay = 0.95f;
  c.weight_decay = 0.1f;
  check_against_reference(&c, "type: 'RMSProp' base_lr: 0.05 lr_policy: 'fixed' rms_decay: 0.95 "
                              "weight_decay: 0.1");
}
static void test_adadelta(void) {
  ref_cfg c = cfg(NR_SOLVER_ADADELTA);
  c.base_lr = 1.0;
  c.momentum = 0.95f;
  c.delta = 1e-6f;
  c.weight_decay = 0.1f;
  check_against_reference(&c, "type: 'AdaDelta' base_lr: 1 lr_policy: 'fixed' momentum: 0.95 "
                              "delta: 1e-6 weight_decay: 0.1");
}
static void test_adam(void) {
  ref_cfg c = cfg(NR_SOLVER_ADAM);
  c.momentum = 0.9f;
  c.weight_decay = 0.1f;
  check_against_reference(&c, "type: 'Adam' base_lr: 0.05 lr_policy: 'fixed' momentum: 0.9 "
                              "momentum2: 0.999 weight_decay: 0.1");
}
static void test_deprecated_solver_type(void) {
  ref_cfg c = cfg(NR_SOLVER_NESTEROV);
  c.momentum = 0.9f;
  check_against_reference(&c,
                          "solver_type: NESTEROV base_lr: 0.05 lr_policy: 'fixed' momentum: 0.9");
}

/* ---- snapshot / restore ------------------------------------------------------------------- */

static bool same_weights(nr_net *a, nr_net *b) {
  if (a->nlearnable != b->nlearnable) return false;
  for (int i = 0; i < a->nlearnable; i++)
    if (a->learnable[i]->count != b->learnable[i]->count ||
        memcmp(a->learnable[i]->data, b->learnable[i]->data,
               (size_t)a->learnable[i]->count * sizeof(float)) != 0)
      return false;
  return true;
}

static void check_resume(const char *type_fields) {
  nr_error err;
  char extra[1024];
  snprintf(extra, sizeof extra,
           "%s base_lr: 0.05 lr_policy: 'multistep' gamma: 0.5 stepvalue: 2 stepvalue: 3 "
           "weight_decay: 0.01 random_seed: 5 snapshot_prefix: '%s/resume'",
           type_fields, tmpdir);
  nr_solver *a = make_solver(least_squares_net, extra, NULL, &err);
  if (!a) NR_FAIL_("%s", err.msg);
  fill_inputs(nr_solver_net(a));
  CHECK_OK(nr_solver_step(a, 6, &err), &err);

  nr_solver *b = make_solver(least_squares_net, extra, NULL, &err);
  if (!b) NR_FAIL_("%s", err.msg);
  fill_inputs(nr_solver_net(b));
  CHECK_OK(nr_solver_step(b, 3, &err), &err);
  CHECK_OK(nr_solver_snapshot(b, &err), &err);
  nr_solver_destroy(b);

  /* Another seed for the resumed run: the restore must bring back every weight. */
  snprintf(extra, sizeof extra,
           "%s base_lr: 0.05 lr_policy: 'multistep' gamma: 0.5 stepvalue: 2 stepvalue: 3 "
           "weight_decay: 0.01 random_seed: 99 snapshot_prefix: '%s/resume'",
           type_fields, tmpdir);
  nr_solver *c = make_solver(least_squares_net, extra, NULL, &err);
  if (!c) NR_FAIL_("%s", err.msg);
  fill_inputs(nr_solver_net(c));
  char path[256];
  snprintf(path, sizeof path, "%s/resume_iter_3.solverstate", tmpdir);
  CHECK_OK(nr_solver_restore(c, path, &err), &err);
  CHECK_INT_EQ(nr_solver_iter(c), 3);
  CHECK_OK(nr_solver_step(c, 3, &err), &err);
  CHECK_INT_EQ(nr_solver_iter(c), 6);
  bool same = same_weights(nr_solver_net(a), nr_solver_net(c));
  nr_solver_destroy(a);
  nr_solver_destroy(c);
  if (!same) NR_FAIL_("[%s] 3 + snapshot + restore + 3 iterations differ from 6", type_fields);
}

static void test_resume_sgd(void) { check_resume("momentum: 0.9"); }
static void test_resume_nesterov(void) { check_resume("type: 'Nesterov' momentum: 0.9"); }
static void test_resume_adagrad(void) { check_resume("type: 'AdaGrad'"); }
static void test_resume_rmsprop(void) { check_resume("type: 'RMSProp'"); }
static void test_resume_adadelta(void) { check_resume("type: 'AdaDelta' momentum: 0.95"); }
static void test_resume_adam(void) { check_resume("type: 'Adam' momentum: 0.9"); }

static void test_restore_errors(void) {
  nr_error err;
  char extra[512], path[256];
  snprintf(extra, sizeof extra, "base_lr: 0.05 lr_policy: 'fixed' snapshot_prefix: '%s/re'",
           tmpdir);
  nr_solver *s = make_solver(least_squares_net, extra, NULL, &err);
  if (!s) NR_FAIL_("%s", err.msg);
  CHECK_OK(nr_solver_step(s, 1, &err), &err);
  CHECK_OK(nr_solver_snapshot(s, &err), &err);
  nr_solver_destroy(s);
  /* An Adam solver needs twice the history an SGD one wrote. */
  snprintf(extra, sizeof extra, "type: 'Adam' base_lr: 0.05 lr_policy: 'fixed'");
  s = make_solver(least_squares_net, extra, NULL, &err);
  if (!s) NR_FAIL_("%s", err.msg);
  snprintf(path, sizeof path, "%s/re_iter_1.solverstate", tmpdir);
  CHECK_INT_EQ(nr_solver_restore(s, path, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "history blobs");
  CHECK_INT_EQ(nr_solver_iter(s), 0);
  snprintf(path, sizeof path, "%s/nonexistent.solverstate", tmpdir);
  CHECK(nr_solver_restore(s, path, &err) != NR_OK);
  CHECK_CONTAINS(err.msg, "nonexistent.solverstate");
  CHECK_INT_EQ(nr_solver_restore(s, "x.solverstate.h5", &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "HDF5");
  nr_solver_destroy(s);
}

/* A snapshot moved to another directory still restores: learned_net is looked up next to
 * the .solverstate when the stored path does not open. */
static void test_restore_moved(void) {
  nr_error err;
  char extra[512], cmd[512], path[256];
  snprintf(extra, sizeof extra, "base_lr: 0.05 lr_policy: 'fixed' snapshot_prefix: '%s/mv'",
           tmpdir);
  nr_solver *s = make_solver(least_squares_net, extra, NULL, &err);
  if (!s) NR_FAIL_("%s", err.msg);
  fill_inputs(nr_solver_net(s));
  CHECK_OK(nr_solver_step(s, 2, &err), &err);
  CHECK_OK(nr_solver_snapshot(s, &err), &err);
  float w0 = nr_solver_net(s)->learnable[0]->data[0];
  nr_solver_destroy(s);
  snprintf(cmd, sizeof cmd, "mkdir -p %s/moved && mv %s/mv_iter_2.* %s/moved/", tmpdir, tmpdir,
           tmpdir);
  CHECK_INT_EQ(system(cmd), 0);
  s = make_solver(least_squares_net, extra, NULL, &err);
  if (!s) NR_FAIL_("%s", err.msg);
  snprintf(path, sizeof path, "%s/moved/mv_iter_2.solverstate", tmpdir);
  nr_status st = nr_solver_restore(s, path, &err);
  float w1 = nr_solver_net(s)->learnable[0]->data[0];
  nr_solver_destroy(s);
  CHECK_OK(st, &err);
  CHECK(w0 == w1);
}

/* ---- seeds -------------------------------------------------------------------------------- */

static void train_dummy(int64_t seed, float *w, nr_error *err, nr_status *st) {
  char extra[256];
  snprintf(extra, sizeof extra, "base_lr: 0.05 lr_policy: 'fixed' momentum: 0.9 random_seed: %lld",
           (long long)seed);
  nr_solver *s = make_solver(dummy_data_net, extra, NULL, err);
  *st = s ? nr_solver_step(s, 10, err) : NR_ERR_INPUT;
  if (s && *st == NR_OK) {
    nr_net *n = nr_solver_net(s);
    memcpy(w, n->learnable[0]->data, K * sizeof(float));
    w[K] = n->learnable[1]->data[0];
  }
  nr_solver_destroy(s);
}

static void test_same_seed_same_weights(void) {
  nr_error err;
  nr_status st;
  float a[K + 1], b[K + 1], c[K + 1];
  train_dummy(1701, a, &err, &st);
  CHECK_OK(st, &err);
  train_dummy(1701, b, &err, &st);
  CHECK_OK(st, &err);
  train_dummy(1702, c, &err, &st);
  CHECK_OK(st, &err);
  CHECK(memcmp(a, b, sizeof a) == 0);
  CHECK(memcmp(a, c, sizeof a) != 0);
}

/* ---- Solve and its log -------------------------------------------------------------------- */

static char *run_solve(const char *extra, nr_status *st, nr_error *err,
                       volatile sig_atomic_t *stop, volatile sig_atomic_t *snap, int pre_steps,
                       bool break_input) {
  char *buf = NULL;
  size_t len = 0;
  FILE *log = open_memstream(&buf, &len);
  Caffe__SolverParameter *p = solver_param(least_squares_net, extra, err);
  if (!p) {
    *st = NR_ERR_INPUT;
    fclose(log);
    return buf;
  }
  nr_solver_opts o;
  memset(&o, 0, sizeof o);
  o.log = log;
  o.stop_flag = stop;
  o.snapshot_flag = snap;
  nr_solver *s = NULL;
  *st = nr_solver_create(p, &o, &s, err);
  if (*st == NR_OK) {
    fill_inputs(nr_solver_net(s));
    if (pre_steps) *st = nr_solver_step(s, pre_steps, err);
    if (break_input) {
      nr_error e2;
      nr_blob_reshape(nr_net_blob(nr_solver_net(s), "data"), 2, (int64_t[]){4, 5}, &e2);
    }
    if (*st == NR_OK) *st = nr_solver_solve(s, err);
  }
  nr_solver_destroy(s);
  protobuf_c_message_free_unpacked(&p->base, NULL);
  fclose(log);
  return buf;
}

/* Does <tmpdir>/<prefix>_iter_<n><ext> exist? */
static bool file_exists(const char *prefix, int n, const char *ext) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s_iter_%d%s", tmpdir, prefix, n, ext);
  return access(path, F_OK) == 0;
}

static void test_solve_log(void) {
  nr_error err;
  nr_status st;
  char extra[2048];
  snprintf(extra, sizeof extra,
           "test_net_param {\n%s}\n"
           "test_iter: 2 test_interval: 2 display: 1 max_iter: 3 base_lr: 0.01 "
           "lr_policy: 'fixed' snapshot: 2 snapshot_prefix: '%s/log' average_loss: 2 "
           "test_compute_loss: true",
           least_squares_net, tmpdir);
  char *log = run_solve(extra, &st, &err, NULL, NULL, 0, false);
  if (st != NR_OK) {
    free(log);
    NR_FAIL_("solve: %s", err.msg);
  }
  char expect[512];
  CHECK_CONTAINS(log, "Solving LeastSquares\n");
  CHECK_CONTAINS(log, "Learning Rate Policy: fixed\n");
  CHECK_CONTAINS(log, "Iteration 0, Testing net (#0)\n");
  CHECK_CONTAINS(log, "\n    Test net output #0: loss = ");
  CHECK_CONTAINS(log, " (* 1 = ");
  CHECK_CONTAINS(log, "Iteration 2, Testing net (#0)\nTest loss: ");
  CHECK_CONTAINS(log, "\nIteration 0 (0 iter/s, ");
  CHECK_CONTAINS(log, "s/1 iters), loss = ");
  CHECK_CONTAINS(log, "\n    Train net output #0: loss = ");
  CHECK_CONTAINS(log, "\nIteration 1, lr = 0.01\n");
  snprintf(expect, sizeof expect, "\nSnapshotting to binary proto file %s/log_iter_2.caffemodel\n",
           tmpdir);
  CHECK_CONTAINS(log, expect);
  snprintf(expect, sizeof expect,
           "\nSnapshotting solver state to binary proto file %s/log_iter_2.solverstate\n", tmpdir);
  CHECK_CONTAINS(log, expect);
  snprintf(expect, sizeof expect, "\nSnapshotting to binary proto file %s/log_iter_3.caffemodel\n",
           tmpdir);
  CHECK_CONTAINS(log, expect);
  CHECK_CONTAINS(log, "\nIteration 3, loss = ");
  CHECK(strstr(log, "Iteration 4") == NULL);
  CHECK(strstr(log, "Optimization Done.\n") != NULL);
  /* Every display and test value parses with parse_log.py's number pattern. */
  int displays = 0, tests = 0;
  for (char *line = log; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
    double v, w, l;
    int i;
    char name[64];
    if (sscanf(line, "    Test net output #%d: %63s = %lf (* %lf = %lf loss)", &i, name, &v, &w,
               &l) == 5) {
      CHECK_STR_EQ(name, "loss");
      CHECK_NEAR(l, w * v, 1e-4 * (1 + fabs(l)));
      tests++;
    }
    int it;
    if (sscanf(line, "Iteration %d (%lf iter/s, %lfs/1 iters), loss = %lf", &it, &v, &w, &l) == 4)
      displays++;
  }
  CHECK_INT_EQ(displays, 3);
  CHECK_INT_EQ(tests, 2);
  free(log);
}

static void test_rescue_snapshot_on_error(void) {
  nr_error err;
  nr_status st;
  char extra[512];
  snprintf(extra, sizeof extra,
           "max_iter: 10 base_lr: 0.01 lr_policy: 'fixed' snapshot_prefix: '%s/resc'", tmpdir);
  char *log = run_solve(extra, &st, &err, NULL, NULL, 3, true);
  CHECK(st != NR_OK);
  CHECK_CONTAINS(err.msg, "iteration 3");
  CHECK_CONTAINS(err.msg, "resc_iter_3.solverstate");
  CHECK_CONTAINS(err.msg, "expected 3");
  CHECK_CONTAINS(log, "resc_iter_3.caffemodel");
  CHECK(file_exists("resc", 3, ".solverstate"));
  CHECK(file_exists("resc", 3, ".caffemodel"));
  free(log);
  /* Nothing to save when no update was made. */
  snprintf(extra, sizeof extra,
           "max_iter: 10 base_lr: 0.01 lr_policy: 'fixed' snapshot_prefix: '%s/resc0'", tmpdir);
  log = run_solve(extra, &st, &err, NULL, NULL, 0, true);
  CHECK(st != NR_OK);
  CHECK(strstr(err.msg, "saved") == NULL);
  CHECK(!file_exists("resc0", 0, ".caffemodel"));
  free(log);
}

static void test_stop_and_snapshot_requests(void) {
  nr_error err;
  nr_status st;
  char extra[512];
  volatile sig_atomic_t stop = 1, snap = 0;
  snprintf(extra, sizeof extra,
           "max_iter: 10 base_lr: 0.01 lr_policy: 'fixed' snapshot_prefix: '%s/stop'", tmpdir);
  char *log = run_solve(extra, &st, &err, &stop, &snap, 0, false);
  CHECK_OK(st, &err);
  CHECK_CONTAINS(log, "Optimization stopped early.");
  CHECK(strstr(log, "Optimization Done.") == NULL);
  CHECK(file_exists("stop", 1, ".solverstate"));
  free(log);

  stop = 0;
  snap = 1;
  snprintf(extra, sizeof extra,
           "max_iter: 3 base_lr: 0.01 lr_policy: 'fixed' snapshot_after_train: false "
           "snapshot_prefix: '%s/snap'", tmpdir);
  log = run_solve(extra, &st, &err, &stop, &snap, 0, false);
  CHECK_OK(st, &err);
  CHECK_INT_EQ(snap, 0);
  CHECK(file_exists("snap", 1, ".caffemodel"));
  CHECK(!file_exists("snap", 3, ".caffemodel"));
  CHECK_CONTAINS(log, "Optimization Done.");
  free(log);
}

static void test_test_nets_share_weights(void) {
  nr_error err;
  char extra[2048];
  snprintf(extra, sizeof extra, "test_iter: 1 test_interval: 100 base_lr: 0.01 lr_policy: 'fixed'");
  nr_solver *s = make_solver(least_squares_net, extra, NULL, &err);
  if (!s) NR_FAIL_("%s", err.msg);
  CHECK_INT_EQ(nr_solver_num_test_nets(s), 1); /* the generic net serves as test net too */
  nr_net *tn = nr_solver_test_net(s, 0);
  CHECK(tn && tn->phase == NR_TEST);
  fill_inputs(nr_solver_net(s));
  CHECK_OK(nr_solver_step(s, 2, &err), &err);
  CHECK(same_weights(nr_solver_net(s), tn));
  nr_solver_destroy(s);
}

/* average_loss N: the display loss is the mean of the last N iteration losses. */
static void test_average_loss(void) {
  nr_error err;
  double raw[5];
  nr_solver *a = make_solver(least_squares_net, "base_lr: 0.05 lr_policy: 'fixed' random_seed: 1",
                             NULL, &err);
  if (!a) NR_FAIL_("%s", err.msg);
  fill_inputs(nr_solver_net(a));
  for (int t = 0; t < 5; t++) {
    nr_status st = nr_solver_step(a, 1, &err);
    raw[t] = nr_solver_smoothed_loss(a);
    if (st != NR_OK) break;
  }
  nr_solver_destroy(a);
  nr_solver *b = make_solver(least_squares_net,
                             "base_lr: 0.05 lr_policy: 'fixed' random_seed: 1 average_loss: 3",
                             NULL, &err);
  if (!b) NR_FAIL_("%s", err.msg);
  fill_inputs(nr_solver_net(b));
  nr_status st = nr_solver_step(b, 5, &err);
  double got = nr_solver_smoothed_loss(b);
  nr_solver_destroy(b);
  CHECK_OK(st, &err);
  CHECK(raw[2] != raw[4]);
  CHECK_NEAR(got, (raw[2] + raw[3] + raw[4]) / 3, 1e-6 * (1 + raw[4]));
}

/* train_state and the CLI's --stage select layers of the train net only; test_state those
 * of a test net. */
static void test_states(void) {
  static const char *net =
      "  name: 'Staged'\n"
      "  layer { name: 'input' type: 'Input' top: 'data' top: 'targets'\n"
      "          input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 1 } } }\n"
      "  layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip'\n"
      "          inner_product_param { num_output: 1 } }\n"
      "  layer { name: 'loss' type: 'EuclideanLoss' bottom: 'ip' bottom: 'targets' top: 'loss' }\n"
      "  layer { name: 'sq' type: 'Power' bottom: 'ip' top: 'sq' include { stage: 'extra' } }\n";
  nr_error err;
  nr_solver *s = make_solver(net,
                             "base_lr: 0.1 lr_policy: 'fixed' train_state { stage: 'extra' } "
                             "test_iter: 1 test_interval: 10",
                             NULL, &err);
  if (!s) NR_FAIL_("%s", err.msg);
  bool train_has = nr_net_blob(nr_solver_net(s), "sq") != NULL;
  bool test_has = nr_net_blob(nr_solver_test_net(s, 0), "sq") != NULL;
  nr_solver_destroy(s);
  CHECK(train_has);
  CHECK(!test_has);

  s = make_solver(net,
                  "base_lr: 0.1 lr_policy: 'fixed' test_iter: 1 test_interval: 10 "
                  "test_state { stage: 'extra' }",
                  NULL, &err);
  if (!s) NR_FAIL_("%s", err.msg);
  train_has = nr_net_blob(nr_solver_net(s), "sq") != NULL;
  test_has = nr_net_blob(nr_solver_test_net(s, 0), "sq") != NULL;
  nr_solver_destroy(s);
  CHECK(!train_has);
  CHECK(test_has);

  /* --stage extra from the command line */
  Caffe__SolverParameter *p = solver_param(net, "base_lr: 0.1 lr_policy: 'fixed'", &err);
  if (!p) NR_FAIL_("%s", err.msg);
  const char *stages[] = {"extra"};
  nr_solver_opts o;
  memset(&o, 0, sizeof o);
  o.log = null_log();
  o.stages = stages;
  o.nstages = 1;
  nr_status st = nr_solver_create(p, &o, &s, &err);
  protobuf_c_message_free_unpacked(&p->base, NULL);
  CHECK_OK(st, &err);
  train_has = nr_net_blob(nr_solver_net(s), "sq") != NULL;
  nr_solver_destroy(s);
  CHECK(train_has);
}

/* ---- validation --------------------------------------------------------------------------- */

static void expect_create_error(const char *net, const char *extra, const char *msg) {
  nr_error err;
  nr_solver *s = make_solver(net, extra, NULL, &err);
  if (s) {
    nr_solver_destroy(s);
    NR_FAIL_("[%s] created a solver, expected an error containing \"%s\"", extra, msg);
  }
  CHECK_CONTAINS(err.msg, msg);
}

static void test_validation(void) {
  expect_create_error(least_squares_net, "base_lr: 0.1 lr_policy: 'fixed' snapshot: 100",
                      "snapshot_prefix is required when snapshot > 0");
  expect_create_error(least_squares_net, "base_lr: 0.1 lr_policy: 'fixed' net: 'other.prototxt'",
                      "2 train nets given: give exactly one of net, net_param, train_net");
  expect_create_error(least_squares_net, "base_lr: 0.1 lr_policy: 'fixed' test_iter: 5",
                      "test_interval must be > 0 when there are test nets");
  char extra[2048];
  snprintf(extra, sizeof extra, "base_lr: 0.1 lr_policy: 'fixed' test_net_param {\n%s}",
           least_squares_net);
  expect_create_error(least_squares_net, extra, "test_iter must be given once per test net");
  expect_create_error(least_squares_net,
                      "base_lr: 0.1 lr_policy: 'fixed' regularization_type: 'L3'",
                      "unknown regularization_type \"L3\"");
  expect_create_error(least_squares_net, "base_lr: 0.1 lr_policy: 'fixed' type: 'Foo'",
                      "unknown solver type \"Foo\"");
  expect_create_error(least_squares_net,
                      "base_lr: 0.1 lr_policy: 'fixed' type: 'AdaGrad' momentum: 0.9",
                      "momentum cannot be used with AdaGrad");
  expect_create_error(least_squares_net, "base_lr: 0.1 lr_policy: 'triangle'",
                      "unknown lr_policy \"triangle\"");
  expect_create_error(least_squares_net, "base_lr: 0.1 lr_policy: 'fixed' iter_size: 0",
                      "iter_size must be >= 1");
  expect_create_error(
      least_squares_net,
      "base_lr: 0.1 lr_policy: 'fixed' snapshot: 10 snapshot_prefix: '/nonexistent/dir/x'",
      "cannot write snapshots with snapshot_prefix \"/nonexistent/dir/x\"");
  /* Every message says it comes from the solver. */
  expect_create_error(least_squares_net, "base_lr: 0.1 lr_policy: 'fixed' snapshot: 100",
                      "solver: ");
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/nr_solver_XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  /* snapshot_after_train writes into the current directory when no prefix is set */
  if (chdir(tmpdir) != 0) return 1;
  NR_RUN(test_sgd);
  NR_RUN(test_sgd_momentum_l2);
  NR_RUN(test_sgd_momentum_l1);
  NR_RUN(test_sgd_iter_size);
  NR_RUN(test_sgd_clip);
  NR_RUN(test_sgd_inv_policy);
  NR_RUN(test_sgd_step_policy);
  NR_RUN(test_nesterov);
  NR_RUN(test_adagrad);
  NR_RUN(test_rmsprop);
  NR_RUN(test_adadelta);
  NR_RUN(test_adam);
  NR_RUN(test_deprecated_solver_type);
  NR_RUN(test_resume_sgd);
  NR_RUN(test_resume_nesterov);
  NR_RUN(test_resume_adagrad);
  NR_RUN(test_resume_rmsprop);
  NR_RUN(test_resume_adadelta);
  NR_RUN(test_resume_adam);
  NR_RUN(test_restore_errors);
  NR_RUN(test_restore_moved);
  NR_RUN(test_same_seed_same_weights);
  NR_RUN(test_solve_log);
  NR_RUN(test_rescue_snapshot_on_error);
  NR_RUN(test_stop_and_snapshot_requests);
  NR_RUN(test_test_nets_share_weights);
  NR_RUN(test_average_loss);
  NR_RUN(test_states);
  NR_RUN(test_validation);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (chdir("/") == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return NR_TEST_EXIT();
}
