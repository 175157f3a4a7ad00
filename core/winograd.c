#include "winograd.h"

#include <stdlib.h>
#include <string.h>

#include "nr_math.h"
#include "parallel.h"

bool nr__conv_winograd = true;

/* Channels per group, on each side, from which the 16 products beat one im2col product:
 * below it they are too thin for the GEMM (measured: bench/nets shapes, docs/bench.md). */
#define NR_WINO_MIN_CH 16
/* Longest padded input row a transform keeps on its stack (floats). */
#define NR_WINO_MAX_ROW 1040
/* Most input channels per group a kernel transform keeps on its stack. */
#define NR_WINO_MAX_CG 512

static _Thread_local float *tls_buf;
static _Thread_local int64_t tls_cap;

/* One convolution in Winograd's terms: input planes (num, C, H, W) padded by (ph, pw),
 * output planes (num, K, OH, OW) in th × tw tiles of 2×2 (T per image), G groups. */
typedef struct wino {
  int64_t num, C, H, W, K, G, ph, pw, OH, OW, th, tw;
  const float *in;
  float *out;
  const float *w;
  bool flip;     /* the data gradient's kernel: w turned by 180°, its channel axes swapped */
  float *U;      /* [16][K][C/G]: the transformed kernel */
} wino;

void nr__winograd_release(void) {
  free(tls_buf);
  tls_buf = NULL;
  tls_cap = 0;
}

static bool row_fits(int64_t out_w) { return 2 * ((out_w + 1) / 2) + 2 <= NR_WINO_MAX_ROW; }

bool nr__winograd_applies(const nr_conv *cv) {
  if (!nr__conv_winograd || cv->nsp != 2) return false;
  for (int a = 0; a < 2; a++)
    if (cv->kernel[a] != 3 || cv->stride[a] != 1 || cv->dil[a] != 1 || cv->pad[a] > 2)
      return false;
  const int64_t cg = cv->in_ch / cv->group, kg = cv->out_ch / cv->group;
  return cg >= NR_WINO_MIN_CH && kg >= NR_WINO_MIN_CH && cg <= NR_WINO_MAX_CG &&
         kg <= NR_WINO_MAX_CG &&
         cv->num > 0 && cv->col_dim > 0 && row_fits(cv->col_sp[1]) && row_fits(cv->im_sp[1]);
}

/* Rows [r0, r1) of U: U[ξ][r][q] = (G g Gᵀ)[ξ] for the 3×3 kernel g of output channel r and
 * input channel q of its group; a row's taps are gathered first so that the transform
 * runs along q. */
static void kernel_range(void *ctx, int64_t r0, int64_t r1) {
  const wino *z = ctx;
  const int64_t K = z->K, Cg = z->C / z->G, Kg = K / z->G, step = K * Cg;
  float g[9][NR_WINO_MAX_CG], t[4][3][NR_WINO_MAX_CG];
  for (int64_t r = r0; r < r1; r++) {
    for (int64_t q = 0; q < Cg; q++)
      if (!z->flip) {
        const float *s = z->w + (r * Cg + q) * 9;
        for (int i = 0; i < 9; i++) g[i][q] = s[i];
      } else { /* w is (C, K/G, 3, 3) in this pass's terms: r is one of w's inputs */
        const float *s = z->w + ((r / Kg * Cg + q) * Kg + r % Kg) * 9;
        for (int i = 0; i < 9; i++) g[8 - i][q] = s[i];
      }
    for (int j = 0; j < 3; j++) /* G g */
      for (int64_t q = 0; q < Cg; q++) {
        const float g0 = g[j][q], g1 = g[3 + j][q], g2 = g[6 + j][q];
        t[0][j][q] = g0;
        t[1][j][q] = 0.5f * (g0 + g1 + g2);
        t[2][j][q] = 0.5f * (g0 - g1 + g2);
        t[3][j][q] = g2;
      }
    float *u = z->U + r * Cg;
    for (int i = 0; i < 4; i++) { /* (G g) Gᵀ */
      float *u0 = u + (i * 4) * step, *u1 = u0 + step, *u2 = u1 + step, *u3 = u2 + step;
      const float *t0 = t[i][0], *t1 = t[i][1], *t2 = t[i][2];
      for (int64_t q = 0; q < Cg; q++) {
        u0[q] = t0[q];
        u1[q] = 0.5f * (t0[q] + t1[q] + t2[q]);
        u2[q] = 0.5f * (t0[q] - t1[q] + t2[q]);
        u3[q] = t2[q];
      }
    }
  }
}

/* Tiles [t0, t1) of the batch (tile t: image t / (th·tw), tile row t / tw % th, column
 * t % tw) into V[ξ][c][t − t0] = (Bᵀ d B)[ξ] for each tile's 4×4 input block d. Row by
 * row, so that the transforms run along a tile row's contiguous input. */
