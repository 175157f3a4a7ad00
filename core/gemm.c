/* gemm.c: netrun's own single-precision GEMM (nr_gemm), independent of OpenBLAS's CPU
 * detection.
 *
 * Why. Debian 12's OpenBLAS 0.3.21 does not recognise some current Xeons (Sapphire Rapids
 * reporting a generic model name) and runs its Prescott kernels (SSE3, no FMA) there: about
 * 3x slower than the hardware allows, and more than half of a LeNet training iteration
 * (docs/bench.md). We may not steer OpenBLAS with OPENBLAS_CORETYPE, so the GEMMs the
 * layers run go through this file instead.
 *
 * How (the BLIS scheme). C (M x N, row-major) is computed in blocks: for each NC-wide
 * column block of C and each KC-deep slice of K, op(B)'s KC x NC block is packed into
 * NR-wide micro-panels (k-major, zero-padded to NR), then for each MC-tall row block op(A)'s
 * MC x KC block is packed into MR-tall micro-panels (k-major), and a register-blocked
 * micro-kernel computes every MR x NR tile of C from one A and one B micro-panel with FMAs:
 * the B micro-panel stays in L1 while the A micro-panels stream from L2. Packing is what
 * makes the four transpose combinations one kernel. Edge tiles: the kernel is instantiated
 * for every row count 1..MR (no wasted FMAs on short rows) and stores the last columns with
 * masks. alpha and beta are applied when a tile is stored; beta = 0 overwrites C without
 * reading it (NaN in C does not leak through, as in BLAS). The first K slice stores with the
 * caller's beta, later slices accumulate.
 *
 * Kernels. AVX-512 (10 x 32: 20 zmm accumulators) and AVX2+FMA (6 x 16: 12 ymm
 * accumulators), each in functions compiled with a target attribute, so the rest of the
 * build stays generic x86-64. The choice is made once, from the CPU (cpuid via
 * __builtin_cpu_supports, which also checks that the OS saves the wider registers). Without
 * either (other architectures, old CPUs) nr_gemm calls cblas_sgemm.
 *
 * Threads. A product with enough work is split between the calling thread and the helper
 * threads of parallel.h (as many threads in total as OpenBLAS is configured for, so
 * OPENBLAS_NUM_THREADS keeps governing netrun's math), along N in NR-wide strips or along M
 * in MR-tall strips.
 * Each element of C is computed by exactly one thread with the same blocking, so results
 * are bit-identical whatever the thread count. Packing buffers are per thread; nr_gemm may
 * be called from several threads at once.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nr_math.h"
#include "parallel.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define NR_GEMM_X86 1
#endif

/* A micro-kernel: the mr x nr tile at c (row stride ldc) = alpha * Apanel * Bpanel +
 * beta * tile, over kc steps; mr <= MR, nr <= NR of its ISA. */
typedef void (*gemm_kernel)(int mr, int nr, int64_t kc, const float *a, const float *b,
                            float *c, int64_t ldc, float alpha, float beta);

/* Packs one micro-panel: rows (or columns) r of op(X) for K range [0, kc), starting at x
 * (already offset to the panel's first element), into dst with the ISA's panel width. */
typedef void (*gemm_packer)(bool trans, const float *x, int64_t ldx, int r, int64_t kc,
                            float *dst);

typedef struct gemm_isa {
  const char *name;
  int mr, nr;            /* micro-tile */
  int64_t mc, kc, nc;    /* cache blocks (mc a multiple of mr, nc of nr) */
  gemm_kernel kernel;
  gemm_packer pack_a, pack_b;
} gemm_isa;

/* ---- packing ------------------------------------------------------------------------ */

/* Offset of element (0, col) of a matrix with grouped columns (gc = 0: plain). */
static inline int64_t col_offset(int64_t col, int64_t gc, int64_t gs) {
  return gc ? col / gc * gs + col % gc : col;
}

/* A micro-panel of A holds, for each k, the MR values A(i, k) of its rows (rows past the
 * last are left unset: the kernel never reads them); one of B holds, for each k, the NR
 * values B(k, j) of its columns, zero past the last. When the panel's direction is
 * contiguous in memory (A transposed, B not) packing is a copy per k; otherwise the
 * source rows run along k and are transposed in 8 x 8 blocks. */

