/* nr_gemm against a naive double-precision reference and against cblas_sgemm: every kernel
 * set this CPU can run (avx512, avx2, cblas), all four transpose combinations, shapes from
 * 1 to 300 per dimension (odd sizes, edge tiles, several K and M blocks, an N block), alpha
 * and beta including beta = 0 over NaN garbage (which must be overwritten, as in BLAS),
 * and bit-identical results with 1 and 2 threads; and nr__parallel_for (parallel.h), the
 * helper-thread pool the threaded products run on. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nr_math.h"
#include "nr_test.h"
#include "parallel.h"

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}
static float rnd_float(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2 - 1); }
/* Log-uniform-ish dimension in [1, max]. */
static int64_t rnd_dim(int64_t max) {
  double l = log((double)max) * (double)(rnd() >> 11) / 9007199254740992.0;
  int64_t d = (int64_t)exp(l);
  return d < 1 ? 1 : d > max ? max : d;
}

static float *rnd_array(int64_t n) {
  float *x = malloc((size_t)n * sizeof *x); /* exact size: ASan sees any overrun */
  for (int64_t i = 0; i < n; i++) x[i] = rnd_float();
  return x;
}

typedef struct shape {
  int64_t m, n, k;
} shape;

static const char *const kernels[] = {"avx512", "avx2", "cblas"};

/* Checks nr_gemm with every available kernel set on one shape and transpose pair. */
static int check_case(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                      float beta) {
  float *a = rnd_array(m * k), *b = rnd_array(k * n), *c0 = rnd_array(m * n);
  float *c = malloc((size_t)(m * n) * sizeof *c), *cb = malloc((size_t)(m * n) * sizeof *cb);
  double *ref = malloc((size_t)(m * n) * sizeof *ref),
         *bound = malloc((size_t)(m * n) * sizeof *bound);
  if (beta == 0.0f)
    for (int64_t i = 0; i < m * n; i++) c0[i] = (i % 3) ? NAN : INFINITY;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0, sa = 0;
      for (int64_t p = 0; p < k; p++) {
        double x = ta ? a[p * m + i] : a[i * k + p], y = tb ? b[j * k + p] : b[p * n + j];
        s += x * y;
        sa += fabs(x * y);
      }
      double cc = beta == 0.0f ? 0.0 : c0[i * n + j];
      ref[i * n + j] = alpha * s + beta * cc;
      bound[i * n + j] =
          (2.0 * (double)k + 4) * FLT_EPSILON * (fabs(alpha) * sa + fabs(beta * cc)) + 1e-30;
    }
  int bad = 0;
  nr__gemm_use("cblas");
  memcpy(cb, c0, (size_t)(m * n) * sizeof *c);
  nr_gemm(ta, tb, m, n, k, alpha, a, b, beta, cb);
  for (size_t kk = 0; kk < sizeof kernels / sizeof kernels[0] && !bad; kk++) {
    if (!nr__gemm_use(kernels[kk])) continue;
    memcpy(c, c0, (size_t)(m * n) * sizeof *c);
    nr_gemm(ta, tb, m, n, k, alpha, a, b, beta, c);
    for (int64_t i = 0; i < m * n && !bad; i++) {
      double e = fabs(c[i] - ref[i]), ecb = fabs(c[i] - cb[i]);
      if (!(e <= bound[i]) || !(ecb <= 2 * bound[i])) {
        fprintf(stderr,
                "  %s ta=%d tb=%d m=%lld n=%lld k=%lld alpha=%g beta=%g: C[%lld][%lld] = %.9g, "
                "reference %.9g (bound %.3g), cblas %.9g\n",
                kernels[kk], ta, tb, (long long)m, (long long)n, (long long)k, (double)alpha,
                (double)beta, (long long)(i / n), (long long)(i % n), (double)c[i], ref[i],
                bound[i], (double)cb[i]);
        bad = 1;
      }
    }
  }
  nr__gemm_use("auto");
  free(a), free(b), free(c0), free(c), free(cb), free(ref), free(bound);
  return bad;
}

static int check_shape(shape s, int variant) {
  static const float alphas[] = {1.0f, -0.5f, 2.0f}, betas[] = {0.0f, 1.0f, 0.25f};
  int bad = 0;
  for (int t = 0; t < 4; t++)
    bad |= check_case(t & 1, t >> 1, s.m, s.n, s.k, alphas[(variant + t) % 3],
                      betas[(variant / 3 + t) % 3]);
  return bad;
}

