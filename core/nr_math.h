/* nr_math.h: the dense math netrun's layers use: nr_gemm (core/gemm.c, its own kernels,
 * OpenBLAS only as a fallback), gemv over OpenBLAS (cblas), and plain loops.
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

/* C = alpha * op(A) * op(B) + beta * C, all row-major and packed (lda = K or M, ldb = N
 * or K, ldc = N). beta = 0 overwrites C without reading it. Runs netrun's own packed FMA
 * kernels (core/gemm.c; AVX-512 or AVX2, chosen once from the CPU), threaded over
 * openblas_get_num_threads() threads (parallel.h) for large products, else cblas_sgemm.
 * The result does not depend on the thread count. Safe to call from several threads. */
void nr_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, const float *b, float beta, float *c);
/* Where a matrix's elements are, for nr__gemm_strided: element (r, col) is at
 * base + (col / group)·group_stride + r·ld + col % group. group 0 (or >= the column count)
 * is a plain row-major matrix with leading dimension ld. Convolution passes groups of one
 * image's pixels, so the product reads and writes N·C·H·W blobs in place. */
typedef struct nr_gemm_layout {
  int64_t ld, group, group_stride;
} nr_gemm_layout;
/* Grouped B and C columns must come in multiples of this. */
#define NR_GEMM_GROUP_ALIGN 32

/* nr_gemm with A, B and C laid out as given (NULL: packed row-major, as nr_gemm). Grouped
 * columns are supported in A and B when not transposed and in C, with B's and C's group a
 * multiple of NR_GEMM_GROUP_ALIGN. Returns false, having done nothing, for any other
 * layout, for k = 0 or alpha = 0, when nr_gemm would use cblas, or when out of memory:
 * the caller then rearranges the data and calls nr_gemm. */
bool nr__gemm_strided(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *a, const nr_gemm_layout *la, const float *b,
                      const nr_gemm_layout *lb, float beta, float *c,
                      const nr_gemm_layout *lc);
/* A K x N matrix kept in the form nr_gemm packs its B operand into, so that a caller that
 * produces B itself (a convolution's columns) writes it once in that form and the GEMM
 * reads it without packing: K in slices of kc rows (the last may be shorter), each slice's
 * N columns in panels of nr (the last zero-padded to nr), each panel row after row.
 * Element (r, q) is at nr_gemm_panel_offset(pl, r, q). The whole matrix takes k · npad
 * floats and must start 64-byte aligned. */
typedef struct nr_gemm_panels {
  int64_t k, n, npad, kc;
  int nr, nr_log2; /* nr = 1 << nr_log2 */
} nr_gemm_panels;

/* The panel form of a k x n matrix for the kernels nr_gemm uses now; false when they take
 * no panels (cblas). */
bool nr__gemm_panels(int64_t k, int64_t n, nr_gemm_panels *pl);

static inline int64_t nr_gemm_panel_offset(const nr_gemm_panels *pl, int64_t r, int64_t q) {
  const int64_t s = r / pl->kc * pl->kc, kcs = pl->k - s < pl->kc ? pl->k - s : pl->kc;
  return s * pl->npad + (q >> pl->nr_log2) * pl->nr * kcs + (r - s) * pl->nr +
         (q & (pl->nr - 1));
}

/* C = alpha * op(A) * op(B) + beta * C, A and C as in nr__gemm_strided, where op(B) (k x
 * n) is X (transposed = false) or X^T (true) and X is in panels (pl: X's shape, k x n or
 * n x k). The same bits as nr__gemm_strided on X written out. False, having done nothing,
 * where nr__gemm_strided would refuse, and when pl is not the panel form of the kernels
 * in use. */
bool nr__gemm_paneled(bool trans_a, bool transposed, int64_t m, int64_t n, int64_t k,
                      float alpha, const float *a, const nr_gemm_layout *la, const float *x,
                      const nr_gemm_panels *pl, float beta, float *c, const nr_gemm_layout *lc);
/* nr__gemm_paneled's transposed case over columns [q0, q0 + k) of X only: op(B) (k x n) =
 * X[:, q0 : q0 + k]^T, X (n x pl->n) in panels. The same bits as nr__gemm_paneled on those
 * columns put in panels of their own (a convolution's weight gradient over some of the
 * images whose columns its forward left). False where nr__gemm_paneled would refuse. */
bool nr__gemm_paneled_cols(bool trans_a, int64_t m, int64_t n, int64_t k, int64_t q0,
                           float alpha, const float *a, const nr_gemm_layout *la, const float *x,
                           const nr_gemm_panels *pl, float beta, float *c,
                           const nr_gemm_layout *lc);
/* A product whose A (m x k, row-major, not transposed) is packed once for many B's (a
 * Winograd kernel multiplied by every block of tiles): nr__gemm_packed_a_floats(m, k)
 * floats (0 when nr_gemm uses cblas: then pack nothing and call nr_gemm), filled by
 * nr__gemm_pack_a; nr__gemm_a_packed is then C = alpha·A·B + beta·C (B k x n, C m x n,
 * row-major) with nr_gemm's bits, false (nothing done) where nr_gemm would use cblas or
 * when out of memory for packing B. The packed form belongs to the kernel set in use. */
int64_t nr__gemm_packed_a_floats(int64_t m, int64_t k);
void nr__gemm_pack_a(int64_t m, int64_t k, const float *a, float *dst);
bool nr__gemm_a_packed(int64_t m, int64_t n, int64_t k, float alpha, const float *ap,
                       const float *b, float beta, float *c);
/* The same product through cblas_sgemm (OpenBLAS), whatever nr_gemm would use. */
void nr__gemm_cblas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, const float *b, float beta, float *c);
/* The kernel set nr_gemm uses now: "avx512", "avx2" or "cblas". */
const char *nr__gemm_kernel_name(void);
/* For tests and benchmarks: make nr_gemm use kernel set `name` ("avx512", "avx2", "cblas",
 * or "auto" = the CPU's best) in every thread. False if this CPU cannot run it. */
bool nr__gemm_use(const char *name);

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