/* dst[k·S + j] = src[j·lds + k] for j < rows, k < kc. */
static inline __attribute__((always_inline, target("avx2"))) void
pack_transposed(const float *restrict src, int64_t lds, int rows, int64_t kc,
                float *restrict dst, const int S) {
  int j = 0;
  for (; j + 8 <= rows; j += 8) {
    const float *s = src + j * lds;
    float *d = dst + j;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      __m256 r0 = _mm256_loadu_ps(s + 0 * lds + k), r1 = _mm256_loadu_ps(s + 1 * lds + k);
      __m256 r2 = _mm256_loadu_ps(s + 2 * lds + k), r3 = _mm256_loadu_ps(s + 3 * lds + k);
      __m256 r4 = _mm256_loadu_ps(s + 4 * lds + k), r5 = _mm256_loadu_ps(s + 5 * lds + k);
      __m256 r6 = _mm256_loadu_ps(s + 6 * lds + k), r7 = _mm256_loadu_ps(s + 7 * lds + k);
      __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
      __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
      __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
      __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
      __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
      __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
      __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
      __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
      float *o = d + k * S;
      _mm256_storeu_ps(o + 0 * S, _mm256_permute2f128_ps(u0, u4, 0x20));
      _mm256_storeu_ps(o + 1 * S, _mm256_permute2f128_ps(u1, u5, 0x20));
      _mm256_storeu_ps(o + 2 * S, _mm256_permute2f128_ps(u2, u6, 0x20));
      _mm256_storeu_ps(o + 3 * S, _mm256_permute2f128_ps(u3, u7, 0x20));
      _mm256_storeu_ps(o + 4 * S, _mm256_permute2f128_ps(u0, u4, 0x31));
      _mm256_storeu_ps(o + 5 * S, _mm256_permute2f128_ps(u1, u5, 0x31));
      _mm256_storeu_ps(o + 6 * S, _mm256_permute2f128_ps(u2, u6, 0x31));
      _mm256_storeu_ps(o + 7 * S, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (; k < kc; k++)
      for (int jj = 0; jj < 8; jj++) d[k * S + jj] = s[jj * lds + k];
  }
  for (; j < rows; j++)
    for (int64_t k = 0; k < kc; k++) dst[k * S + j] = src[j * lds + k];
}

/* dst[k·S + j] = src[k·lds + j] for j < cols, zero for cols <= j < S (if zero_pad). With
 * explicit vectors: as a plain loop GCC turns each short row into a memmove call. */
static inline __attribute__((always_inline, target("avx2"))) void
pack_copy(const float *restrict src, int64_t lds, int cols, int64_t kc, float *restrict dst,
          const int S, bool zero_pad) {
  const int full = cols & ~7;
  for (int64_t k = 0; k < kc; k++, src += lds, dst += S) {
    int j = 0;
    for (; j < full; j += 8) _mm256_storeu_ps(dst + j, _mm256_loadu_ps(src + j));
    for (; j < cols; j++) dst[j] = src[j];
    if (zero_pad)
      for (; j < S; j++) dst[j] = 0.0f;
  }
}

/* A's rows [i0, i0+mc) and K range [k0, k0+kc), micro-panel after micro-panel. With
 * grouped columns (A not transposed), the K range is packed group segment by segment. */
static void pack_a(const gemm_isa *isa, bool ta, const float *a, int64_t lda, int64_t gc,
                   int64_t gs, int64_t i0, int64_t k0, int64_t mc, int64_t kc, float *dst) {
  for (int64_t ip = 0; ip < mc; ip += isa->mr) {
    const int mr = mc - ip < isa->mr ? (int)(mc - ip) : isa->mr;
    float *d = dst + ip * kc;
    if (ta) {
      isa->pack_a(true, a + k0 * lda + i0 + ip, lda, mr, kc, d);
      continue;
    }
    for (int64_t k = k0; k < k0 + kc;) {
      int64_t len = k0 + kc - k;
      if (gc && gc - k % gc < len) len = gc - k % gc;
      isa->pack_a(false, a + (i0 + ip) * lda + col_offset(k, gc, gs), lda, mr, len,
                  d + (k - k0) * isa->mr);
      k += len;
    }
  }
}

/* op(B)'s K range [k0, k0+kc) and columns [j0, j0+nc). With grouped columns (B not
 * transposed) every micro-panel lies inside one group (the group is a multiple of NR). */
static void pack_b(const gemm_isa *isa, bool tb, const float *b, int64_t ldb, int64_t gc,
                   int64_t gs, int64_t k0, int64_t j0, int64_t kc, int64_t nc, float *dst) {
  for (int64_t jp = 0; jp < nc; jp += isa->nr) {
    const int nr = nc - jp < isa->nr ? (int)(nc - jp) : isa->nr;
    const float *x = tb ? b + (j0 + jp) * ldb + k0 : b + k0 * ldb + col_offset(j0 + jp, gc, gs);
    isa->pack_b(tb, x, ldb, nr, kc, dst + jp * kc);
  }
}

/* ---- micro-kernels ------------------------------------------------------------------ */

#ifdef NR_GEMM_X86

#define MR512 10
#define NR512 32

/* The AVX-512 tile body for a compile-time row count MRC (always inlined into one
 * function per row count, so the accumulators live in registers). */
static inline __attribute__((always_inline, target("avx512f"))) void
k512_body(const int MRC, int nr, int64_t kc, const float *restrict a, const float *restrict b,
          float *c, int64_t ldc, float alpha, float beta) {
  __m512 acc0[MR512], acc1[MR512];
#pragma GCC unroll 16
  for (int i = 0; i < MRC; i++) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; p++) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 16
    for (int i = 0; i < MRC; i++) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
    }
    a += MR512;
    b += NR512;
  }
  const __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff
                       : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1)
                                 : (__mmask16)0;
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < MRC; i++) {
    float *cr = c + i * ldc;
    __m512 r0 = _mm512_mul_ps(va, acc0[i]), r1 = _mm512_mul_ps(va, acc1[i]);
    if (beta != 0.0f) {
      r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), r0);
      r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), r1);
    }
    _mm512_mask_storeu_ps(cr, m0, r0);
    _mm512_mask_storeu_ps(cr + 16, m1, r1);
  }
}