static void test_gemm_edge_shapes(void) {
  /* Around the micro-tiles (10x32 and 6x16), the cache blocks (MC 120/72, KC 256), 1s, and
   * products split along K. */
  static const shape shapes[] = {
      {1, 1, 1},    {1, 1, 300},  {300, 1, 1},   {1, 300, 1},  {5, 7, 3},     {6, 16, 1},
      {7, 17, 2},   {10, 32, 5},  {11, 33, 9},   {9, 31, 256}, {10, 32, 257}, {12, 48, 255},
      {20, 25, 300}, {50, 64, 300}, {64, 10, 200}, {119, 15, 17}, {120, 16, 18}, {121, 47, 19},
      {72, 96, 100}, {73, 95, 101}, {241, 33, 5}, {300, 300, 300}, {3, 4101, 7}, {2, 300, 299},
      /* split along K (long K, small C: a weight gradient), chunks of unequal length */
      {20, 25, 16384}, {7, 33, 40000}};
  int bad = 0;
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    bad |= check_shape(shapes[i], (int)i);
  CHECK_INT_EQ(bad, 0);
}

static void test_gemm_random_shapes(void) {
  int bad = 0;
  for (int i = 0; i < 60 && !bad; i++) {
    shape s = {rnd_dim(300), rnd_dim(300), rnd_dim(300)};
    bad |= check_shape(s, i);
  }
  CHECK_INT_EQ(bad, 0);
}

/* k = 0 and alpha = 0: C = beta·C, and beta = 0 clears NaN. */
static void test_gemm_degenerate(void) {
  float c[6] = {NAN, 1, 2, 3, INFINITY, 5}, a[6] = {1, 1, 1, 1, 1, 1};
  for (size_t kk = 0; kk < sizeof kernels / sizeof kernels[0]; kk++) {
    if (!nr__gemm_use(kernels[kk])) continue;
    float x[6];
    memcpy(x, c, sizeof x);
    nr_gemm(false, false, 2, 3, 0, 1.0f, a, a, 0.0f, x);
    for (int i = 0; i < 6; i++) CHECK(x[i] == 0.0f);
    x[0] = 4;
    nr_gemm(false, false, 2, 3, 2, 0.0f, a, a, 0.5f, x);
    CHECK(x[0] == 2.0f && x[5] == 0.0f);
    memcpy(x, c, sizeof x);
    nr_gemm(true, true, 2, 3, 2, 1.0f, a, a, 0.0f, x);
    for (int i = 0; i < 6; i++) CHECK(x[i] == 2.0f);
  }
  nr__gemm_use("auto");
}

/* LeNet's large products split across threads: the result must be bit for bit the
 * single-thread one, for every transpose pair. */
static void test_gemm_threads_bit_identical(void) {
  static const shape shapes[] = {{50, 4096, 500}, {500, 4096, 50}, {50, 500, 4096},
                                 {20, 25, 36864}, {64, 500, 800}};
  const int saved = openblas_get_num_threads();
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    const shape s = shapes[i];
    float *a = rnd_array(s.m * s.k), *b = rnd_array(s.k * s.n), *c0 = rnd_array(s.m * s.n);
    float *c1 = malloc((size_t)(s.m * s.n) * sizeof *c1),
          *c2 = malloc((size_t)(s.m * s.n) * sizeof *c2);
    int diff = 0;
    for (int t = 0; t < 4; t++) {
      memcpy(c1, c0, (size_t)(s.m * s.n) * sizeof *c1);
      memcpy(c2, c0, (size_t)(s.m * s.n) * sizeof *c2);
      openblas_set_num_threads(1);
      nr_gemm(t & 1, t >> 1, s.m, s.n, s.k, 1.0f, a, b, 1.0f, c1);
      openblas_set_num_threads(2);
      nr_gemm(t & 1, t >> 1, s.m, s.n, s.k, 1.0f, a, b, 1.0f, c2);
      diff |= memcmp(c1, c2, (size_t)(s.m * s.n) * sizeof *c1) != 0;
    }
    free(a), free(b), free(c0), free(c1), free(c2);
    CHECK_INT_EQ(diff, 0);
  }
  openblas_set_num_threads(saved);
}

