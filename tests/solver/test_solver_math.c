/* The solver's arithmetic on its own: learning-rate policies against their closed forms,
 * and every update rule against a double-precision reference written from the formulas
 * in caffe-reference.md §6 (not from the code under test). */
#include <math.h>
#include <stdint.h>

#include "nr_test.h"
#include "solver.h"

static Caffe__SolverParameter solver_with(const char *policy) {
  Caffe__SolverParameter p = CAFFE__SOLVER_PARAMETER__INIT;
  p.lr_policy = (char *)policy;
  p.base_lr = 0.01f;
  p.gamma = 0.5f;
  p.power = 0.75f;
  p.stepsize = 100;
  p.max_iter = 1000;
  return p;
}

#define CHECK_RATE(p, iter, expect)                                              \
  do {                                                                           \
    int cs_ = 0;                                                                 \
    double e_ = (expect);                                                        \
    CHECK_NEAR(nr_lr_policy_rate(&(p), (iter), &cs_), e_, 1e-6 * fabs(e_) + 1e-12); \
  } while (0)

static void test_lr_closed_forms(void) {
  nr_error err;
  nr_lr_policy lp;
  Caffe__SolverParameter p;
  const int iters[] = {0, 1, 99, 100, 101, 250, 999, 1000};
  for (size_t i = 0; i < sizeof iters / sizeof iters[0]; i++) {
    int it = iters[i];
    double b = 0.01f, g = 0.5f, pw = 0.75f;
    p = solver_with("fixed");
    CHECK_OK(nr_lr_policy_from_param(&p, &lp, &err), &err);
    CHECK_RATE(lp, it, b);
    p = solver_with("step");
    CHECK_OK(nr_lr_policy_from_param(&p, &lp, &err), &err);
    CHECK_RATE(lp, it, b * pow(g, floor(it / 100.0)));
    p = solver_with("exp");
    p.gamma = 0.999f;
    CHECK_OK(nr_lr_policy_from_param(&p, &lp, &err), &err);
    CHECK_RATE(lp, it, b * pow((double)0.999f, it));
    p = solver_with("inv");
    p.gamma = 1e-4f;
    CHECK_OK(nr_lr_policy_from_param(&p, &lp, &err), &err);
    CHECK_RATE(lp, it, b * pow(1.0 + (double)1e-4f * it, -pw));
    p = solver_with("poly");
    CHECK_OK(nr_lr_policy_from_param(&p, &lp, &err), &err);
    CHECK_RATE(lp, it, b * pow(1.0 - it / 1000.0, pw));
    p = solver_with("sigmoid");
    p.gamma = -0.05f;
    p.stepsize = 200;
    CHECK_OK(nr_lr_policy_from_param(&p, &lp, &err), &err);
    CHECK_RATE(lp, it, b / (1.0 + exp((double)0.05f * (it - 200))));
  }
  /* step records its step in current_step (a .solverstate stores it) */
  p = solver_with("step");
  CHECK_OK(nr_lr_policy_from_param(&p, &lp, &err), &err);
  int cs = 0;
  nr_lr_policy_rate(&lp, 250, &cs);
  CHECK_INT_EQ(cs, 2);
}

static void test_lr_multistep(void) {
  nr_error err;
  nr_lr_policy lp;
  Caffe__SolverParameter p = solver_with("multistep");
  int32_t sv[] = {3, 5, 5, 9};
  p.stepvalue = sv;
  p.n_stepvalue = 4;
  CHECK_OK(nr_lr_policy_from_param(&p, &lp, &err), &err);
  /* iteration by iteration, as the solver calls it: at most one step per call */
  const int expect_step[] = {0, 0, 0, 1, 1, 2, 3, 3, 3, 4, 4, 4};
  int cs = 0;
  for (int it = 0; it < 12; it++) {
    float r = nr_lr_policy_rate(&lp, it, &cs);
    CHECK_INT_EQ(cs, expect_step[it]);
    CHECK_NEAR(r, 0.01 * pow(0.5, expect_step[it]), 1e-9);
  }
  /* jumping ahead (a state restored with current_step 0 at iter 8) advances one step */
  cs = 0;
  nr_lr_policy_rate(&lp, 8, &cs);
  CHECK_INT_EQ(cs, 1);
}