#define K512(R)                                                                          \
  static __attribute__((target("avx512f"))) void k512_##R(                               \
      int nr, int64_t kc, const float *a, const float *b, float *c, int64_t ldc,         \
      float alpha, float beta) {                                                         \
    k512_body(R, nr, kc, a, b, c, ldc, alpha, beta);                                     \
  }
K512(1) K512(2) K512(3) K512(4) K512(5) K512(6) K512(7) K512(8) K512(9) K512(10)

static void kernel_avx512(int mr, int nr, int64_t kc, const float *a, const float *b, float *c,
                          int64_t ldc, float alpha, float beta) {
  typedef void (*fn)(int, int64_t, const float *, const float *, float *, int64_t, float, float);
  static const fn by_rows[MR512 + 1] = {NULL,    k512_1, k512_2, k512_3, k512_4, k512_5,
                                        k512_6, k512_7, k512_8, k512_9, k512_10};
  by_rows[mr](nr, kc, a, b, c, ldc, alpha, beta);
}

#define MR256 6
#define NR256 16

static inline __attribute__((always_inline, target("avx2,fma"))) void
k256_body(const int MRC, int nr, int64_t kc, const float *restrict a, const float *restrict b,
          float *c, int64_t ldc, float alpha, float beta) {
  __m256 acc0[MR256], acc1[MR256];
#pragma GCC unroll 8
  for (int i = 0; i < MRC; i++) acc0[i] = acc1[i] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; p++) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MRC; i++) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
    }
    a += MR256;
    b += NR256;
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  if (nr == NR256) {
#pragma GCC unroll 8
    for (int i = 0; i < MRC; i++) {
      float *cr = c + i * ldc;
      __m256 r0 = _mm256_mul_ps(va, acc0[i]), r1 = _mm256_mul_ps(va, acc1[i]);
      if (beta != 0.0f) {
        r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), r0);
        r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), r1);
      }
      _mm256_storeu_ps(cr, r0);
      _mm256_storeu_ps(cr + 8, r1);
    }
    return;
  }
  /* Edge tile: lane j of a half is stored when j < the columns left in it. */
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), lane);
  const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), lane);
#pragma GCC unroll 8
  for (int i = 0; i < MRC; i++) {
    float *cr = c + i * ldc;
    __m256 r0 = _mm256_mul_ps(va, acc0[i]), r1 = _mm256_mul_ps(va, acc1[i]);
    if (beta != 0.0f) {
      r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr, m0), r0);
      r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr + 8, m1), r1);
    }
    _mm256_maskstore_ps(cr, m0, r0);
    _mm256_maskstore_ps(cr + 8, m1, r1);
  }
}

#define K256(R)                                                                          \
  static __attribute__((target("avx2,fma"))) void k256_##R(                              \
      int nr, int64_t kc, const float *a, const float *b, float *c, int64_t ldc,         \
      float alpha, float beta) {                                                         \
    k256_body(R, nr, kc, a, b, c, ldc, alpha, beta);                                     \
  }
K256(1) K256(2) K256(3) K256(4) K256(5) K256(6)

static void kernel_avx2(int mr, int nr, int64_t kc, const float *a, const float *b, float *c,
                        int64_t ldc, float alpha, float beta) {
  typedef void (*fn)(int, int64_t, const float *, const float *, float *, int64_t, float, float);
  static const fn by_rows[MR256 + 1] = {NULL, k256_1, k256_2, k256_3, k256_4, k256_5, k256_6};
  by_rows[mr](nr, kc, a, b, c, ldc, alpha, beta);
}

