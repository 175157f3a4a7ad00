/* sgd_updates.c: the per-parameter update rules of Caffe's SGD solver family, on arrays.
 *
 * Each rule reads the processed gradient g (already clipped, normalized by iter_size and
 * regularized) and leaves in g the value the net subtracts from the weights. The loops
 * follow the order in which Caffe's CPU code (sgd_solver.cpp, adam_solver.cpp, ...)
 * evaluates each formula, in float, so a run agrees with Caffe to rounding and a
 * .solverstate written by either resumes in the other.
 */
#include <math.h>
#include <strings.h>

#include "parallel.h"
#include "solver.h"

static const char *const kind_names[] = {"SGD",     "Nesterov", "AdaGrad",
                                         "RMSProp", "AdaDelta", "Adam"};

nr_status nr_solver_kind_parse(const char *name, nr_solver_kind *out, nr_error *err) {
  for (int i = 0; i < (int)(sizeof kind_names / sizeof kind_names[0]); i++)
    if (name && strcasecmp(name, kind_names[i]) == 0) {
      *out = (nr_solver_kind)i;
      return NR_OK;
    }
  return nr_err_set(err, NR_ERR_INPUT,
                    "unknown solver type \"%s\" (known: SGD, Nesterov, AdaGrad, RMSProp, "
                    "AdaDelta, Adam)",
                    name ? name : "");
}

const char *nr_solver_kind_name(nr_solver_kind k) {
  return (unsigned)k < sizeof kind_names / sizeof kind_names[0] ? kind_names[k] : "?";
}

int nr_solver_kind_histories(nr_solver_kind k) {
  return k == NR_SOLVER_ADADELTA || k == NR_SOLVER_ADAM ? 2 : 1;
}

void nr_solver_regularize(int64_t n, const float *w, float *g, float decay, bool l1) {
  if (decay == 0.0f) return;
  if (l1) {
    for (int64_t i = 0; i < n; i++) {
      float s = (float)((0.0f < w[i]) - (w[i] < 0.0f));
      g[i] += decay * s;
    }
  } else {
    for (int64_t i = 0; i < n; i++) g[i] += decay * w[i];
  }
}

typedef struct sgd_job {
  float *w, *g, *h;
  float decay, local_rate, momentum;
} sgd_job;

static void sgd_range(void *ctx, int64_t lo, int64_t hi) {
  const sgd_job *j = ctx;
  float *restrict w = j->w, *restrict g = j->g, *restrict h = j->h;
  const float decay = j->decay, local_rate = j->local_rate, momentum = j->momentum;
  if (decay != 0.0f) {
    for (int64_t i = lo; i < hi; i++) {
      const float gi = g[i] + decay * w[i];
      const float hv = local_rate * gi + momentum * h[i];
      h[i] = hv;
      g[i] = hv;
      w[i] -= hv;
    }
  } else {
    for (int64_t i = lo; i < hi; i++) {
      const float hv = local_rate * g[i] + momentum * h[i];
      h[i] = hv;
      g[i] = hv;
      w[i] -= hv;
    }
  }
}

void nr_solver_sgd_step(int64_t n, float *w, float *g, float *h, float decay,
                        float local_rate, float momentum) {
  /* regularize, compute_update (SGD) and the net's data -= diff in one pass, each element
   * through exactly the float operations of the three passes, in their order; element-wise,
   * so large blobs are split over the helper threads with the same bits. */
  sgd_job j = {w, g, h, decay, local_rate, momentum};
  nr__parallel_for(n, NR_PARALLEL_PARAM_GRAIN, sgd_range, &j);
}

double nr_solver_sumsq(int64_t n, const float *x) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  return s;
}

void nr_solver_compute_update(const nr_update_params *u, float local_rate, int64_t n,
                              float *g, float *h1, float *h2) {
  const float mu = u->momentum, delta = u->delta;
  switch (u->kind) {
  case NR_SOLVER_SGD:
    /* h = lr * g + mu * h; g = h */
    for (int64_t i = 0; i < n; i++) {
      h1[i] = local_rate * g[i] + mu * h1[i];
      g[i] = h1[i];
    }
    break;
  case NR_SOLVER_NESTEROV:
    /* h_new = lr * g + mu * h; g = (1 + mu) * h_new - mu * h */
    for (int64_t i = 0; i < n; i++) {
      float prev = h1[i];
      h1[i] = local_rate * g[i] + mu * h1[i];
      g[i] = (1.0f + mu) * h1[i] - mu * prev;
    }
    break;
  case NR_SOLVER_ADAGRAD:
    /* h += g^2; g = lr * g / (sqrt(h) + delta) */
    for (int64_t i = 0; i < n; i++) {
      h1[i] = g[i] * g[i] + h1[i];
      g[i] = local_rate * (g[i] / (sqrtf(h1[i]) + delta));
    }
    break;
  case NR_SOLVER_RMSPROP: {
    const float d = u->rms_decay;
    /* h = (1 - d) * g^2 + d * h; g = lr * g / (sqrt(h) + delta) */
    for (int64_t i = 0; i < n; i++) {
      h1[i] = (1.0f - d) * (g[i] * g[i]) + d * h1[i];
      g[i] = local_rate * (g[i] / (sqrtf(h1[i]) + delta));
    }
    break;
  }
  case NR_SOLVER_ADADELTA:
    /* h1: gradient history, h2: update history.
     * h1 = (1 - mu) g^2 + mu h1; u = g * sqrt((h2 + delta) / (h1 + delta));
     * h2 = (1 - mu) u^2 + mu h2; g = lr * u */
    for (int64_t i = 0; i < n; i++) {
      h1[i] = (1.0f - mu) * (g[i] * g[i]) + mu * h1[i];
      float v = g[i] * sqrtf((h2[i] + delta) / (h1[i] + delta));
      h2[i] = (1.0f - mu) * (v * v) + mu * h2[i];
      g[i] = local_rate * v;
    }
    break;
  case NR_SOLVER_ADAM: {
    /* h1 = m, h2 = v. m = (1 - b1) g + b1 m; v = (1 - b2) g^2 + b2 v;
     * g = lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps) */
    const float b1 = u->momentum, b2 = u->momentum2;
    const float correction =
        (float)(sqrt(1.0 - pow((double)b2, u->t)) / (1.0 - pow((double)b1, u->t)));
    const float step = local_rate * correction;
    for (int64_t i = 0; i < n; i++) {
      h1[i] = (1.0f - b1) * g[i] + b1 * h1[i];
      h2[i] = (1.0f - b2) * (g[i] * g[i]) + b2 * h2[i];
      g[i] = step * (h1[i] / (sqrtf(h2[i]) + delta));
    }
    break;
  }
  }
}
