/* ReLU: y = max(x, 0) + negative_slope * min(x, 0) (leaky when negative_slope != 0).
 * May run in place: backward reads the sign of x, which y keeps (slope >= 0). */
#include "layer.h"
#include "parallel.h"

/* The loops below may run in place (y = x, dx = dy); element i reads only index i, so
 * telling the compiler to vectorize without an overlap check is safe. */
#if defined(__clang__)
#define NR_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define NR_IVDEP _Pragma("GCC ivdep")
#else
#define NR_IVDEP
#endif

static const Caffe__ReLUParameter relu_default = CAFFE__RE_LUPARAMETER__INIT;

static float slope_of(const nr_layer *l) {
  const Caffe__ReLUParameter *p = l->param->relu_param ? l->param->relu_param : &relu_default;
  return p->negative_slope;
}

static nr_status relu_reshape(nr_layer *l, nr_error *err) {
  return nr_blob_reshape_like(l->top[0], l->bottom[0], err);
}

/* Element ranges of one pass, split between the helper threads (parallel.h). */
typedef struct relu_job {
  const float *x, *dy;
  float *y, *dx;
  float ns;
} relu_job;

static void forward_range(void *ctx, int64_t i0, int64_t i1) {
  const relu_job *j = ctx;
  const float *x = j->x;
  float *y = j->y; /* may alias x (in place): element-wise, so fine */
  const float ns = j->ns;
  NR_IVDEP
  for (int64_t i = i0; i < i1; i++) {
    const float v = x[i];
    y[i] = (v > 0.0f ? v : 0.0f) + ns * (v < 0.0f ? v : 0.0f);
  }
}

static void backward_range(void *ctx, int64_t i0, int64_t i1) {
  const relu_job *j = ctx;
  const float *x = j->x, *dy = j->dy;
  float *dx = j->dx;
  const float ns = j->ns;
  NR_IVDEP
  for (int64_t i = i0; i < i1; i++) {
    const float scale = x[i] > 0.0f ? 1.0f : ns, g = dy[i]; /* (this form vectorizes) */
    dx[i] = g * scale;
  }
}

/* Parts of at least 64 K elements: ReLU streams memory, and below that a helper's
 * hand-over costs more than the part. */
static nr_status relu_forward(nr_layer *l, nr_error *err) {
  (void)err;
  relu_job j = {l->bottom[0]->data, NULL, l->top[0]->data, NULL, slope_of(l)};
  nr__parallel_for(l->bottom[0]->count, 65536, forward_range, &j);
  return NR_OK;
}

static nr_status relu_backward(nr_layer *l, nr_error *err) {
  (void)err;
  if (!l->prop_down[0]) return NR_OK;
  relu_job j = {l->bottom[0]->data, l->top[0]->diff, NULL, l->bottom[0]->diff, slope_of(l)};
  nr__parallel_for(l->bottom[0]->count, 65536, backward_range, &j);
  return NR_OK;
}

/* Samples [n0, n1): their elements (layer.h's forward_samples / backward_samples). */
static int64_t per_sample(const nr_layer *l) {
  const nr_blob *b = l->bottom[0];
  return b->num_axes > 0 && b->shape[0] > 0 ? b->count / b->shape[0] : 0;
}

static nr_status relu_forward_samples(nr_layer *l, int64_t n0, int64_t n1, nr_error *err) {
  (void)err;
  relu_job j = {l->bottom[0]->data, NULL, l->top[0]->data, NULL, slope_of(l)};
  forward_range(&j, n0 * per_sample(l), n1 * per_sample(l));
  return NR_OK;
}

static nr_status relu_backward_samples(nr_layer *l, int64_t n0, int64_t n1, nr_error *err) {
  (void)err;
  if (!l->prop_down[0]) return NR_OK;
  relu_job j = {l->bottom[0]->data, l->top[0]->diff, NULL, l->bottom[0]->diff, slope_of(l)};
  backward_range(&j, n0 * per_sample(l), n1 * per_sample(l));
  return NR_OK;
}

const nr_layer_type nr_layer_relu = {
    .name = "ReLU", .min_bottoms = 1, .max_bottoms = 1, .min_tops = 1, .max_tops = 1,
    .reshape = relu_reshape, .forward = relu_forward, .backward = relu_backward,
    .forward_samples = relu_forward_samples, .backward_samples = relu_backward_samples};