/* Packers: a panel's rows (A) or columns (B) are 'r' of MR / NR. */
#define PACKERS(SUFFIX, TARGET, MR, NR)                                                  \
  static __attribute__((target(TARGET))) void pack_a_##SUFFIX(                           \
      bool trans, const float *x, int64_t ldx, int r, int64_t kc, float *dst) {           \
    if (trans)                                                                            \
      pack_copy(x, ldx, r, kc, dst, MR, false);                                           \
    else                                                                                  \
      pack_transposed(x, ldx, r, kc, dst, MR);                                            \
  }                                                                                       \
  static __attribute__((target(TARGET))) void pack_b_##SUFFIX(                           \
      bool trans, const float *x, int64_t ldx, int r, int64_t kc, float *dst) {           \
    if (!trans) {                                                                         \
      pack_copy(x, ldx, r, kc, dst, NR, true);                                            \
      return;                                                                             \
    }                                                                                     \
    if (r < NR) memset(dst, 0, (size_t)(kc * NR) * sizeof *dst);                          \
    pack_transposed(x, ldx, r, kc, dst, NR);                                              \
  }
PACKERS(avx512, "avx512f,avx2", MR512, NR512)
PACKERS(avx2, "avx2,fma", MR256, NR256)

/* op(B) = X^T with X in panels (X's rows are op(B)'s columns): op(B)'s K range [k0, k0+kc)
 * and columns [j0, j0+nc), as pack_b. X's panels have the kernels' width and j0 is a
 * multiple of it, so the rows of one micro-panel lie in one slice of X; along K they are
 * transposed in runs that end at the edges of X's panels. */
static __attribute__((target("avx2"))) void pack_panels_t(const nr_gemm_panels *pl,
                                                          const float *x, int64_t k0,
                                                          int64_t j0, int64_t kc, int64_t nc,
                                                          float *dst) {
  const int NR = pl->nr;
  for (int64_t jp = 0; jp < nc; jp += NR) {
    const int rows = nc - jp < NR ? (int)(nc - jp) : NR;
    const int64_t r0 = j0 + jp, s = r0 / pl->kc * pl->kc;
    const int64_t kcs = pl->k - s < pl->kc ? pl->k - s : pl->kc;
    const float *base = x + s * pl->npad + (r0 - s) * NR;
    float *d = dst + jp * kc;
    if (rows < NR) memset(d, 0, (size_t)(kc * NR) * sizeof *d);
    for (int64_t q = k0; q < k0 + kc;) {
      const int64_t lane = q & (NR - 1);
      const int64_t len = NR - lane < k0 + kc - q ? NR - lane : k0 + kc - q;
      pack_transposed(base + (q >> pl->nr_log2) * NR * kcs + lane, NR, rows, len,
                      d + (q - k0) * NR, NR);
      q += len;
    }
  }
}

static const gemm_isa isa_avx512 = {"avx512", MR512, NR512, 120,        256,
                                    1024,     kernel_avx512, pack_a_avx512, pack_b_avx512};
static const gemm_isa isa_avx2 = {"avx2", MR256,       NR256,       72,          256,
                                  4096,   kernel_avx2, pack_a_avx2, pack_b_avx2};

#endif /* NR_GEMM_X86 */

/* ---- ISA choice --------------------------------------------------------------------- */

static const gemm_isa *isa_detect(void) {
#ifdef NR_GEMM_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return &isa_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &isa_avx2;
#endif
  return NULL;
}

static pthread_once_t isa_once = PTHREAD_ONCE_INIT;
static const gemm_isa *isa_cpu;   /* best the CPU offers, NULL: cblas only */
static _Atomic(const gemm_isa *) isa_cur;

static void isa_init(void) {
  isa_cpu = isa_detect();
  atomic_store(&isa_cur, isa_cpu);
}

static const gemm_isa *isa_get(void) {
  pthread_once(&isa_once, isa_init);
  return atomic_load_explicit(&isa_cur, memory_order_relaxed);
}

const char *nr__gemm_kernel_name(void) {
  const gemm_isa *i = isa_get();
  return i ? i->name : "cblas";
}

bool nr__gemm_use(const char *name) {
  pthread_once(&isa_once, isa_init);
  const gemm_isa *want = NULL;
  if (strcmp(name, "cblas") == 0) {
    atomic_store(&isa_cur, NULL);
    return true;
  }
#ifdef NR_GEMM_X86
  if (strcmp(name, "avx512") == 0) want = &isa_avx512;
  if (strcmp(name, "avx2") == 0) want = &isa_avx2;
  /* An ISA is usable if the CPU's best one is it or a superset of it. */
  if (want == &isa_avx512 && isa_cpu != &isa_avx512) want = NULL;
  if (want == &isa_avx2 && !isa_cpu) want = NULL;
#endif
  if (strcmp(name, "auto") == 0) want = isa_cpu;
  if (!want && strcmp(name, "auto") != 0) return false;
  atomic_store(&isa_cur, want);
  return true;
}

