/* Scale: y = x * s (+ b with bias_term), with s broadcast over bottom[0]: s's axes line up
 * with bottom[0]'s starting at `axis`. s is bottom[1] when given, else a learnable blob of
 * shape bottom[0].shape[axis, axis + num_axes) (num_axes -1 = to the end) filled by
 * `filler` (default constant 1). With bias_term, b is a learnable blob of s's shape filled
 * by bias_filler (default constant 0); it follows s in `blobs` (blobs[1], or blobs[0] when s
 * is bottom[1]), as Caffe. A 0-axis s (a scalar) applies everywhere.
 * Runs in place: the scale gradient needs x, so forward then keeps a copy in priv.
 * Backward accumulates parameter gradients, writes bottom[1]'s and bottom[0]'s diffs. */
#include "filler.h"
#include "layer.h"
#include "parallel.h"
#include "nr_math.h"

static const Caffe__ScaleParameter scale_default = CAFFE__SCALE_PARAMETER__INIT;

static const Caffe__ScaleParameter *params(const nr_layer *l) {
  return l->param->scale_param ? l->param->scale_param : &scale_default;
}

static nr_status scale_setup(nr_layer *l, nr_error *err) {
  const Caffe__ScaleParameter *p = params(l);
  const nr_blob *x = l->bottom[0];
  nr_rng *rng = l->ctx ? l->ctx->rng : NULL;
  const int want = (l->nbottom == 1) + (p->bias_term ? 1 : 0);
  if (l->nblobs == 0) {
    int naxes;
    const int64_t *dims;
    if (l->nbottom > 1) {
      naxes = l->bottom[1]->num_axes;
      dims = l->bottom[1]->shape;
    } else {
      const int axis = x->num_axes ? nr_blob_axis(x, p->axis) : -1;
      if (axis < 0)
        return nr_err_set(err, NR_ERR_INPUT, "scale_param.axis %d is out of range for %d axes",
                          (int)p->axis, x->num_axes);
      if (p->num_axes < -1)
        return nr_err_set(err, NR_ERR_INPUT,
                          "scale_param.num_axes must be >= 0, or -1 for all axes from axis; "
                          "got %d",
                          (int)p->num_axes);
      const int end = p->num_axes == -1 ? x->num_axes : axis + (int)p->num_axes;
      if (end > x->num_axes)
        return nr_err_set(err, NR_ERR_INPUT,
                          "scale blob would need axes %d to %d but bottom[0] has %d axes",
                          axis, end - 1, x->num_axes);
      naxes = end - axis;
      dims = x->shape + axis;
      nr_blob *s = NULL;
      NR_TRY(nr_layer_add_param(l, naxes, dims, &s, err));
      Caffe__FillerParameter one = CAFFE__FILLER_PARAMETER__INIT;
      one.value = 1.0f;
      nr_status st = nr_fill(s, p->filler ? p->filler : &one, rng, err);
      if (st != NR_OK) return nr_err_prefix(err, "scale_param.filler");
    }
    if (p->bias_term) {
      nr_blob *b = NULL;
      NR_TRY(nr_layer_add_param(l, naxes, dims, &b, err));
      nr_status st = nr_fill(b, p->bias_filler, rng, err);
      if (st != NR_OK) return nr_err_prefix(err, "scale_param.bias_filler");
    }
  }
  if (l->nblobs != want)
    return nr_err_set(err, NR_ERR_INPUT, "has %d parameter blobs, expected %d", l->nblobs,
                      want);
  if (l->top[0] == x) {
    nr_blob *saved = NULL;
    NR_TRY(nr_blob_create("scale_saved_x", NULL, &saved, err));
    l->priv = saved;
  }
  return NR_OK;
}

static void scale_destroy(nr_layer *l) { nr_blob_destroy(l->priv); }

static nr_blob *scale_blob(const nr_layer *l) {
  return l->nbottom > 1 ? l->bottom[1] : l->blobs[0];
}
static nr_blob *bias_blob(const nr_layer *l) {
  return params(l)->bias_term ? l->blobs[l->nbottom > 1 ? 0 : 1] : NULL;
}

/* outer x dim x inner view of bottom[0] for the scale blob. */
static nr_status extents(const nr_layer *l, int64_t *outer, int64_t *dim, int64_t *inner,
                         nr_error *err) {
  const nr_blob *x = l->bottom[0], *s = scale_blob(l), *b = bias_blob(l);
  const int axis = s->num_axes == 0 ? 0 : (x->num_axes ? nr_blob_axis(x, params(l)->axis) : -1);
  if (axis < 0)
    return nr_err_set(err, NR_ERR_INPUT, "scale_param.axis %d is out of range for %d axes",
                      (int)params(l)->axis, x->num_axes);
  if (x->num_axes < axis + s->num_axes)
    return nr_err_set(err, NR_ERR_INPUT,
                      "scale has %d axes from axis %d but bottom[0] has only %d axes",
                      s->num_axes, axis, x->num_axes);
  for (int i = 0; i < s->num_axes; i++)
    if (x->shape[axis + i] != s->shape[i])
      return nr_err_set(err, NR_ERR_INPUT,
                        "bottom[0] axis %d is %lld but scale axis %d is %lld", axis + i,
                        (long long)x->shape[axis + i], i, (long long)s->shape[i]);
  if (b && b->count != s->count)
    return nr_err_set(err, NR_ERR_INPUT, "bias has %lld elements but scale has %lld",
                      (long long)b->count, (long long)s->count);
  *outer = nr_blob_count_range(x, 0, axis);
  *dim = s->count;
  *inner = nr_blob_count_range(x, axis + s->num_axes, x->num_axes);
  return NR_OK;
}