static void input_tiles(const wino *z, int64_t t0, int64_t t1, float *V) {
  const int64_t W = z->W, tw = z->tw, nt = t1 - t0, step = z->C * nt;
  float rows[4][NR_WINO_MAX_ROW], t[4][NR_WINO_MAX_ROW];
  for (int64_t c = 0; c < z->C; c++)
    for (int64_t r = t0 / tw; r * tw < t1; r++) {
      const int64_t n = r / z->th, ty = r % z->th;
      const int64_t xa = t0 > r * tw ? t0 - r * tw : 0, xb = t1 < (r + 1) * tw ? t1 - r * tw : tw;
      /* padded input columns [2·xa, 2·xb + 2), from input column 2·xa − pw */
      const int64_t x0 = 2 * xa - z->pw, len = 2 * (xb - xa) + 2;
      const int64_t lo = x0 < 0 ? -x0 : 0, hi = W - x0 < len ? W - x0 : len;
      const float *src = z->in + (n * z->C + c) * z->H * W;
      for (int i = 0; i < 4; i++) {
        const int64_t iy = 2 * ty - z->ph + i;
        float *row = rows[i];
        if (iy < 0 || iy >= z->H) {
          memset(row, 0, (size_t)len * sizeof *row);
          continue;
        }
        memset(row, 0, (size_t)lo * sizeof *row);
        memcpy(row + lo, src + iy * W + x0 + lo, (size_t)(hi - lo) * sizeof *row);
        memset(row + hi, 0, (size_t)(len - hi) * sizeof *row);
      }
      for (int64_t x = 0; x < len; x++) { /* Bᵀ d, along the columns */
        t[0][x] = rows[0][x] - rows[2][x];
        t[1][x] = rows[1][x] + rows[2][x];
        t[2][x] = rows[2][x] - rows[1][x];
        t[3][x] = rows[1][x] - rows[3][x];
      }
      float *d = V + c * nt + r * tw + xa - t0;
      for (int i = 0; i < 4; i++) { /* (Bᵀ d) B, along the rows */
        const float *ti = t[i];
        float *d0 = d + (i * 4) * step, *d1 = d0 + step, *d2 = d1 + step, *d3 = d2 + step;
        for (int64_t x = 0; x < xb - xa; x++) {
          const float *v = ti + 2 * x;
          d0[x] = v[0] - v[2];
          d1[x] = v[1] + v[2];
          d2[x] = v[2] - v[1];
          d3[x] = v[1] - v[3];
        }
      }
    }
}

/* The output of tiles [t0, t1) from their products M[ξ][k][t − t0]: each tile's 2×2 =
 * Aᵀ m A, clipped to the plane. */
static void output_tiles(const wino *z, int64_t t0, int64_t t1, const float *M) {
  const int64_t tw = z->tw, nt = t1 - t0, step = z->K * nt, OW = z->OW;
  float y[2][NR_WINO_MAX_ROW], a[2][4][NR_WINO_MAX_ROW / 2];
  for (int64_t k = 0; k < z->K; k++)
    for (int64_t r = t0 / tw; r * tw < t1; r++) {
      const int64_t n = r / z->th, ty = r % z->th;
      const int64_t xa = t0 > r * tw ? t0 - r * tw : 0, xb = t1 < (r + 1) * tw ? t1 - r * tw : tw;
      const int64_t nx = xb - xa;
      const float *mt = M + k * nt + r * tw + xa - t0;
      for (int j = 0; j < 4; j++) { /* Aᵀ m, along the columns */
        const float *m0 = mt + j * step, *m1 = m0 + 4 * step, *m2 = m1 + 4 * step,
                    *m3 = m2 + 4 * step;
        for (int64_t x = 0; x < nx; x++) {
          a[0][j][x] = m0[x] + m1[x] + m2[x];
          a[1][j][x] = m1[x] - m2[x] - m3[x];
        }
      }
      for (int i = 0; i < 2; i++) { /* (Aᵀ m) A, along the rows */
        const float *a0 = a[i][0], *a1 = a[i][1], *a2 = a[i][2], *a3 = a[i][3];
        float *yi = y[i];
        for (int64_t x = 0; x < nx; x++) {
          yi[2 * x] = a0[x] + a1[x] + a2[x];
          yi[2 * x + 1] = a1[x] - a2[x] - a3[x];
        }
      }
      /* output columns [2·xa, min(2·xb, OW)) of rows 2·ty and 2·ty + 1 (if inside) */
      const int64_t cols = (2 * xb < OW ? 2 * xb : OW) - 2 * xa;
      float *dst = z->out + (n * z->K + k) * z->OH * OW + 2 * ty * OW + 2 * xa;
      memcpy(dst, y[0], (size_t)cols * sizeof(float));
      if (2 * ty + 1 < z->OH) memcpy(dst + OW, y[1], (size_t)cols * sizeof(float));
    }
}

