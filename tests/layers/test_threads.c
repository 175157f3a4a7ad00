/* The layers whose passes are split over the helper threads (parallel.h: LRN, BatchNorm,
 * Scale, Eltwise, ReLU, Convolution) give the same bits with 1 and with 2 threads, forward
 * and backward, in place or not, on blobs large enough to be split. */
#include <cblas.h>

#include "layer_fixture.h"

/* Deterministic values in [-1, 1) from an index and a salt. */
static float val(int64_t i, int salt) {
  uint64_t h = (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)salt * 0xbf58476d1ce4e5b9ull;
  h ^= h >> 31;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 29;
  return (float)((double)(h >> 11) / 9007199254740992.0 * 2 - 1);
}

typedef struct run_out {
  float *buf[3 * LF_MAX + 4];
  int64_t len[3 * LF_MAX + 4];
  int n;
} run_out;

static void keep(run_out *o, const float *p, int64_t n) {
  o->buf[o->n] = malloc((size_t)n * sizeof(float));
  memcpy(o->buf[o->n], p, (size_t)n * sizeof(float));
  o->len[o->n++] = n;
}

/* One forward and backward with `threads` threads on fresh inputs; what came out is kept. */
static void run(lf *f, int threads, bool positive, run_out *o) {
  openblas_set_num_threads(threads);
  for (int i = 0; i < f->nb; i++)
    for (int64_t k = 0; k < f->bottom[i]->count; k++) {
      float v = val(k, 10 + i);
      f->bottom[i]->data[k] = positive ? 1.5f + v : v;
    }
  for (int i = 0; i < f->l->nblobs; i++)
    memset(f->l->blobs[i]->diff, 0, (size_t)f->l->blobs[i]->count * sizeof(float));
  for (int t = 0; t < f->nt; t++) { /* nor what it left in the tops, for this run's output */
    bool in_place = false;
    for (int i = 0; i < f->nb; i++) in_place |= f->top[t]->data == f->bottom[i]->data;
    if (!in_place) memset(f->top[t]->data, 0xff, (size_t)f->top[t]->count * sizeof(float));
  }
  LF_FORWARD(f);
  for (int i = 0; i < f->nt; i++) keep(o, f->top[i]->data, f->top[i]->count);
  for (int i = 0; i < f->nt; i++)
    for (int64_t k = 0; k < f->top[i]->count; k++) f->top[i]->diff[k] = val(k, 20 + i);
  for (int i = 0; i < f->nb; i++) {
    f->l->prop_down[i] = true;
    /* what the other run left there must not pass for this run's gradient */
    bool shared = false;
    for (int t = 0; t < f->nt; t++) shared |= f->bottom[i]->diff == f->top[t]->diff;
    if (!shared) memset(f->bottom[i]->diff, 0xff, (size_t)f->bottom[i]->count * sizeof(float));
  }
  LF_BACKWARD(f);
  for (int i = 0; i < f->nb; i++) keep(o, f->bottom[i]->diff, f->bottom[i]->count);
  for (int i = 0; i < f->l->nblobs; i++) keep(o, f->l->blobs[i]->diff, f->l->blobs[i]->count);
}

static void same_bits(const char *proto, int nb, int in_place, bool positive, int64_t n,
                      int64_t c, int64_t h, int64_t w) {
  lf *f = lf_make(proto, nb, 1, in_place);
  CHECK(f);
  if (!f) return;
  for (int i = 0; i < nb; i++) LF_SHAPE(f->bottom[i], n, c, h, w);
  LF_SETUP(f);
  run_out a = {0}, b = {0};
  run(f, 1, positive, &a);
  run(f, 2, positive, &b);
  CHECK_INT_EQ(a.n, b.n);
  for (int i = 0; i < a.n && i < b.n; i++) {
    const bool same =
        a.len[i] == b.len[i] && !memcmp(a.buf[i], b.buf[i], (size_t)a.len[i] * sizeof(float));
    if (!same) fprintf(stderr, "%s: output %d differs between 1 and 2 threads\n", proto, i);
    CHECK(same);
  }
  for (int i = 0; i < a.n; i++) free(a.buf[i]);
  for (int i = 0; i < b.n; i++) free(b.buf[i]);
  lf_free(f);
}