static nr_status scale_reshape(nr_layer *l, nr_error *err) {
  int64_t outer, dim, inner;
  NR_TRY(extents(l, &outer, &dim, &inner, err));
  if (l->priv) NR_TRY(nr_blob_reshape_like(l->priv, l->bottom[0], err));
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

/* The passes split over the helper threads (parallel.h): element-wise work by plane
 * (o, d), the parameter gradients by d (each d's sums over o in order, whatever the
 * threads). */
typedef struct scale_job {
  int64_t outer, dim, inner;
  const float *s, *b, *x, *dy;
  float *y, *saved, *db, *ds, *dx;
} scale_job;

static void forward_range(void *ctx, int64_t p0, int64_t p1) {
  const scale_job *j = ctx;
  for (int64_t p = p0; p < p1; p++) {
    const int64_t d = p % j->dim, off = p * j->inner;
    const float sv = j->s[d], bv = j->b ? j->b[d] : 0.0f;
    if (j->saved) nr_copy(j->inner, j->x + off, j->saved + off);
    for (int64_t i = 0; i < j->inner; i++) j->y[off + i] = j->x[off + i] * sv + bv;
  }
}

static void param_grad_range(void *ctx, int64_t d0, int64_t d1) {
  const scale_job *j = ctx;
  for (int64_t d = d0; d < d1; d++)
    for (int64_t o = 0; o < j->outer; o++) {
      const int64_t off = (o * j->dim + d) * j->inner;
      const float *restrict g = j->dy + off;
      if (j->db) {
        float acc = 0.0f;
        for (int64_t i = 0; i < j->inner; i++) acc += g[i];
        j->db[d] += acc;
      }
      if (j->ds) {
        const float *restrict xv = j->x + off;
        float acc = 0.0f;
        for (int64_t i = 0; i < j->inner; i++) acc += g[i] * xv[i];
        j->ds[d] += acc;
      }
    }
}

static void data_grad_range(void *ctx, int64_t p0, int64_t p1) {
  const scale_job *j = ctx;
  for (int64_t p = p0; p < p1; p++) {
    const float sv = j->s[p % j->dim];
    const int64_t off = p * j->inner;
    for (int64_t i = 0; i < j->inner; i++) j->dx[off + i] = j->dy[off + i] * sv;
  }
}

static nr_status scale_forward(nr_layer *l, nr_error *err) {
  int64_t outer, dim, inner;
  NR_TRY(extents(l, &outer, &dim, &inner, err));
  const nr_blob *bb = bias_blob(l);
  scale_job j = {outer, dim, inner, scale_blob(l)->data, bb ? bb->data : NULL,
                 l->bottom[0]->data, NULL, l->top[0]->data,
                 l->priv ? ((nr_blob *)l->priv)->data : NULL, NULL, NULL, NULL};
  nr__parallel_for(outer * dim, nr__parallel_grain(inner), forward_range, &j);
  return NR_OK;
}

static nr_status scale_backward(nr_layer *l, nr_error *err) {
  int64_t outer, dim, inner;
  NR_TRY(extents(l, &outer, &dim, &inner, err));
  nr_blob *sb = scale_blob(l), *bb = bias_blob(l);
  const bool s_is_param = l->nbottom == 1;
  scale_job j = {outer, dim, inner, sb->data, NULL,
                 l->priv ? ((nr_blob *)l->priv)->data : l->bottom[0]->data,
                 l->top[0]->diff, NULL, NULL, bb ? bb->diff : NULL,
                 s_is_param || l->prop_down[1] ? sb->diff : NULL, l->bottom[0]->diff};
  /* Parameter and scale gradients first: in place, dx aliases dy. */
  if (j.ds && !s_is_param) nr_set(dim, 0.0f, j.ds);
  if (j.db || j.ds)
    nr__parallel_for(dim, nr__parallel_grain(outer * inner), param_grad_range, &j);
  if (l->prop_down[0])
    nr__parallel_for(outer * dim, nr__parallel_grain(inner), data_grad_range, &j);
  return NR_OK;
}

const nr_layer_type nr_layer_scale = {
    .name = "Scale", .min_bottoms = 1, .max_bottoms = 2, .min_tops = 1, .max_tops = 1,
    .setup = scale_setup, .reshape = scale_reshape, .forward = scale_forward,
    .backward = scale_backward, .destroy = scale_destroy};