/* nr__gemm_strided with image-grouped columns (as convolution uses it: groups of P pixels,
 * one group per image, channel rows P apart, images S apart) gives exactly nr_gemm's bits on
 * the same data gathered into plain matrices: C grouped (forward), A grouped (weight
 * gradient, B transposed), B grouped (data gradient, A transposed). */
static void test_gemm_strided_groups(void) {
  static const int64_t Ps[] = {32, 64, 96, 576};
  for (size_t kk = 0; kk < 2; kk++) {
    if (!nr__gemm_use(kk == 0 ? "avx512" : "avx2")) continue;
    for (size_t pi = 0; pi < sizeof Ps / sizeof Ps[0]; pi++) {
      const int64_t P = Ps[pi], imgs = 3 + (int64_t)pi, ch = 7 + (int64_t)pi * 5,
                    oth = 11 + (int64_t)pi * 13;
      const int64_t S = (ch + 2) * P, N = imgs * P; /* 2 spare channels per image */
      float *nchw = rnd_array(imgs * S), *other = rnd_array(oth * N), *w = rnd_array(ch * oth);
      float *plain = malloc((size_t)(ch * N) * sizeof *plain);
      for (int64_t r = 0; r < ch; r++) /* channels 1..ch of each image, side by side */
        for (int64_t col = 0; col < N; col++)
          plain[r * N + col] = nchw[col / P * S + (r + 1) * P + col % P];
      nr_gemm_layout grouped = {P, P, S};
      /* C grouped: nchw channels = w (ch x oth) * other (oth x N), beta 0 */
      float *want = malloc((size_t)(ch * N) * sizeof *want),
            *got = malloc((size_t)(imgs * S) * sizeof *got);
      memcpy(got, nchw, (size_t)(imgs * S) * sizeof *got);
      nr_gemm(false, false, ch, N, oth, 1.0f, w, other, 0.0f, want);
      CHECK(nr__gemm_strided(false, false, ch, N, oth, 1.0f, w, NULL, other, NULL, 0.0f, got + P,
                             &grouped));
      int bad = 0;
      for (int64_t i = 0; i < imgs * S; i++) {
        int64_t img = i / S, r = i % S / P - 1, p = i % P;
        float exp = r >= 0 && r < ch ? want[r * N + img * P + p] : nchw[i];
        bad += memcmp(&exp, &got[i], sizeof exp) != 0;
      }
      CHECK_INT_EQ(bad, 0);
      /* A grouped: (ch x N) * other^T (N x oth) + C, beta 1 */
      float *c1 = rnd_array(ch * oth), *c2 = malloc((size_t)(ch * oth) * sizeof *c2);
      float *otherT = rnd_array(oth * N);
      memcpy(c2, c1, (size_t)(ch * oth) * sizeof *c2);
      nr_gemm(false, true, ch, oth, N, 1.0f, plain, otherT, 1.0f, c1);
      CHECK(nr__gemm_strided(false, true, ch, oth, N, 1.0f, nchw + P, &grouped, otherT, NULL, 1.0f,
                             c2, NULL));
      CHECK(memcmp(c1, c2, (size_t)(ch * oth) * sizeof *c1) == 0);
      /* B grouped: w^T (oth x ch) * (ch x N) */
      float *d1 = malloc((size_t)(oth * N) * sizeof *d1),
            *d2 = malloc((size_t)(oth * N) * sizeof *d2);
      nr_gemm(true, false, oth, N, ch, 1.0f, w, plain, 0.0f, d1);
      CHECK(nr__gemm_strided(true, false, oth, N, ch, 1.0f, w, NULL, nchw + P, &grouped, 0.0f, d2,
                             NULL));
      CHECK(memcmp(d1, d2, (size_t)(oth * N) * sizeof *d1) == 0);
      free(nchw), free(other), free(w), free(plain), free(want), free(got), free(c1), free(c2);
      free(otherT), free(d1), free(d2);
    }
  }
  /* Unsupported layouts are refused without touching C. */
  nr_gemm_layout odd = {48, 48, 100};
  float x[4] = {1, 2, 3, 4};
  CHECK(!nr__gemm_strided(false, false, 1, 96, 1, 1.0f, x, NULL, x, NULL, 0.0f, x, &odd));
  CHECK(!nr__gemm_strided(false, true, 1, 96, 1, 1.0f, x, NULL, x, &odd, 0.0f, x, NULL));
  CHECK(x[0] == 1 && x[3] == 4);
  nr__gemm_use("cblas");
  nr_gemm_layout g32 = {32, 32, 64};
  CHECK(!nr__gemm_strided(false, false, 1, 64, 1, 1.0f, x, NULL, x, NULL, 0.0f, x, &g32));
  nr__gemm_use("auto");
}

