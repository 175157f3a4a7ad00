/* ContrastiveLoss: Caffe's ContrastiveLossLayer. bottom[0] and bottom[1] hold N pairs of
 * feature vectors (N, C, 1, 1) (any shape with N rows of C values), bottom[2] N labels:
 * non-zero (as an integer) = similar pair. With d² = ||a_n − b_n||² and m =
 * contrastive_loss_param.margin (default 1):
 *   similar: d²;   dissimilar: max(m − d, 0)², or max(m − d², 0) with legacy_version;
 * loss = Σ / (2N). Backward (to a; b gets the opposite): similar (a − b)·top_diff/N;
 * dissimilar, where the margin term is positive, −(m − d)/(d + 1e-4)·(a − b)·top_diff/N
 * (Caffe's 1e-4 keeps d = 0 finite), legacy −(a − b)·top_diff/N; no gradient to labels.
 */
#include <math.h>
#include <stdlib.h>

#include "layer.h"
#include "nr_math.h"

static const Caffe__ContrastiveLossParameter contrastive_default =
    CAFFE__CONTRASTIVE_LOSS_PARAMETER__INIT;

static const Caffe__ContrastiveLossParameter *cparam(const nr_layer *l) {
  return l->param->contrastive_loss_param ? l->param->contrastive_loss_param
                                          : &contrastive_default;
}

static nr_status contrastive_reshape(nr_layer *l, nr_error *err) {
  const nr_blob *a = l->bottom[0], *b = l->bottom[1], *y = l->bottom[2];
  if (a->num_axes < 1 || b->num_axes < 1 || a->shape[0] != b->shape[0] ||
      a->count != b->count || nr_blob_legacy_dim(a, 2) != 1 || nr_blob_legacy_dim(a, 3) != 1 ||
      nr_blob_legacy_dim(b, 2) != 1 || nr_blob_legacy_dim(b, 3) != 1) {
    char sa[256], sb[256];
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[0] %s and bottom[1] %s must both be (N, C, 1, 1) (or (N, C))",
                      nr_blob_shape_str(a, sa, sizeof sa), nr_blob_shape_str(b, sb, sizeof sb));
  }
  if (y->num_axes < 1 || y->shape[0] != a->shape[0] || y->count != a->shape[0])
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[2] must hold one label per pair (shape (N) or (N, 1, 1, 1)): "
                      "%lld pairs, %lld labels",
                      (long long)a->shape[0], (long long)y->count);
  return nr_blob_reshape(l->top[0], 0, NULL, err);
}

/* ||a_n − b_n||² of pair n, in double. */
static double dist_sq(const nr_layer *l, int64_t n, int64_t dim) {
  const float *a = l->bottom[0]->data + n * dim, *b = l->bottom[1]->data + n * dim;
  double s = 0;
  for (int64_t j = 0; j < dim; j++) {
    const double d = (double)a[j] - b[j];
    s += d * d;
  }
  return s;
}

static nr_status contrastive_forward(nr_layer *l, nr_error *err) {
  const Caffe__ContrastiveLossParameter *p = cparam(l);
  const int64_t num = l->bottom[0]->shape[0], dim = num ? l->bottom[0]->count / num : 0;
  const float *y = l->bottom[2]->data;
  const double m = p->margin;
  double loss = 0;
  for (int64_t n = 0; n < num; n++) {
    const double d2 = dist_sq(l, n, dim);
    if ((int)y[n]) {
      loss += d2;
    } else if (p->legacy_version) {
      loss += fmax(m - d2, 0.0);
    } else {
      const double t = fmax(m - sqrt(d2), 0.0);
      loss += t * t;
    }
  }
  l->top[0]->data[0] = (float)(loss / (2.0 * (double)(num ? num : 1)));
  return NR_OK;
}

static nr_status contrastive_backward(nr_layer *l, nr_error *err) {
  if (l->prop_down[2])
    return nr_err_set(err, NR_ERR_INPUT, "cannot backpropagate to the label input (bottom[2])");
  const Caffe__ContrastiveLossParameter *p = cparam(l);
  const int64_t num = l->bottom[0]->shape[0], dim = num ? l->bottom[0]->count / num : 0;
  const float *y = l->bottom[2]->data;
  const float *a = l->bottom[0]->data, *b = l->bottom[1]->data;
  const double m = p->margin;
  const double alpha = l->top[0]->diff[0] / (double)(num ? num : 1);
  for (int i = 0; i < 2; i++) {
    if (!l->prop_down[i]) continue;
    float *dx = l->bottom[i]->diff;
    const double sign = i == 0 ? 1 : -1;
    for (int64_t n = 0; n < num; n++) {
      double c; /* d loss / d(a − b) for this pair, over alpha */
      if ((int)y[n]) {
        c = 1;
      } else {
        const double d2 = dist_sq(l, n, dim);
        if (p->legacy_version) {
          c = m - d2 > 0 ? -1 : 0;
        } else {
          const double d = sqrt(d2);
          c = m - d > 0 ? -(m - d) / (d + 1e-4) : 0;
        }
      }
      for (int64_t j = 0; j < dim; j++)
        dx[n * dim + j] = (float)(sign * alpha * c * ((double)a[n * dim + j] - b[n * dim + j]));
    }
  }
  return NR_OK;
}

const nr_layer_type nr_layer_contrastive_loss = {
    .name = "ContrastiveLoss", .min_bottoms = 3, .max_bottoms = 3, .min_tops = 1, .max_tops = 1,
    .is_loss = true, .no_force_backward = 1u << 2,
    .reshape = contrastive_reshape, .forward = contrastive_forward,
    .backward = contrastive_backward};