static void test_lrn(void) {
  same_bits("name: 'n' type: 'LRN' lrn_param { local_size: 5 alpha: 0.001 beta: 0.75 }", 1, 0,
            false, 4, 16, 40, 40);
  same_bits("name: 'n' type: 'LRN' lrn_param { local_size: 3 alpha: 0.01 beta: 0.75 "
            "norm_region: WITHIN_CHANNEL }", 1, 0, false, 4, 8, 20, 20);
}

static void test_batch_norm(void) {
  same_bits("name: 'b' type: 'BatchNorm' batch_norm_param { use_global_stats: false }", 1, 0,
            false, 8, 32, 32, 32);
  same_bits("name: 'b' type: 'BatchNorm' batch_norm_param { use_global_stats: false }", 1, 1,
            false, 8, 32, 32, 32);
  same_bits("name: 'b' type: 'BatchNorm' batch_norm_param { use_global_stats: true }", 1, 0,
            false, 8, 32, 32, 32);
}

static void test_scale(void) {
  same_bits("name: 's' type: 'Scale' scale_param { bias_term: true filler { type: 'uniform' "
            "min: -1 max: 1 } bias_filler { type: 'uniform' min: -1 max: 1 } }", 1, 0, false,
            8, 32, 32, 32);
  same_bits("name: 's' type: 'Scale' scale_param { bias_term: true filler { type: 'uniform' "
            "min: -1 max: 1 } }", 1, 1, false, 8, 32, 32, 32);
}

static void test_eltwise(void) {
  same_bits("name: 'e' type: 'Eltwise' eltwise_param { operation: SUM coeff: 0.5 coeff: -2 "
            "coeff: 3 }", 3, 0, false, 4, 16, 32, 32);
  same_bits("name: 'e' type: 'Eltwise' eltwise_param { operation: SUM }", 2, 1, false, 4, 16,
            32, 32);
  same_bits("name: 'e' type: 'Eltwise' eltwise_param { operation: PROD }", 3, 0, true, 4, 16,
            32, 32);
  same_bits("name: 'e' type: 'Eltwise' eltwise_param { operation: PROD stable_prod_grad: false }",
            2, 0, true, 4, 16, 32, 32);
  same_bits("name: 'e' type: 'Eltwise' eltwise_param { operation: MAX }", 3, 0, false, 4, 16,
            32, 32);
}

static void test_relu(void) {
  same_bits("name: 'r' type: 'ReLU'", 1, 0, false, 8, 32, 32, 32);
  same_bits("name: 'r' type: 'ReLU' relu_param { negative_slope: 0.1 }", 1, 1, false, 8, 32, 32,
            32);
}

/* Planes split by their input size: LeNet's pool2 shape (64x50 planes of 8x8) in several
 * parts, a 3x3 stride-2 window over odd planes, and average pooling with padding. */
static void test_pooling(void) {
  same_bits("name: 'p' type: 'Pooling' pooling_param { pool: MAX kernel_size: 2 stride: 2 }",
            1, 0, false, 64, 50, 8, 8);
  same_bits("name: 'p' type: 'Pooling' pooling_param { pool: MAX kernel_size: 3 stride: 2 }",
            1, 0, false, 8, 32, 27, 27);
  same_bits("name: 'p' type: 'Pooling' pooling_param { pool: AVE kernel_size: 3 stride: 2 "
            "pad: 1 }", 1, 0, false, 8, 32, 27, 27);
}

/* Columns of over 2^18 floats an image: the data gradient goes one image per chunk, the
 * chunks side by side on 2 threads (one after the other on 1); the weight gradient in an
 * even number of image chunks (6 and 4 here), as CaffeNet's conv1 and conv2 at batch 10. */
static void test_conv(void) {
  same_bits("name: 'c' type: 'Convolution' convolution_param { num_output: 16 kernel_size: 5 "
            "weight_filler { type: 'gaussian' std: 0.1 } bias_filler { type: 'gaussian' "
            "std: 0.1 } }", 1, 0, false, 6, 8, 40, 40);
  same_bits("name: 'c' type: 'Convolution' convolution_param { num_output: 16 kernel_size: 5 "
            "pad: 2 group: 2 weight_filler { type: 'gaussian' std: 0.1 } }", 1, 0, false, 5,
            16, 32, 32);
}

int main(void) {
  NR_RUN(test_lrn);
  NR_RUN(test_batch_norm);
  NR_RUN(test_scale);
  NR_RUN(test_eltwise);
  NR_RUN(test_relu);
  NR_RUN(test_pooling);
  NR_RUN(test_conv);
  return NR_TEST_EXIT();
}
