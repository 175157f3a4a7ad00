#include "gradcheck.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

nr_gradcheck_config nr_gradcheck_defaults(float stepsize, float threshold) {
  nr_gradcheck_config c = {stepsize, threshold, 1701, 0.0f, -1.0f};
  return c;
}

void nr_gradcheck_fill_uniform(nr_blob *b, float lo, float hi, uint64_t seed) {
  nr_rng r;
  nr_rng_seed(&r, seed);
  for (int64_t i = 0; i < b->count; i++) b->data[i] = nr_rng_uniform_range(&r, lo, hi);
}

void nr_gradcheck_fill_gaussian(nr_blob *b, float mean, float std, uint64_t seed) {
  nr_rng r;
  nr_rng_seed(&r, seed);
  for (int64_t i = 0; i < b->count; i++) b->data[i] = nr_rng_gaussian(&r, mean, std);
}

/* Reshape + forward with the rng reseeded, so a stochastic layer draws the same numbers
 * on every evaluation of the objective. */
static nr_status run_forward(nr_layer *l, const nr_gradcheck_config *cfg, nr_error *err) {
  if (l->ctx && l->ctx->rng) nr_rng_seed(l->ctx->rng, cfg->seed);
  if (l->type->reshape && l->type->reshape(l, err) != NR_OK)
    return nr_err_prefix(err, "gradcheck: reshape");
  if (l->type->forward(l, err) != NR_OK) return nr_err_prefix(err, "gradcheck: forward");
  return NR_OK;
}

/* The synthetic objective and its gradient written into the top diffs: ½Σtop² over all
 * tops when top_id < 0, else 2 · top[top_id][top_elt]. */
static double objective(nr_layer *l, int top_id, int64_t top_elt) {
  double f = 0;
  if (top_id < 0) {
    for (int i = 0; i < l->ntop; i++) {
      nr_blob *t = l->top[i];
      for (int64_t j = 0; j < t->count; j++) f += (double)t->data[j] * t->data[j];
      if (t->count) memcpy(t->diff, t->data, (size_t)t->count * sizeof(float));
    }
    return f / 2;
  }
  for (int i = 0; i < l->ntop; i++)
    if (l->top[i]->count) memset(l->top[i]->diff, 0, (size_t)l->top[i]->count * sizeof(float));
  nr_blob *t = l->top[top_id];
  t->diff[top_elt] = 2.0f;
  return 2.0 * t->data[top_elt];
}

typedef struct checked {
  nr_blob *blob;
  const char *kind; /* "param" or "bottom" */
  int index;
  float *analytic; /* owned copy of the diff after backward */
} checked;