/* nr__gemm_paneled_cols: op(B) = the transpose of columns [q0, q0 + k) of a wider X in
 * panels gives the bits nr_gemm gives on those columns alone, at offsets inside a panel and
 * at a panel's start, with a K long enough to be split in chunks (a weight gradient over
 * many pixels), on 1 and 2 threads; a range past X's end is refused. */
static void test_gemm_paneled_cols(void) {
  static const shape shapes[] = {{20, 25, 9216}, {50, 70, 300}, {7, 33, 5}};
  static const int64_t q0s[] = {0, 37, 64};
  const int saved = openblas_get_num_threads();
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (size_t qi = 0; qi < sizeof q0s / sizeof q0s[0]; qi++) {
      const shape s = shapes[i];
      const int64_t q0 = q0s[qi], width = q0 + s.k + 5;
      float *a = rnd_array(s.m * s.k), *c0 = rnd_array(s.m * s.n);
      float *xw = rnd_array(s.n * width); /* n x width; B = xw[:, q0 : q0 + k]^T */
      float *b = malloc((size_t)(s.k * s.n) * sizeof *b);
      for (int64_t r = 0; r < s.k; r++)
        for (int64_t q = 0; q < s.n; q++) b[r * s.n + q] = xw[q * width + q0 + r];
      nr_gemm_panels pl;
      if (!nr__gemm_panels(s.n, width, &pl)) break; /* cblas: no panels */
      float *x = aligned_alloc(64, (size_t)(pl.k * pl.npad) * sizeof *x + 64);
      for (int64_t r = 0; r < s.n; r++)
        for (int64_t q = 0; q < pl.npad; q++)
          x[nr_gemm_panel_offset(&pl, r, q)] = q < width ? xw[r * width + q] : 0.0f;
      float *want = malloc((size_t)(s.m * s.n) * sizeof *want);
      float *got = malloc((size_t)(s.m * s.n) * sizeof *got);
      for (int t = 1; t <= 2; t++) {
        openblas_set_num_threads(t);
        memcpy(want, c0, (size_t)(s.m * s.n) * sizeof *want);
        nr_gemm(false, false, s.m, s.n, s.k, 0.5f, a, b, 1.0f, want);
        memcpy(got, c0, (size_t)(s.m * s.n) * sizeof *got);
        CHECK(nr__gemm_paneled_cols(false, s.m, s.n, s.k, q0, 0.5f, a, NULL, x, &pl, 1.0f, got,
                                    NULL));
        CHECK(memcmp(want, got, (size_t)(s.m * s.n) * sizeof *want) == 0);
      }
      memcpy(got, c0, (size_t)(s.m * s.n) * sizeof *got);
      CHECK(!nr__gemm_paneled_cols(false, s.m, s.n, s.k, q0 + 6, 0.5f, a, NULL, x, &pl, 1.0f,
                                   got, NULL));
      CHECK(memcmp(got, c0, (size_t)(s.m * s.n) * sizeof *got) == 0);
      free(a), free(c0), free(xw), free(b), free(x), free(want), free(got);
    }
  openblas_set_num_threads(saved);
}

/* nr__gemm_pack_a + nr__gemm_a_packed: A packed once gives nr_gemm's bits, for shapes
 * with a short last MR strip, several K slices (k > 256) and M blocks (m > 120), with beta
 * 0 and 1, on 1 and 2 threads and both kernel sets. */