/* The batch's tiles go in blocks, each transformed, multiplied and transformed back by one
 * thread in its own buffer, small enough to stay in its core's cache (the whole batch's
 * transformed input and products are 16·(C+K) floats a tile: streamed through memory they
 * cost more than the products save). A block's tiles are a multiple of 32 (whole panels
 * of the GEMM's kernels) and at least NR_WINO_MIN_TILES; blocks depend only on the
 * shapes. */
#define NR_WINO_BLOCK_FLOATS ((int64_t)1 << 18)
#define NR_WINO_MIN_TILES 64

static _Thread_local float *tls_blk;
static _Thread_local int64_t tls_blk_cap;

static int64_t block_tiles(const wino *z) {
  const int64_t nt = NR_WINO_BLOCK_FLOATS / (16 * (z->C + z->K)) / 32 * 32;
  return nt < NR_WINO_MIN_TILES ? NR_WINO_MIN_TILES : nt;
}

static bool block_part(void *ctx, int p, int parts) {
  const wino *z = ctx;
  const int64_t T = z->num * z->th * z->tw, per = block_tiles(z);
  const int64_t nb = (T + per - 1) / per, b0 = nb * p / parts, b1 = nb * (p + 1) / parts;
  const int64_t need = 16 * (z->C + z->K) * per;
  if (need > tls_blk_cap) {
    float *b = aligned_alloc(64, ((size_t)need * sizeof *b + 63) & ~(size_t)63);
    if (!b) return false;
    free(tls_blk);
    tls_blk = b;
    tls_blk_cap = need;
  }
  const int64_t Cg = z->C / z->G, Kg = z->K / z->G;
  for (int64_t blk = b0; blk < b1; blk++) {
    const int64_t t0 = blk * per, t1 = t0 + per < T ? t0 + per : T, nt = t1 - t0;
    float *V = tls_blk, *M = tls_blk + 16 * z->C * nt;
    input_tiles(z, t0, t1, V);
    for (int xi = 0; xi < 16; xi++)
      for (int64_t g = 0; g < z->G; g++)
        nr_gemm(false, false, Kg, nt, Cg, 1.0f, z->U + (xi * z->K + g * Kg) * Cg,
                V + (xi * z->C + g * Cg) * nt, 0.0f, M + (xi * z->K + g * Kg) * nt);
    output_tiles(z, t0, t1, M);
  }
  return true;
}

/* out (num, K, OH, OW) = in (num, C, H, W) ⊛ the kernel z->w. */
static nr_status run(wino *z, nr_error *err) {
  const int64_t Cg = z->C / z->G;
  z->th = (z->OH + 1) / 2;
  z->tw = (z->OW + 1) / 2;
  const int64_t ukern = 16 * z->K * Cg;
  if (ukern > tls_cap) {
    float *b = aligned_alloc(64, ((size_t)ukern * sizeof *b + 63) & ~(size_t)63);
    if (!b)
      return nr_err_set(err, NR_ERR_NOMEM,
                        "out of memory for a %lld-float Winograd kernel", (long long)ukern);
    free(tls_buf);
    tls_buf = b;
    tls_cap = ukern;
  }
  z->U = tls_buf;
  nr__parallel_for(z->K, nr__parallel_grain(16 * Cg), kernel_range, z);
  const int64_t per = block_tiles(z), nb = (z->num * z->th * z->tw + per - 1) / per;
  const int parts = nb < NR_PARALLEL_MAX_PARTS ? (int)nb : NR_PARALLEL_MAX_PARTS;
  if (!nr__parallel_run(block_part, z, parts))
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory for a Winograd convolution block");
  return NR_OK;
}

nr_status nr__winograd_forward(const nr_conv *cv, const float *im, const float *w, float *out,
                               nr_error *err) {
  wino z = {.num = cv->num, .C = cv->in_ch, .H = cv->im_sp[0], .W = cv->im_sp[1], .K = cv->out_ch,
            .G = cv->group, .ph = cv->pad[0], .pw = cv->pad[1], .OH = cv->col_sp[0],
            .OW = cv->col_sp[1], .in = im, .out = out, .w = w, .flip = false};
  return run(&z, err);
}

nr_status nr__winograd_backward_data(const nr_conv *cv, const float *out_diff, const float *w,
                                     float *im_diff, nr_error *err) {
  wino z = {.num = cv->num, .C = cv->out_ch, .H = cv->col_sp[0], .W = cv->col_sp[1], .K = cv->in_ch,
            .G = cv->group, .ph = 2 - cv->pad[0], .pw = 2 - cv->pad[1], .OH = cv->im_sp[0],
            .OW = cv->im_sp[1], .in = out_diff, .out = im_diff, .w = w, .flip = true};
  return run(&z, err);
}