/* ---- the blocked product -------------------------------------------------------------- */

typedef struct gemm_args {
  const gemm_isa *isa;
  bool ta, tb;
  int64_t m, n, k;
  float alpha, beta;
  const float *a, *b;
  int64_t lda, ldb, ldc;
  float *c;
  /* Grouped columns (see nr_gemm_layout): group size and stride, 0 when plain. */
  int64_t a_gc, a_gs, b_gc, b_gs, c_gc, c_gs;
  /* B in panels instead of at b (nr__gemm_paneled): op(B) is *bpl's matrix at bp, or its
   * transpose (bp_t); NULL when B is at b */
  const nr_gemm_panels *bpl;
  const float *bp;
  bool bp_t;
  /* the K range this product covers: [k0, k1), k1 = 0 for all of K (see ksplit) */
  int64_t k0, k1;
  int64_t bp_q0; /* bp_t: op(B) starts at column bp_q0 of *bpl's matrix */
  /* A packed already (nr__gemm_pack_a), NULL when A is at a: K slice pc's rows from ic on
   * at ap + pc·(m rounded up to mr) + ic·(the slice's length) */
  const float *ap;
} gemm_args;


static _Thread_local float *tls_pack;
static _Thread_local int64_t tls_pack_cap;

/* This thread's packing buffer of at least `floats` floats, 64-byte aligned; NULL if out
 * of memory. */
static float *pack_buffer(int64_t floats) {
  if (floats > tls_pack_cap) {
    free(tls_pack);
    tls_pack_cap = 0;
    size_t bytes = ((size_t)floats * sizeof(float) + 63) & ~(size_t)63;
    tls_pack = aligned_alloc(64, bytes);
    if (!tls_pack) return NULL;
    tls_pack_cap = floats;
  }
  return tls_pack;
}

static int64_t pack_floats(const gemm_isa *isa) {
  return isa->mc * isa->kc + isa->kc * isa->nc;
}

/* m rows rounded up to whole MR strips: the rows of each K slice of a packed A. */
static inline int64_t rows_padded(const gemm_isa *isa, int64_t m) {
  return (m + isa->mr - 1) / isa->mr * isa->mr;
}

/* C rows [i0, i1) x columns [j0, j1) of the product; false only if out of memory. */
static bool gemm_part(const gemm_args *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  const gemm_isa *isa = g->isa;
  float *buf = pack_buffer(pack_floats(isa));
  if (!buf) return false;
  float *abuf = buf, *bbuf = buf + isa->mc * isa->kc;
  for (int64_t jc = j0; jc < j1; jc += isa->nc) {
    const int64_t nc = j1 - jc < isa->nc ? j1 - jc : isa->nc;
    const int64_t k1 = g->k1 ? g->k1 : g->k;
    for (int64_t pc = g->k0; pc < k1; pc += isa->kc) {
      const int64_t kc = k1 - pc < isa->kc ? k1 - pc : isa->kc;
      const float beta = pc == g->k0 ? g->beta : 1.0f;
      const float *bblk = bbuf;
      if (!g->bpl)
        pack_b(isa, g->tb, g->b, g->ldb, g->b_gc, g->b_gs, pc, jc, kc, nc, bbuf);
      else if (!g->bp_t) /* already packed: slice pc, panels from jc on */
        bblk = g->bp + pc * g->bpl->npad + jc * kc;
      else
        pack_panels_t(g->bpl, g->bp, g->bp_q0 + pc, jc, kc, nc, bbuf);
      for (int64_t ic = i0; ic < i1; ic += isa->mc) {
        const int64_t mc = i1 - ic < isa->mc ? i1 - ic : isa->mc;
        const float *ablk = abuf;
        if (g->ap) ablk = g->ap + pc * rows_padded(isa, g->m) + ic * kc;
        else pack_a(isa, g->ta, g->a, g->lda, g->a_gc, g->a_gs, ic, pc, mc, kc, abuf);
        for (int64_t jr = 0; jr < nc; jr += isa->nr) {
          const int nr = nc - jr < isa->nr ? (int)(nc - jr) : isa->nr;
          for (int64_t ir = 0; ir < mc; ir += isa->mr) {
            const int mr = mc - ir < isa->mr ? (int)(mc - ir) : isa->mr;
            isa->kernel(mr, nr, kc, ablk + ir * kc, bblk + jr * kc,
                        g->c + (ic + ir) * g->ldc + col_offset(jc + jr, g->c_gc, g->c_gs),
                        g->ldc, g->alpha, beta);
          }
        }
      }
    }
  }
  return true;
}

/* ---- threaded products ---------------------------------------------------------------- */

typedef struct gemm_job {
  const gemm_args *g;
  bool split_n;
  int64_t units; /* strips of NR (split_n) or MR rows */
} gemm_job;