static void test_gemm_a_packed(void) {
  static const shape shapes[] = {{7, 33, 5}, {50, 70, 300}, {384, 64, 256}, {130, 17, 600}};
  const int saved = openblas_get_num_threads();
  for (size_t kk = 0; kk < 2; kk++) {
    if (!nr__gemm_use(kk == 0 ? "avx512" : "avx2")) continue;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
      const shape s = shapes[i];
      float *a = rnd_array(s.m * s.k), *b = rnd_array(s.k * s.n), *c0 = rnd_array(s.m * s.n);
      const int64_t np = nr__gemm_packed_a_floats(s.m, s.k);
      CHECK(np >= s.m * s.k);
      float *ap = malloc((size_t)np * sizeof *ap);
      nr__gemm_pack_a(s.m, s.k, a, ap);
      float *want = malloc((size_t)(s.m * s.n) * sizeof *want);
      float *got = malloc((size_t)(s.m * s.n) * sizeof *got);
      for (int t = 1; t <= 2; t++) {
        openblas_set_num_threads(t);
        for (int beta = 0; beta < 2; beta++) {
          memcpy(want, c0, (size_t)(s.m * s.n) * sizeof *want);
          nr_gemm(false, false, s.m, s.n, s.k, 0.5f, a, b, (float)beta, want);
          memcpy(got, c0, (size_t)(s.m * s.n) * sizeof *got);
          CHECK(nr__gemm_a_packed(s.m, s.n, s.k, 0.5f, ap, b, (float)beta, got));
          CHECK(memcmp(want, got, (size_t)(s.m * s.n) * sizeof *want) == 0);
        }
      }
      free(a), free(b), free(c0), free(ap), free(want), free(got);
    }
  }
  openblas_set_num_threads(saved);
  nr__gemm_use("cblas"); /* nothing to pack for cblas */
  CHECK_INT_EQ(nr__gemm_packed_a_floats(4, 4), 0);
  nr__gemm_use("auto");
}

/* nr__gemm_paneled: B written once in the kernels' panel form gives exactly nr_gemm's bits
 * on the same matrix, as op(B) = X and as op(B) = X^T; shapes with short last panels,
 * several K slices (k > 256) and column blocks (n > 1024), both kernel sets, 1 and 2
 * threads, A transposed or not (grouped layouts: test_conv). A panel form of other
 * kernels, or of another shape, is refused. */
static void test_gemm_paneled(void) {
  static const shape shapes[] = {{7, 33, 5}, {50, 1100, 300}, {10, 17, 600}, {33, 70, 257}};
  const int saved = openblas_get_num_threads();
  for (size_t kk = 0; kk < 2; kk++) {
    if (!nr__gemm_use(kk == 0 ? "avx512" : "avx2")) continue;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
      const shape s = shapes[i];
      float *a = rnd_array(s.m * s.k), *c0 = rnd_array(s.m * s.n), *b = rnd_array(s.k * s.n);
      float *bt = malloc((size_t)(s.k * s.n) * sizeof *bt); /* b transposed: n x k */
      for (int64_t r = 0; r < s.k; r++)
        for (int64_t q = 0; q < s.n; q++) bt[q * s.k + r] = b[r * s.n + q];
      nr_gemm_panels pl, plt;
      CHECK(nr__gemm_panels(s.k, s.n, &pl));
      CHECK(nr__gemm_panels(s.n, s.k, &plt));
      CHECK_INT_EQ(pl.nr, kk == 0 ? 32 : 16);
      float *x = aligned_alloc(64, (size_t)(pl.k * pl.npad) * sizeof *x + 64);
      float *xt = aligned_alloc(64, (size_t)(plt.k * plt.npad) * sizeof *xt + 64);
      for (int64_t j = 0; j < pl.k * pl.npad; j++) x[j] = NAN; /* the padding must be written */
      for (int64_t r = 0; r < s.k; r++)
        for (int64_t q = 0; q < pl.npad; q++)
          x[nr_gemm_panel_offset(&pl, r, q)] = q < s.n ? b[r * s.n + q] : 0.0f;
      for (int64_t r = 0; r < s.n; r++)
        for (int64_t q = 0; q < plt.npad; q++)
          xt[nr_gemm_panel_offset(&plt, r, q)] = q < s.k ? bt[r * s.k + q] : 0.0f;
      for (int64_t j = 0; j < pl.k * pl.npad; j++) CHECK(!isnan(x[j]));
      float *want = malloc((size_t)(s.m * s.n) * sizeof *want),
            *got = malloc((size_t)(s.m * s.n) * sizeof *got);
      for (int t = 1; t <= 2; t++) {
        openblas_set_num_threads(t);
        for (int ta = 0; ta < 2; ta++) {
          memcpy(want, c0, (size_t)(s.m * s.n) * sizeof *want);
          nr_gemm(ta, false, s.m, s.n, s.k, 0.5f, a, b, 1.0f, want);
          memcpy(got, c0, (size_t)(s.m * s.n) * sizeof *got);
          CHECK(nr__gemm_paneled(ta, false, s.m, s.n, s.k, 0.5f, a, NULL, x, &pl, 1.0f, got, NULL));
          CHECK(memcmp(want, got, (size_t)(s.m * s.n) * sizeof *want) == 0);
          memcpy(got, c0, (size_t)(s.m * s.n) * sizeof *got);
          CHECK(
              nr__gemm_paneled(ta, true, s.m, s.n, s.k, 0.5f, a, NULL, xt, &plt, 1.0f, got, NULL));
          CHECK(memcmp(want, got, (size_t)(s.m * s.n) * sizeof *want) == 0);
        }
      }
      /* the wrong shape, or panels of the other kernel set: refused, C untouched */
      memcpy(got, c0, (size_t)(s.m * s.n) * sizeof *got);
      CHECK(!nr__gemm_paneled(false, true, s.m, s.n, s.k, 1.0f, a, NULL, x, &pl, 0.0f, got, NULL) ||
            s.n == s.k);
      if (nr__gemm_use(kk == 0 ? "avx2" : "avx512"))
        CHECK(
            !nr__gemm_paneled(false, false, s.m, s.n, s.k, 1.0f, a, NULL, x, &pl, 0.0f, got, NULL));
      nr__gemm_use(kk == 0 ? "avx512" : "avx2");
      CHECK(memcmp(got, c0, (size_t)(s.m * s.n) * sizeof *got) == 0);
      free(a), free(c0), free(b), free(bt), free(x), free(xt), free(want), free(got);
    }
  }
  openblas_set_num_threads(saved);
  nr__gemm_use("cblas"); /* no panels to write for cblas */
  nr_gemm_panels pl;
  CHECK(!nr__gemm_panels(4, 4, &pl));
  nr__gemm_use("auto");
}

