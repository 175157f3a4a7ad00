/* nr_math.h: the dense math netrun's layers use, over OpenBLAS (cblas).
 *
 * Row-major everywhere. nr_gemm computes C = alpha * op(A) * op(B) + beta * C with op(A)
 * M x K, op(B) K x N, C M x N. Everything else is a plain loop the compiler vectorizes.
 */
#ifndef NR_MATH_H
#define NR_MATH_H

#include <cblas.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static inline void nr_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                           float alpha, const float *a, const float *b, float beta,
                           float *c) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha, a,
              trans_a ? (int)m : (int)k, b, trans_b ? (int)k : (int)n, beta, c, (int)n);
}

/* y = alpha * op(A) * x + beta * y, A is m x n. */
static inline void nr_gemv(bool trans_a, int64_t m, int64_t n, float alpha, const float *a,
                           const float *x, float beta, float *y) {
  cblas_sgemv(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, (int)m, (int)n, alpha, a,
              (int)n, x, 1, beta, y, 1);
}

static inline void nr_axpy(int64_t n, float alpha, const float *x, float *y) {
  for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}
static inline void nr_scal(int64_t n, float alpha, float *x) {
  for (int64_t i = 0; i < n; i++) x[i] *= alpha;
}
static inline void nr_set(int64_t n, float v, float *x) {
  if (v == 0.0f) {
    memset(x, 0, (size_t)n * sizeof *x);
    return;
  }
  for (int64_t i = 0; i < n; i++) x[i] = v;
}
static inline void nr_copy(int64_t n, const float *x, float *y) {
  if (x != y) memmove(y, x, (size_t)n * sizeof *x);
}
static inline double nr_dot(int64_t n, const float *x, const float *y) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)x[i] * y[i];
  return s;
}
static inline double nr_asum(int64_t n, const float *x) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i] < 0 ? -x[i] : x[i];
  return s;
}

#endif
