/* MAX pooling against a direct transcription of Caffe's PoolingLayer::Forward_cpu /
 * Backward_cpu (MAX), bit for bit: the 2x2 stride-2 fast path (even and odd widths, so the
 * vector part and its scalar tail both run) and the general path, over inputs full of ties
 * (values from a few levels), -FLT_MAX, -inf and NaN, with the mask top. The general path
 * at stride 1 and 2 updates four output columns at a time (and a scalar tail). */
#include <float.h>
#include <math.h>

#include "layer_fixture.h"

static uint64_t st = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
  st ^= st << 13, st ^= st >> 7, st ^= st << 17;
  return (uint32_t)(st >> 32);
}
static float rnd_value(void) {
  switch (rnd() % 16) {
  case 0: return -FLT_MAX;
  case 1: return -INFINITY;
  case 2: return NAN;
  case 3: return -0.0f;
  default: return (float)((int)(rnd() % 5) - 2); /* many ties */
  }
}

/* Caffe's MAX pooling of one plane (CEIL mode as nr_pool computes OH/OW). */
static void caffe_max(const float *in, int H, int W, int k, int s, int p, int OH, int OW,
                      float *out, int *mask) {
  for (int ph = 0; ph < OH; ph++)
    for (int pw = 0; pw < OW; pw++) {
      int hs = ph * s - p, ws = pw * s - p;
      int he = hs + k < H ? hs + k : H, we = ws + k < W ? ws + k : W;
      if (hs < 0) hs = 0;
      if (ws < 0) ws = 0;
      float best = -FLT_MAX;
      int bi = -1;
      for (int h = hs; h < he; h++)
        for (int w = ws; w < we; w++)
          if (in[h * W + w] > best) {
            best = in[h * W + w];
            bi = h * W + w;
          }
      out[ph * OW + pw] = best;
      mask[ph * OW + pw] = bi;
    }
}

static bool same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void check_max(int k, int s, int p, int n, int c, int H, int W) {
  char params[120];
  snprintf(params, sizeof params, "pool: MAX kernel_size: %d stride: %d pad: %d", k, s, p);
  char proto[200];
  snprintf(proto, sizeof proto, "name: 'p' type: 'Pooling' pooling_param { %s }", params);
  lf *f = lf_new(proto, 1, 2);
  CHECK(f);
  LF_SHAPE(f->bottom[0], n, c, H, W);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  const int OH = (int)f->top[0]->shape[2], OW = (int)f->top[0]->shape[3];
  const int64_t cnt = f->bottom[0]->count, tcnt = f->top[0]->count;
  for (int64_t i = 0; i < cnt; i++) f->bottom[0]->data[i] = rnd_value();
  for (int64_t i = 0; i < tcnt; i++) f->top[0]->diff[i] = rnd_value() * 0.5f + 0.25f;
  f->top[0]->diff[0] = -0.0f;
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  f->l->prop_down[0] = true;
  for (int64_t i = 0; i < cnt; i++) f->bottom[0]->diff[i] = NAN; /* must be overwritten */
  CHECK_OK(f->l->type->backward(f->l, &f->err), &f->err);
  float *out = malloc((size_t)tcnt * sizeof *out), *din = calloc((size_t)cnt, sizeof *din);
  int *mask = malloc((size_t)tcnt * sizeof *mask);
  int bad_out = 0, bad_mask = 0, bad_diff = 0;
  for (int pl = 0; pl < n * c; pl++) {
    caffe_max(f->bottom[0]->data + pl * H * W, H, W, k, s, p, OH, OW, out + pl * OH * OW,
              mask + pl * OH * OW);
    for (int i = 0; i < OH * OW; i++)
      if (mask[pl * OH * OW + i] >= 0)
        din[pl * H * W + mask[pl * OH * OW + i]] += f->top[0]->diff[pl * OH * OW + i];
  }
  for (int64_t i = 0; i < tcnt; i++) {
    bad_out += !same_bits(out[i], f->top[0]->data[i]);
    bad_mask += (float)mask[i] != f->top[1]->data[i];
  }
  for (int64_t i = 0; i < cnt; i++) bad_diff += !same_bits(din[i], f->bottom[0]->diff[i]);
  free(out), free(din), free(mask);
  lf_free(f);
  if (bad_out || bad_mask || bad_diff)
    fprintf(stderr, "  k%d s%d p%d %dx%dx%dx%d\n", k, s, p, n, c, H, W);
  CHECK_INT_EQ(bad_out, 0);
  CHECK_INT_EQ(bad_mask, 0);
  CHECK_INT_EQ(bad_diff, 0);
}

static void test_pool_max_2x2_fast_path(void) {
  check_max(2, 2, 0, 3, 4, 24, 24); /* LeNet pool1 shape (smaller batch) */
  check_max(2, 2, 0, 2, 5, 8, 8);   /* pool2 */
  check_max(2, 2, 0, 2, 3, 6, 14);  /* OW 7: vector part and scalar tail */
  check_max(2, 2, 0, 1, 2, 2, 2);
}

static void test_pool_max_general_path(void) {
  check_max(2, 2, 0, 2, 3, 7, 9); /* odd sizes: ceil windows clipped */
  check_max(3, 2, 0, 2, 3, 9, 10);
  check_max(3, 2, 1, 2, 2, 7, 8);
  check_max(3, 1, 1, 1, 2, 5, 6);
  /* wide rows: the 4-column vector update at stride 1 and 2 (GoogLeNet's and CaffeNet's
   * 3x3 pools), with scalar tails and clipped edge taps */
  check_max(3, 1, 1, 2, 3, 13, 29);
  check_max(3, 2, 0, 2, 3, 15, 31);
  check_max(3, 2, 1, 2, 2, 14, 26);
}

int main(void) {
  NR_RUN(test_pool_max_2x2_fast_path);
  NR_RUN(test_pool_max_general_path);
  return NR_TEST_EXIT();
}