/* nr__parallel_for: every index visited exactly once, over many back-to-back jobs of
 * varied sizes and grains, with a nested call (which runs serially) inside. */
typedef struct visit_ctx {
  int *hits;
  int nested;
} visit_ctx;

static void visit_inner(void *ctx, int64_t lo, int64_t hi) {
  int *h = ctx;
  for (int64_t i = lo; i < hi; i++) h[i]++;
}

static void visit(void *ctx, int64_t lo, int64_t hi) {
  visit_ctx *v = ctx;
  for (int64_t i = lo; i < hi; i++) v->hits[i]++;
  if (v->nested) nr__parallel_for(hi - lo, 1, visit_inner, v->hits + 100000 + lo);
}

static void test_parallel_for(void) {
  const int saved = openblas_get_num_threads();
  openblas_set_num_threads(2);
  int *hits = calloc(200000, sizeof *hits);
  int bad = 0;
  for (int round = 0; round < 2000 && !bad; round++) {
    const int64_t n = 1 + (int64_t)(rnd() % 100000), grain = 1 + (int64_t)(rnd() % 64);
    visit_ctx v = {hits, round % 7 == 0};
    memset(hits, 0, 200000 * sizeof *hits);
    nr__parallel_for(n, grain, visit, &v);
    for (int64_t i = 0; i < n; i++) bad += hits[i] != 1 || (v.nested && hits[100000 + i] != 1);
    for (int64_t i = n; i < 100000; i++) bad += hits[i] != 0;
  }
  free(hits);
  openblas_set_num_threads(saved);
  CHECK_INT_EQ(bad, 0);
}

int main(void) {
  fprintf(stderr, "nr_gemm kernel set: %s\n", nr__gemm_kernel_name());
  NR_RUN(test_gemm_edge_shapes);
  NR_RUN(test_gemm_random_shapes);
  NR_RUN(test_gemm_degenerate);
  NR_RUN(test_gemm_threads_bit_identical);
  NR_RUN(test_gemm_strided_groups);
  NR_RUN(test_gemm_paneled);
  NR_RUN(test_gemm_paneled_cols);
  NR_RUN(test_gemm_a_packed);
  NR_RUN(test_parallel_for);
  return NR_TEST_EXIT();
}
