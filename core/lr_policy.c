/* lr_policy.c: Caffe's learning-rate policies (SGDSolver::GetLearningRate).
 *
 * `iter` is the number of completed updates, so the rate printed on the display line of
 * iteration N is the one used for update N+1. Everything is computed in double from the
 * float fields and rounded to float once, which is what Caffe's float solver ends up with
 * for every policy but `inv` (Caffe evaluates 1 + gamma * iter in float there; the
 * difference is in the last bit at most).
 */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "solver.h"

static const struct {
  const char *name;
  nr_lr_policy_kind kind;
} policies[] = {
    {"fixed", NR_LR_FIXED}, {"step", NR_LR_STEP},           {"exp", NR_LR_EXP},
    {"inv", NR_LR_INV},     {"multistep", NR_LR_MULTISTEP}, {"poly", NR_LR_POLY},
    {"sigmoid", NR_LR_SIGMOID},
};

nr_status nr_lr_policy_from_param(const Caffe__SolverParameter *p, nr_lr_policy *out,
                                  nr_error *err) {
  nr_lr_policy r;
  memset(&r, 0, sizeof r);
  const char *name = p->lr_policy;
  if (!name || !*name)
    return nr_err_set(err, NR_ERR_INPUT,
                      "lr_policy is not set (one of fixed, step, exp, inv, multistep, poly, "
                      "sigmoid)");
  size_t i;
  for (i = 0; i < sizeof policies / sizeof policies[0]; i++)
    if (strcmp(name, policies[i].name) == 0) break;
  if (i == sizeof policies / sizeof policies[0])
    return nr_err_set(err, NR_ERR_INPUT,
                      "unknown lr_policy \"%s\" (known: fixed, step, exp, inv, multistep, poly, "
                      "sigmoid)",
                      name);
  r.kind = policies[i].kind;
  r.base_lr = p->base_lr;
  r.gamma = p->gamma;
  r.power = p->power;
  r.stepsize = p->stepsize;
  r.max_iter = p->max_iter;
  r.stepvalue = p->stepvalue;
  r.nstepvalue = (int)p->n_stepvalue;
  switch (r.kind) {
  case NR_LR_STEP:
    if (r.stepsize <= 0)
      return nr_err_set(err, NR_ERR_INPUT,
                        "lr_policy \"step\" needs stepsize > 0 (stepsize: %d)", r.stepsize);
    break;
  case NR_LR_POLY:
    if (r.max_iter <= 0)
      return nr_err_set(err, NR_ERR_INPUT,
                        "lr_policy \"poly\" needs max_iter > 0 (max_iter: %d)", r.max_iter);
    break;
  case NR_LR_MULTISTEP:
    if (r.nstepvalue == 0)
      return nr_err_set(err, NR_ERR_INPUT,
                        "lr_policy \"multistep\" needs at least one stepvalue");
    for (int k = 1; k < r.nstepvalue; k++)
      if (r.stepvalue[k] < r.stepvalue[k - 1])
        return nr_err_set(err, NR_ERR_INPUT,
                          "lr_policy \"multistep\": stepvalue must not decrease (%d after %d)",
                          r.stepvalue[k], r.stepvalue[k - 1]);
    break;
  default:
    break;
  }
  *out = r;
  return NR_OK;
}

float nr_lr_policy_rate(const nr_lr_policy *p, int iter, int *current_step) {
  const double base = p->base_lr, gamma = p->gamma, power = p->power;
  double rate = base;
  switch (p->kind) {
  case NR_LR_FIXED:
    rate = base;
    break;
  case NR_LR_STEP:
    *current_step = iter / p->stepsize;
    rate = base * pow(gamma, *current_step);
    break;
  case NR_LR_EXP:
    rate = base * pow(gamma, iter);
    break;
  case NR_LR_INV:
    rate = base * pow(1.0 + gamma * iter, -power);
    break;
  case NR_LR_MULTISTEP:
    if (*current_step < p->nstepvalue && iter >= p->stepvalue[*current_step])
      (*current_step)++;
    rate = base * pow(gamma, *current_step);
    break;
  case NR_LR_POLY:
    rate = base * pow(1.0 - (double)iter / (double)p->max_iter, power);
    break;
  case NR_LR_SIGMOID:
    rate = base * (1.0 / (1.0 + exp(-gamma * ((double)iter - (double)p->stepsize))));
    break;
  }
  return (float)rate;
}