/* One objective (Caffe's CheckGradientSingle). */
static nr_status check_single(nr_layer *l, const nr_gradcheck_config *cfg, int check_bottom,
                              int top_id, int64_t top_elt, bool eltwise, nr_error *err) {
  nr_status s = NR_OK;
  int n = 0;
  checked *c = calloc((size_t)(l->nblobs + l->nbottom + 1), sizeof *c);
  if (!c) return nr_err_set(err, NR_ERR_NOMEM, "gradcheck: out of memory");
  for (int i = 0; i < l->nbottom; i++) l->prop_down[i] = (check_bottom == -1);
  for (int i = 0; i < l->nblobs; i++) {
    nr_blob *b = l->blobs[i];
    if (b->count) memset(b->diff, 0, (size_t)b->count * sizeof(float));
    c[n++] = (checked){b, "param", i, NULL};
  }
  if (check_bottom == -1) {
    for (int i = 0; i < l->nbottom; i++) c[n++] = (checked){l->bottom[i], "bottom", i, NULL};
  } else if (check_bottom >= 0) {
    if (check_bottom >= l->nbottom) {
      s = nr_err_set(err, NR_ERR_INPUT, "gradcheck: check_bottom %d but the layer has %d bottoms",
                     check_bottom, l->nbottom);
      goto done;
    }
    c[n++] = (checked){l->bottom[check_bottom], "bottom", check_bottom, NULL};
    l->prop_down[check_bottom] = true;
  }
  if (n == 0) {
    s = nr_err_set(err, NR_ERR_INPUT, "gradcheck: no blobs to check");
    goto done;
  }

  /* Analytic gradient. */
  if ((s = run_forward(l, cfg, err)) != NR_OK) goto done;
  objective(l, top_id, top_elt);
  if ((s = l->type->backward(l, err)) != NR_OK) {
    nr_err_prefix(err, "gradcheck: backward");
    goto done;
  }
  for (int k = 0; k < n; k++) {
    int64_t cnt = c[k].blob->count;
    c[k].analytic = malloc((size_t)(cnt ? cnt : 1) * sizeof(float));
    if (!c[k].analytic) {
      s = nr_err_set(err, NR_ERR_NOMEM, "gradcheck: out of memory");
      goto done;
    }
    if (cnt) memcpy(c[k].analytic, c[k].blob->diff, (size_t)cnt * sizeof(float));
  }

  /* Numeric gradient, element by element. */
  for (int k = 0; k < n; k++) {
    nr_blob *b = c[k].blob;
    for (int64_t j = 0; j < b->count; j++) {
      double numeric = 0;
      if (!eltwise || j == top_elt) {
        float x0 = b->data[j];
        b->data[j] = x0 + cfg->stepsize;
        if ((s = run_forward(l, cfg, err)) != NR_OK) goto done;
        double fp = objective(l, top_id, top_elt);
        b->data[j] = x0 - cfg->stepsize;
        if ((s = run_forward(l, cfg, err)) != NR_OK) goto done;
        double fm = objective(l, top_id, top_elt);
        b->data[j] = x0;
        numeric = (fp - fm) / cfg->stepsize / 2.0;
      }
      double analytic = c[k].analytic[j];
      double x = fabs((double)b->data[j]);
      if (cfg->kink - cfg->kink_range > x || x > cfg->kink + cfg->kink_range) {
        double scale = fmax(fmax(fabs(analytic), fabs(numeric)), 1.0);
        double tol = cfg->threshold * scale;
        if (!(fabs(analytic - numeric) <= tol)) {
          char obj[96];
          if (top_id < 0)
            snprintf(obj, sizeof obj, "objective: half sum of squared tops");
          else
            snprintf(obj, sizeof obj, "objective: top %d element %lld", top_id,
                     (long long)top_elt);
          s = nr_err_set(err, NR_ERR_INPUT,
                         "gradient mismatch at %s %d element %lld (x = %g; %s): analytic %.6g "
                         "vs numeric %.6g, tolerance %.3g",
                         c[k].kind, c[k].index, (long long)j, (double)b->data[j], obj, analytic,
                         numeric, tol);
          goto done;
        }
      }
    }
  }
  /* Leave the tops as the unperturbed input produces them. */
  s = run_forward(l, cfg, err);
done:
  for (int k = 0; k < n; k++) free(c[k].analytic);
  free(c);
  return s;
}

nr_status nr_gradcheck_layer(nr_layer *l, const nr_gradcheck_config *cfg, int check_bottom,
                             int mode, nr_error *err) {
  if (!l->type->backward)
    return nr_err_set(err, NR_ERR_INPUT, "gradcheck: layer type %s has no backward",
                      l->type->name);
  if (mode == NR_GC_ALL) return check_single(l, cfg, check_bottom, -1, -1, false, err);
  if (mode != NR_GC_EXHAUSTIVE && mode != NR_GC_ELTWISE)
    return nr_err_set(err, NR_ERR_INPUT, "gradcheck: unknown mode %d", mode);
  bool eltwise = (mode == NR_GC_ELTWISE);
  /* One forward to learn the top shapes. */
  NR_TRY(run_forward(l, cfg, err));
  if (eltwise) {
    if (l->nblobs)
      return nr_err_set(err, NR_ERR_INPUT,
                        "gradcheck: element-wise check on a layer with %d parameter blobs",
                        l->nblobs);
    for (int i = 0; i < l->ntop && i < l->nbottom; i++)
      if (l->top[i]->count != l->bottom[i]->count)
        return nr_err_set(err, NR_ERR_INPUT,
                          "gradcheck: element-wise check but top %d count %lld != bottom "
                          "count %lld",
                          i, (long long)l->top[i]->count, (long long)l->bottom[i]->count);
    check_bottom = -1;
  }
  for (int i = 0; i < l->ntop; i++) {
    int64_t cnt = l->top[i]->count;
    for (int64_t j = 0; j < cnt; j++)
      NR_TRY(check_single(l, cfg, check_bottom, i, j, eltwise, err));
  }
  return NR_OK;
}