static void test_lr_errors(void) {
  nr_error err;
  nr_lr_policy lp;
  Caffe__SolverParameter p = solver_with("bogus");
  CHECK_INT_EQ(nr_lr_policy_from_param(&p, &lp, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "unknown lr_policy \"bogus\"");
  CHECK_CONTAINS(err.msg, "multistep");
  p = solver_with(NULL);
  CHECK_INT_EQ(nr_lr_policy_from_param(&p, &lp, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "lr_policy is not set");
  p = solver_with("step");
  p.stepsize = 0;
  CHECK_INT_EQ(nr_lr_policy_from_param(&p, &lp, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "stepsize");
  p = solver_with("multistep");
  CHECK_INT_EQ(nr_lr_policy_from_param(&p, &lp, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "stepvalue");
  p = solver_with("poly");
  p.max_iter = 0;
  CHECK_INT_EQ(nr_lr_policy_from_param(&p, &lp, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "max_iter");
}

static void test_kind_parse(void) {
  nr_error err;
  nr_solver_kind k;
  CHECK_OK(nr_solver_kind_parse("Adam", &k, &err), &err);
  CHECK_INT_EQ(k, NR_SOLVER_ADAM);
  CHECK_OK(nr_solver_kind_parse("nesterov", &k, &err), &err);
  CHECK_INT_EQ(k, NR_SOLVER_NESTEROV);
  CHECK_INT_EQ(nr_solver_kind_parse("LBFGS", &k, &err), NR_ERR_INPUT);
  CHECK_CONTAINS(err.msg, "unknown solver type \"LBFGS\"");
  CHECK_CONTAINS(err.msg, "AdaDelta");
  CHECK_INT_EQ(nr_solver_kind_histories(NR_SOLVER_SGD), 1);
  CHECK_INT_EQ(nr_solver_kind_histories(NR_SOLVER_ADADELTA), 2);
  CHECK_INT_EQ(nr_solver_kind_histories(NR_SOLVER_ADAM), 2);
}

static void test_regularize(void) {
  const float w[4] = {2.0f, -3.0f, 0.0f, 0.5f};
  float g[4] = {1, 1, 1, 1};
  nr_solver_regularize(4, w, g, 0.1f, false);
  CHECK_NEAR(g[0], 1.2, 1e-6);
  CHECK_NEAR(g[1], 0.7, 1e-6);
  CHECK_NEAR(g[2], 1.0, 1e-6);
  CHECK_NEAR(g[3], 1.05, 1e-6);
  float h[4] = {1, 1, 1, 1};
  nr_solver_regularize(4, w, h, 0.1f, true);
  CHECK_NEAR(h[0], 1.1, 1e-6);
  CHECK_NEAR(h[1], 0.9, 1e-6);
  CHECK_NEAR(h[2], 1.0, 1e-6); /* sign(0) = 0 */
  CHECK_NEAR(h[3], 1.1, 1e-6);
}

/* Runs 6 updates of one rule over a small vector with changing gradients and compares
 * weights and histories with the double reference at every step. */
static void check_rule(nr_solver_kind kind, float momentum) {
  enum { N = 5, STEPS = 6 };
  nr_update_params up = {kind, momentum, 0.999f, 1e-8f, 0.95f, 0};
  if (kind == NR_SOLVER_ADADELTA) up.delta = 1e-6f;
  const float rate = kind == NR_SOLVER_ADADELTA ? 1.0f : 0.05f;
  float w[N], g[N], h1[N] = {0}, h2[N] = {0};
  double rw[N], rh1[N] = {0}, rh2[N] = {0};
  for (int i = 0; i < N; i++) rw[i] = w[i] = 0.3f * (float)(i - 2);
  for (int t = 0; t < STEPS; t++) {
    up.t = t + 1;
    for (int i = 0; i < N; i++) g[i] = (float)sin(1.3 * i + 0.7 * t) * (float)(1 + i);
    double rg[N];
    for (int i = 0; i < N; i++) rg[i] = g[i];
    nr_solver_compute_update(&up, rate, N, g, h1, h2);
    for (int i = 0; i < N; i++) w[i] -= g[i];
    const double mu = momentum, d = up.delta, lr = rate;
    for (int i = 0; i < N; i++) {
      double u = 0;
      switch (kind) {
      case NR_SOLVER_SGD:
        rh1[i] = mu * rh1[i] + lr * rg[i];
        u = rh1[i];
        break;
      case NR_SOLVER_NESTEROV: {
        double prev = rh1[i];
        rh1[i] = mu * rh1[i] + lr * rg[i];
        u = (1 + mu) * rh1[i] - mu * prev;
        break;
      }
      case NR_SOLVER_ADAGRAD:
        rh1[i] += rg[i] * rg[i];
        u = lr * rg[i] / (sqrt(rh1[i]) + d);
        break;
      case NR_SOLVER_RMSPROP: {
        double rd = (double)0.95f;
        rh1[i] = rd * rh1[i] + (1 - rd) * rg[i] * rg[i];
        u = lr * rg[i] / (sqrt(rh1[i]) + d);
        break;
      }
      case NR_SOLVER_ADADELTA: {
        rh1[i] = mu * rh1[i] + (1 - mu) * rg[i] * rg[i];
        double v = rg[i] * sqrt((rh2[i] + d) / (rh1[i] + d));
        rh2[i] = mu * rh2[i] + (1 - mu) * v * v;
        u = lr * v;
        break;
      }
      case NR_SOLVER_ADAM: {
        double b1 = mu, b2 = (double)0.999f;
        rh1[i] = b1 * rh1[i] + (1 - b1) * rg[i];
        rh2[i] = b2 * rh2[i] + (1 - b2) * rg[i] * rg[i];
        u = lr * sqrt(1 - pow(b2, t + 1)) / (1 - pow(b1, t + 1)) * rh1[i] / (sqrt(rh2[i]) + d);
        break;
      }
      }
      rw[i] -= u;
    }
    for (int i = 0; i < N; i++) {
      CHECK_NEAR(w[i], rw[i], 1e-5 * (1 + fabs(rw[i])));
      CHECK_NEAR(h1[i], rh1[i], 1e-5 * (1 + fabs(rh1[i])));
      CHECK_NEAR(h2[i], rh2[i], 1e-5 * (1 + fabs(rh2[i])));
    }
  }
}

static void test_sgd(void) { check_rule(NR_SOLVER_SGD, 0.0f); }
static void test_sgd_momentum(void) { check_rule(NR_SOLVER_SGD, 0.9f); }
static void test_nesterov(void) { check_rule(NR_SOLVER_NESTEROV, 0.9f); }
static void test_adagrad(void) { check_rule(NR_SOLVER_ADAGRAD, 0.0f); }
static void test_rmsprop(void) { check_rule(NR_SOLVER_RMSPROP, 0.0f); }
static void test_adadelta(void) { check_rule(NR_SOLVER_ADADELTA, 0.95f); }
static void test_adam(void) { check_rule(NR_SOLVER_ADAM, 0.9f); }

int main(void) {
  NR_RUN(test_lr_closed_forms);
  NR_RUN(test_lr_multistep);
  NR_RUN(test_lr_errors);
  NR_RUN(test_kind_parse);
  NR_RUN(test_regularize);
  NR_RUN(test_sgd);
  NR_RUN(test_sgd_momentum);
  NR_RUN(test_nesterov);
  NR_RUN(test_adagrad);
  NR_RUN(test_rmsprop);
  NR_RUN(test_adadelta);
  NR_RUN(test_adam);
  return NR_TEST_EXIT();
}