static bool gemm_job_part(void *ctx, int p, int parts) {
  const gemm_job *j = ctx;
  const gemm_args *g = j->g;
  const int64_t lo = j->units * p / parts, hi = j->units * (p + 1) / parts;
  if (lo == hi) return true;
  if (j->split_n) {
    const int64_t nr = g->isa->nr;
    const int64_t j1 = hi * nr < g->n ? hi * nr : g->n;
    return gemm_part(g, 0, g->m, lo * nr, j1);
  }
  const int64_t mr = g->isa->mr;
  const int64_t i1 = hi * mr < g->m ? hi * mr : g->m;
  return gemm_part(g, lo * mr, i1, 0, g->n);
}

/* ---- products split along K ------------------------------------------------------------
 *
 * A product with a long K and a small C (a convolution's weight gradient: C is the weights,
 * K the batch's pixels; LeNet's conv1 is 20 x 25 over 36864) cannot be split along M or N
 * without every part packing all of the other operand again. It is split along K instead,
 * into chunks whose length depends only on K (so the result does not depend on the thread
 * count): each chunk's product goes to a buffer of its own, and C = beta·C + the chunks'
 * sum, added in chunk order. */
#define NR_GEMM_KSPLIT_MIN 8192     /* shortest chunk, and half the shortest K split */
#define NR_GEMM_KSPLIT_MAX_C 131072 /* largest C (floats) split along K */
#define NR_GEMM_KSPLIT_CHUNKS 32    /* most chunks */

static _Thread_local float *tls_ksplit;
static _Thread_local int64_t tls_ksplit_cap;

/* The chunk length for a product, or 0 when it is not split along K. */
static int64_t ksplit_chunk(const gemm_args *g) {
  if (g->k < 2 * NR_GEMM_KSPLIT_MIN || g->m * g->n > NR_GEMM_KSPLIT_MAX_C) return 0;
  int64_t chunk = (g->k + NR_GEMM_KSPLIT_CHUNKS - 1) / NR_GEMM_KSPLIT_CHUNKS;
  if (chunk < NR_GEMM_KSPLIT_MIN) chunk = NR_GEMM_KSPLIT_MIN;
  return (chunk + g->isa->kc - 1) / g->isa->kc * g->isa->kc; /* whole K slices */
}

typedef struct ksplit_job {
  const gemm_args *g;
  int64_t chunk;
  float *part; /* chunk p's m x n product at part + p·m·n */
} ksplit_job;

static bool ksplit_part(void *ctx, int p, int parts) {
  (void)parts;
  const ksplit_job *j = ctx;
  gemm_args a = *j->g;
  a.k0 = p * j->chunk;
  a.k1 = a.k0 + j->chunk < a.k ? a.k0 + j->chunk : a.k;
  a.c = j->part + p * a.m * a.n;
  a.ldc = a.n;
  a.c_gc = a.c_gs = 0;
  a.beta = 0.0f;
  return gemm_part(&a, 0, a.m, 0, a.n);
}

typedef struct ksum_job {
  const gemm_args *g;
  const float *part;
  int parts;
} ksum_job;

/* Rows [i0, i1) of C = beta·C + the chunks' products, in chunk order. */
static void ksum_rows(void *ctx, int64_t i0, int64_t i1) {
  const ksum_job *j = ctx;
  const gemm_args *g = j->g;
  const int64_t mn = g->m * g->n;
  for (int64_t i = i0; i < i1; i++) {
    float *c = g->c + i * g->ldc;
    for (int64_t q = 0; q < g->n; q++) {
      const float *x = j->part + i * g->n + q;
      float s = x[0];
      for (int p = 1; p < j->parts; p++) s += x[p * mn];
      float *cq = c + col_offset(q, g->c_gc, g->c_gs);
      *cq = g->beta == 0.0f ? s : g->beta * *cq + s;
    }
  }
}

/* The product split along K; false (C untouched) if out of memory. */
static bool ksplit_run(const gemm_args *g, int64_t chunk) {
  const int parts = (int)((g->k + chunk - 1) / chunk);
  const int64_t need = parts * g->m * g->n;
  if (need > tls_ksplit_cap) {
    float *b = realloc(tls_ksplit, (size_t)need * sizeof *b);
    if (!b) return false;
    tls_ksplit = b;
    tls_ksplit_cap = need;
  }
  float *part = tls_ksplit;
  ksplit_job kj = {g, chunk, part};
  if (!nr__parallel_run(ksplit_part, &kj, parts)) return false;
  ksum_job sj = {g, part, parts};
  nr__parallel_for(g->m, 1 + 16384 / (g->n * parts), ksum_rows, &sj);
  return true;
}

/* Below this many multiply-adds a product runs on the calling thread only: waking a helper
 * costs tens of microseconds. */
#define NR_GEMM_MT_MIN_FMAS ((int64_t)4 << 20)

/* Computes the product. False (C untouched) only if the caller's packing buffer cannot be
 * allocated; a part whose helper fails that way (before writing any of C) is run by the
 * caller instead. */
static bool gemm_run(const gemm_args *g) {
  if (!pack_buffer(pack_floats(g->isa))) return false;
  const int64_t chunk = ksplit_chunk(g);
  if (chunk) return ksplit_run(g, chunk);
  const int threads = nr__parallel_threads();
  const int64_t nstrips = (g->n + g->isa->nr - 1) / g->isa->nr;
  const int64_t mstrips = (g->m + g->isa->mr - 1) / g->isa->mr;
  if (threads < 2 || g->m * g->n * g->k < NR_GEMM_MT_MIN_FMAS || (nstrips < 2 && mstrips < 2))
    return gemm_part(g, 0, g->m, 0, g->n);
  /* Split along N unless that leaves too few strips per thread (then along M, which makes
   * every thread pack all of op(B)). */
  gemm_job job = {g, nstrips >= 2 * threads || nstrips >= mstrips, 0};
  job.units = job.split_n ? nstrips : mstrips;
  /* Split along M, each part packs all of op(B): only worth it when the parts are tall
   * (a weight gradient of 20 x 25 over 36864 pixels would pack its B twice for half the
   * multiply-adds each), and then in as few parts as threads. */
  if (!job.split_n && mstrips < 4 * threads) return gemm_part(g, 0, g->m, 0, g->n);
  int64_t most = job.split_n ? NR_PARALLEL_PARTS_PER_THREAD * threads : threads;
  if (most > NR_PARALLEL_MAX_PARTS) most = NR_PARALLEL_MAX_PARTS;
  /* Split along N, each part packs all of op(A) again: parts at least 256 columns wide (a
   * convolution's weight gradient, 64 x 576 over 31360 pixels, spent more time packing
   * its top diff 8 times than multiplying). */
  if (job.split_n && most > g->n / 256)
    /* (a whole number of parts per thread: LeNet's ip1 weight gradient, 800 columns, ran
     * in 3 parts, 2 of them on one thread) */
    most = g->n / 256 > threads ? g->n / 256 / threads * threads : threads;
  return nr__parallel_run(gemm_job_part, &job, (int)(job.units < most ? job.units : most));
}

/* ---- entry points ----------------------------------------------------------------------- */

void nr_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, const float *b, float beta, float *c) {
  if (m <= 0 || n <= 0) return;
  const gemm_isa *isa = isa_get();
  if (isa && k > 0 && alpha != 0.0f) {
    gemm_args g = {isa, trans_a, trans_b, m, n, k, alpha, beta, a, b, trans_a ? m : k,
                   trans_b ? k : n, n, c, 0, 0, 0, 0, 0, 0, NULL, NULL, false, 0, 0, 0, NULL};
    if (gemm_run(&g)) return;
    /* Out of memory for the packing buffer (C untouched): cblas needs none of ours. */
  } else if (isa) { /* C = beta·C (BLAS: beta 0 overwrites, even NaN) */
    for (int64_t i = 0; i < m * n; i++) c[i] = beta == 0.0f ? 0.0f : beta * c[i];
    return;
  }
  nr__gemm_cblas(trans_a, trans_b, m, n, k, alpha, a, b, beta, c);
}

/* Group size of a layout: 0 when the matrix is plain (no layout, or one group spanning all
 * `cols` columns). */
static int64_t layout_group(const nr_gemm_layout *l, int64_t cols) {
  return !l || l->group <= 0 || l->group >= cols ? 0 : l->group;
}

bool nr__gemm_strided(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *a, const nr_gemm_layout *la, const float *b,
                      const nr_gemm_layout *lb, float beta, float *c,
                      const nr_gemm_layout *lc) {
  const gemm_isa *isa = isa_get();
  if (!isa || m <= 0 || n <= 0 || k <= 0 || alpha == 0.0f) return false;
  const int64_t agc = layout_group(la, k), bgc = layout_group(lb, n), cgc = layout_group(lc, n);
  if ((agc && trans_a) || (bgc && (trans_b || bgc % NR_GEMM_GROUP_ALIGN)) ||
      (cgc && cgc % NR_GEMM_GROUP_ALIGN))
    return false;
  gemm_args g = {isa,
                 trans_a,
                 trans_b,
                 m,
                 n,
                 k,
                 alpha,
                 beta,
                 a,
                 b,
                 la ? la->ld : trans_a ? m : k,
                 lb ? lb->ld : trans_b ? k : n,
                 lc ? lc->ld : n,
                 c,
                 agc,
                 agc ? la->group_stride : 0,
                 bgc,
                 bgc ? lb->group_stride : 0,
                 cgc,
                 cgc ? lc->group_stride : 0,
                 NULL,
                 NULL,
                 false,
                 0,
                 0,
                 0,
                 NULL};
  return gemm_run(&g);
}

bool nr__gemm_panels(int64_t k, int64_t n, nr_gemm_panels *pl) {
  const gemm_isa *isa = isa_get();
  if (!isa) return false;
  int lg = 0;
  while ((1 << lg) < isa->nr) lg++;
  *pl = (nr_gemm_panels){k, n, (n + isa->nr - 1) / isa->nr * isa->nr, isa->kc, isa->nr, lg};
  return true;
}

static bool paneled(bool trans_a, bool transposed, int64_t m, int64_t n, int64_t k, int64_t q0,
                    float alpha, const float *a, const nr_gemm_layout *la, const float *x,
                    const nr_gemm_panels *pl, float beta, float *c, const nr_gemm_layout *lc) {
  const gemm_isa *isa = isa_get();
  if (!isa || m <= 0 || n <= 0 || k <= 0 || alpha == 0.0f || q0 < 0) return false;
  if (pl->nr != isa->nr || pl->kc != isa->kc || pl->k != (transposed ? n : k) ||
      pl->n < (transposed ? q0 + k : n) || (!transposed && (q0 || pl->n != n)) ||
      ((uintptr_t)x & 63))
    return false;
  const int64_t agc = layout_group(la, k), cgc = layout_group(lc, n);
  if ((agc && trans_a) || (cgc && cgc % NR_GEMM_GROUP_ALIGN)) return false;
  gemm_args g = {.isa = isa, .ta = trans_a, .m = m, .n = n, .k = k, .alpha = alpha,
                 .beta = beta, .a = a, .lda = la ? la->ld : trans_a ? m : k,
                 .ldc = lc ? lc->ld : n, .c = c, .a_gc = agc,
                 .a_gs = agc ? la->group_stride : 0, .c_gc = cgc,
                 .c_gs = cgc ? lc->group_stride : 0, .bpl = pl, .bp = x, .bp_t = transposed,
                 .bp_q0 = q0};
  return gemm_run(&g);
}

bool nr__gemm_paneled(bool trans_a, bool transposed, int64_t m, int64_t n, int64_t k,
                      float alpha, const float *a, const nr_gemm_layout *la, const float *x,
                      const nr_gemm_panels *pl, float beta, float *c, const nr_gemm_layout *lc) {
  if (transposed && pl->n != k) return false;
  return paneled(trans_a, transposed, m, n, k, 0, alpha, a, la, x, pl, beta, c, lc);
}

bool nr__gemm_paneled_cols(bool trans_a, int64_t m, int64_t n, int64_t k, int64_t q0,
                           float alpha, const float *a, const nr_gemm_layout *la, const float *x,
                           const nr_gemm_panels *pl, float beta, float *c,
                           const nr_gemm_layout *lc) {
  return paneled(trans_a, true, m, n, k, q0, alpha, a, la, x, pl, beta, c, lc);
}

int64_t nr__gemm_packed_a_floats(int64_t m, int64_t k) {
  const gemm_isa *isa = isa_get();
  if (!isa || m <= 0 || k <= 0) return 0;
  return rows_padded(isa, m) * k;
}

void nr__gemm_pack_a(int64_t m, int64_t k, const float *a, float *dst) {
  const gemm_isa *isa = isa_get();
  if (!isa || m <= 0 || k <= 0) return;
  const int64_t mpad = rows_padded(isa, m);
  for (int64_t pc = 0; pc < k; pc += isa->kc) {
    const int64_t kc = k - pc < isa->kc ? k - pc : isa->kc;
    for (int64_t ic = 0; ic < m; ic += isa->mc) {
      const int64_t mc = m - ic < isa->mc ? m - ic : isa->mc;
      pack_a(isa, false, a, k, 0, 0, ic, pc, mc, kc, dst + pc * mpad + ic * kc);
    }
  }
}

bool nr__gemm_a_packed(int64_t m, int64_t n, int64_t k, float alpha, const float *ap,
                       const float *b, float beta, float *c) {
  const gemm_isa *isa = isa_get();
  if (!isa || m <= 0 || n <= 0 || k <= 0 || alpha == 0.0f) return false;
  gemm_args g = {.isa = isa, .m = m, .n = n, .k = k, .alpha = alpha, .beta = beta,
                 .b = b, .lda = k, .ldb = n, .ldc = n, .c = c, .ap = ap};
  return gemm_run(&g);
}

void nr__gemm_cblas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, const float *b, float beta, float *c) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha, a,
              trans_a ? (int)m : (int)k, b, trans_b ? (int)k : (int)n, beta, c, (int)n);
}
