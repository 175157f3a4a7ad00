#include "winograd.h"

#include <stdlib.h>
#include <string.h>

#include "nr_math.h"
#include "parallel.h"

bool nr__conv_winograd = true;
/* Channels per group, on each side, from which the 16 products beat one im2col product:
 * below it they are too thin for the GEMM (measured on CIFAR- and ResNet-sized layers:
 * 16 channels at 32x32 about even, 32 channels 1.1-1.25x faster). */
int nr__winograd_min_channels = 16;
/* Longest padded input row a transform keeps on its stack (floats). */
#define NR_WINO_MAX_ROW 1040
/* Fewest tiles a batch needs for Winograd (ResNet-18's 14x14 and 7x7 layers at batch 1,
 * 49 and 16 tiles, ran slower than their column products on 2 threads). */
#define NR_WINO_MIN_BATCH_TILES 64
/* Most input channels per group a kernel transform keeps on its stack. */
#define NR_WINO_MAX_CG 512

/* A thread's buffer, grown on demand (64-byte aligned; the contents need not survive). */
typedef struct wbuf {
  float *p;
  int64_t cap;
} wbuf;

static float *wbuf_get(wbuf *b, int64_t need) {
  if (need > b->cap) {
    float *p = aligned_alloc(64, ((size_t)need * sizeof *p + 63) & ~(size_t)63);
    if (!p) return NULL;
    free(b->p);
    b->p = p;
    b->cap = need;
  }
  return b->p;
}

static void wbuf_free(wbuf *b) {
  free(b->p);
  *b = (wbuf){0};
}

static _Thread_local wbuf tls_kernel; /* the caller's transformed kernel */
static _Thread_local wbuf tls_kpack;  /* ... packed for the GEMMs */

/* One convolution in Winograd's terms: input planes (num, C, H, W) padded by (ph, pw),
 * output planes (num, K, OH, OW) in th × tw tiles of 2×2 per image, G groups. */
typedef struct wino {
  int64_t num, C, H, W, K, G, ph, pw, OH, OW, th, tw;
  const float *in;
  float *out;
  const float *w;
  bool flip;     /* the data gradient's kernel: w turned by 180°, its channel axes swapped */
  float *U;      /* [16][K][C/G]: the transformed kernel */
  /* U packed as the GEMMs' A operand, ξ and group g's at Up + (ξ·G + g)·upk; NULL when
   * nr_gemm packs nothing (cblas). Every block multiplies the same U: packed once per
   * pass, not once per block (CaffeNet's conv3: 6 MB per 64-tile block, 13 % of its
   * time on 1 thread, and reads the two threads shared). */
  float *Up;
  int64_t upk;
  const float *dy; /* the weight gradient's output gradient (num, K, OH, OW) */
  float *dU;       /* [chunks][16][K][C/G]: its chunks' gradients against U */
} wino;

static bool row_fits(int64_t out_w) { return 2 * ((out_w + 1) / 2) + 2 <= NR_WINO_MAX_ROW; }

bool nr__winograd_applies(const nr_conv *cv) {
  if (!nr__conv_winograd || cv->nsp != 2) return false;
  for (int a = 0; a < 2; a++)
    if (cv->kernel[a] != 3 || cv->stride[a] != 1 || cv->dil[a] != 1 || cv->pad[a] > 2)
      return false;
  const int64_t cg = cv->in_ch / cv->group, kg = cv->out_ch / cv->group;
  return cg >= nr__winograd_min_channels && kg >= nr__winograd_min_channels &&
         cg <= NR_WINO_MAX_CG && kg <= NR_WINO_MAX_CG &&
         cv->num * ((cv->col_sp[0] + 1) / 2) * ((cv->col_sp[1] + 1) / 2) >=
             NR_WINO_MIN_BATCH_TILES &&
         row_fits(cv->col_sp[1]) && row_fits(cv->im_sp[1]);
}

/* cv in Winograd's terms: its forward (and weight gradient), or its data gradient, which
 * runs from the output side to the input side with padding 2 − pad. */
static wino wino_of(const nr_conv *cv, bool data_grad) {
  wino z = {.num = cv->num, .G = cv->group};
  const int64_t *in_sp = data_grad ? cv->col_sp : cv->im_sp;
  const int64_t *out_sp = data_grad ? cv->im_sp : cv->col_sp;
  z.C = data_grad ? cv->out_ch : cv->in_ch;
  z.K = data_grad ? cv->in_ch : cv->out_ch;
  z.H = in_sp[0], z.W = in_sp[1], z.OH = out_sp[0], z.OW = out_sp[1];
  z.ph = data_grad ? 2 - cv->pad[0] : cv->pad[0];
  z.pw = data_grad ? 2 - cv->pad[1] : cv->pad[1];
  z.th = (z.OH + 1) / 2;
  z.tw = (z.OW + 1) / 2;
  return z;
}

/* Tile row r of the batch (image *n, row *ty of its tiles) within tiles [t0, t1): its
 * tile columns [*xa, *xb). */
static inline void tile_row(const wino *z, int64_t r, int64_t t0, int64_t t1, int64_t *n,
                            int64_t *ty, int64_t *xa, int64_t *xb) {
  *n = r / z->th;
  *ty = r % z->th;
  *xa = t0 > r * z->tw ? t0 - r * z->tw : 0;
  *xb = t1 < (r + 1) * z->tw ? t1 - r * z->tw : z->tw;
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

/* Items [i0, i1) of U packed: item i = ξ·G + g. */
static void kernel_pack_range(void *ctx, int64_t i0, int64_t i1) {
  const wino *z = ctx;
  const int64_t Cg = z->C / z->G, Kg = z->K / z->G;
  for (int64_t i = i0; i < i1; i++)
    nr__gemm_pack_a(Kg, Cg, z->U + (i / z->G * z->K + i % z->G * Kg) * Cg, z->Up + i * z->upk);
}

/* Tiles [t0, t1) of the batch (tile t: image t / (th·tw), tile row t / tw % th, column
 * t % tw) into V[ξ][c][t − t0] = (Bᵀ d B)[ξ] for each tile's 4×4 input block d. Row by
 * row, so that the transforms run along a tile row's contiguous input. */
static void input_tiles(const wino *z, int64_t t0, int64_t t1, float *V) {
  const int64_t W = z->W, tw = z->tw, nt = t1 - t0, step = z->C * nt;
  float rows[4][NR_WINO_MAX_ROW], t[4][NR_WINO_MAX_ROW];
  for (int64_t c = 0; c < z->C; c++)
    for (int64_t r = t0 / tw; r * tw < t1; r++) {
      int64_t n, ty, xa, xb;
      tile_row(z, r, t0, t1, &n, &ty, &xa, &xb);
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
      int64_t n, ty, xa, xb;
      tile_row(z, r, t0, t1, &n, &ty, &xa, &xb);
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
 * cost more than the products save): at most NR_WINO_BLOCK_FLOATS floats, or
 * NR_WINO_MIN_TILES tiles. The forward and the data gradient cut the batch's tiles into
 * one range per part, as even as the threads need, each range into blocks: each output
 * value is one product's sum over the channels, whatever the block, so this does not
 * change the bits. */
#define NR_WINO_BLOCK_FLOATS ((int64_t)1 << 18)
#define NR_WINO_MIN_TILES 64
/* The weight gradient's products run over a block's tiles and add into a (K × C/G) sum:
 * with fewer tiles than this, reading and writing that sum costs more than the products
 * (ResNet-18's 256- and 512-channel layers: backward 28 -> 23.7 and 36 -> 28 ms). Its
 * blocks are fixed by the shapes (their sums are added in order): of about this many
 * tiles, and at least 2 when the batch has 128 tiles, so that 2 threads share them. */
#define NR_WINO_WGRAD_TILES 256

static _Thread_local wbuf tls_blk;

static int64_t block_tiles(const wino *z) {
  const int64_t nt = NR_WINO_BLOCK_FLOATS / (16 * (z->C + z->K)) / 32 * 32;
  return nt < NR_WINO_MIN_TILES ? NR_WINO_MIN_TILES : nt;
}

/* This thread's block buffer, for blocks of up to `per` tiles; NULL when out of memory. */
static float *block_buf(const wino *z, int64_t per) {
  return wbuf_get(&tls_blk, 16 * (z->C + z->K) * per);
}

static bool block_part(void *ctx, int p, int parts) {
  const wino *z = ctx;
  const int64_t T = z->num * z->th * z->tw, per = block_tiles(z);
  const int64_t r0 = T * p / parts, r1 = T * (p + 1) / parts, nbl = (r1 - r0 + per - 1) / per;
  float *buf = block_buf(z, per);
  if (!buf) return false;
  const int64_t Cg = z->C / z->G, Kg = z->K / z->G;
  for (int64_t blk = 0; blk < nbl; blk++) {
    const int64_t t0 = r0 + (r1 - r0) * blk / nbl, t1 = r0 + (r1 - r0) * (blk + 1) / nbl;
    const int64_t nt = t1 - t0;
    float *V = buf, *M = buf + 16 * z->C * nt;
    input_tiles(z, t0, t1, V);
    for (int xi = 0; xi < 16; xi++)
      for (int64_t g = 0; g < z->G; g++) {
        const float *v = V + (xi * z->C + g * Cg) * nt;
        float *m = M + (xi * z->K + g * Kg) * nt;
        if (!z->Up || !nr__gemm_a_packed(Kg, nt, Cg, 1.0f, z->Up + (xi * z->G + g) * z->upk, v,
                                         0.0f, m))
          nr_gemm(false, false, Kg, nt, Cg, 1.0f, z->U + (xi * z->K + g * Kg) * Cg, v, 0.0f, m);
      }
    output_tiles(z, t0, t1, M);
  }
  return true;
}

/* out (num, K, OH, OW) = in (num, C, H, W) ⊛ the kernel z->w. */
static nr_status run(wino *z, nr_error *err) {
  const int64_t Cg = z->C / z->G;
  const int64_t ukern = 16 * z->K * Cg;
  if (!(z->U = wbuf_get(&tls_kernel, ukern)))
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory for a %lld-float Winograd kernel",
                      (long long)ukern);
  nr__parallel_for(z->K, nr__parallel_grain(16 * Cg), kernel_range, z);
  z->upk = nr__gemm_packed_a_floats(z->K / z->G, Cg);
  z->Up = NULL;
  if (z->upk) {
    if (!(z->Up = wbuf_get(&tls_kpack, 16 * z->G * z->upk)))
      return nr_err_set(err, NR_ERR_NOMEM, "out of memory for a %lld-float packed Winograd kernel",
                        (long long)(16 * z->G * z->upk));
    nr__parallel_for(16 * z->G, nr__parallel_grain(z->upk), kernel_pack_range, z);
  }
  /* a part per block, a multiple of the threads when there are few (of 32 tiles or more) */
  const int64_t T = z->num * z->th * z->tw, per = block_tiles(z);
  const int64_t threads = nr__parallel_threads();
  int64_t parts = (T + per - 1) / per;
  if (parts < 4 * threads) parts = (parts + threads - 1) / threads * threads;
  if (parts > T / 32) parts = T / 32 > 1 ? T / 32 : 1;
  if (parts > NR_PARALLEL_MAX_PARTS) parts = NR_PARALLEL_MAX_PARTS;
  if (!nr__parallel_run(block_part, z, (int)parts))
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory for a Winograd convolution block");
  return NR_OK;
}

/* ---- the weight gradient ----------------------------------------------------------------
 *
 * With M = U ⊙ V per tile and Y = Aᵀ M A, the gradient against U is Σ over tiles of
 * (A dY Aᵀ) ⊙ V, for each ξ a product (K × tiles) × (tiles × C/G), and the kernel's is
 * Gᵀ dU G. The tiles' blocks are summed in NR_WINO_WGRAD_CHUNKS chunks fixed by the shapes
 * (at most NR_WINO_WGRAD_FLOATS floats of chunk sums), then the chunks in order: the bits do
 * not depend on the thread count. */
#define NR_WINO_WGRAD_CHUNKS 8
#define NR_WINO_WGRAD_FLOATS ((int64_t)1 << 23)

static _Thread_local wbuf tls_dU;

static int64_t wgrad_chunks(const wino *z, int64_t nb) {
  const int64_t ukern = 16 * z->K * (z->C / z->G);
  int64_t c = nb < NR_WINO_WGRAD_CHUNKS ? nb : NR_WINO_WGRAD_CHUNKS;
  while (c > 1 && c * ukern > NR_WINO_WGRAD_FLOATS) c--;
  return c;
}

/* The output gradient of tiles [t0, t1) into Z[ξ][k][t − t0] = (A dy Aᵀ)[ξ] for each tile's
 * 2×2 block dy of z->dy (0 outside the plane). */
static void grad_tiles(const wino *z, int64_t t0, int64_t t1, float *Z) {
  const int64_t tw = z->tw, nt = t1 - t0, step = z->K * nt, OW = z->OW;
  float rows[2][NR_WINO_MAX_ROW], a[4][NR_WINO_MAX_ROW];
  for (int64_t k = 0; k < z->K; k++)
    for (int64_t r = t0 / tw; r * tw < t1; r++) {
      int64_t n, ty, xa, xb;
      tile_row(z, r, t0, t1, &n, &ty, &xa, &xb);
      const int64_t len = 2 * (xb - xa), cols = (2 * xb < OW ? 2 * xb : OW) - 2 * xa;
      const float *src = z->dy + (n * z->K + k) * z->OH * OW + 2 * ty * OW + 2 * xa;
      for (int i = 0; i < 2; i++) {
        if (2 * ty + i < z->OH) {
          memcpy(rows[i], src + i * OW, (size_t)cols * sizeof(float));
          memset(rows[i] + cols, 0, (size_t)(len - cols) * sizeof(float));
        } else {
          memset(rows[i], 0, (size_t)len * sizeof(float));
        }
      }
      for (int64_t x = 0; x < len; x++) { /* A dy, along the columns */
        a[0][x] = rows[0][x];
        a[1][x] = rows[0][x] + rows[1][x];
        a[2][x] = rows[0][x] - rows[1][x];
        a[3][x] = -rows[1][x];
      }
      float *d = Z + k * nt + r * tw + xa - t0;
      for (int i = 0; i < 4; i++) { /* (A dy) Aᵀ, along the rows */
        const float *ai = a[i];
        float *d0 = d + (i * 4) * step, *d1 = d0 + step, *d2 = d1 + step, *d3 = d2 + step;
        for (int64_t x = 0; x < xb - xa; x++) {
          const float u = ai[2 * x], v = ai[2 * x + 1];
          d0[x] = u;
          d1[x] = u + v;
          d2[x] = u - v;
          d3[x] = -v;
        }
      }
    }
}

/* The weight gradient's blocks: their number (fixed by the shapes). */
static int64_t wgrad_blocks(const wino *z) {
  const int64_t T = z->num * z->th * z->tw;
  const int64_t nb = (T + NR_WINO_WGRAD_TILES - 1) / NR_WINO_WGRAD_TILES;
  return nb < 2 && T >= 128 ? 2 : nb;
}

/* Chunk p of the blocks: its sum of (A dY Aᵀ) ⊙ V into z->dU's chunk p. */
static bool wgrad_part(void *ctx, int p, int parts) {
  const wino *z = ctx;
  const int64_t T = z->num * z->th * z->tw, nb = wgrad_blocks(z);
  const int64_t b0 = nb * p / parts, b1 = nb * (p + 1) / parts;
  const int64_t Cg = z->C / z->G, Kg = z->K / z->G, ukern = 16 * z->K * Cg;
  float *buf = block_buf(z, (T + nb - 1) / nb);
  if (!buf) return false;
  float *dU = z->dU + p * ukern;
  memset(dU, 0, (size_t)ukern * sizeof *dU);
  for (int64_t blk = b0; blk < b1; blk++) {
    const int64_t t0 = T * blk / nb, t1 = T * (blk + 1) / nb, nt = t1 - t0;
    float *V = buf, *Z = buf + 16 * z->C * nt;
    input_tiles(z, t0, t1, V);
    grad_tiles(z, t0, t1, Z);
    for (int xi = 0; xi < 16; xi++)
      for (int64_t g = 0; g < z->G; g++)
        nr_gemm(false, true, Kg, Cg, nt, 1.0f, Z + (xi * z->K + g * Kg) * nt,
                V + (xi * z->C + g * Cg) * nt, 1.0f, dU + (xi * z->K + g * Kg) * Cg);
  }
  return true;
}

typedef struct wgrad_sum_job {
  const wino *z;
  int chunks;
  float *w_diff;
} wgrad_sum_job;

/* Rows [r0, r1) of the kernel's gradient: w_diff += Gᵀ (Σ of the chunks, in order) G. */
static void wgrad_sum_range(void *ctx, int64_t r0, int64_t r1) {
  const wgrad_sum_job *j = ctx;
  const wino *z = j->z;
  const int64_t Cg = z->C / z->G, step = z->K * Cg, ukern = 16 * step;
  float x[16][NR_WINO_MAX_CG], t[3][4][NR_WINO_MAX_CG];
  for (int64_t r = r0; r < r1; r++) {
    for (int xi = 0; xi < 16; xi++) {
      const float *s = z->dU + xi * step + r * Cg;
      for (int64_t q = 0; q < Cg; q++) x[xi][q] = s[q];
      for (int c = 1; c < j->chunks; c++)
        for (int64_t q = 0; q < Cg; q++) x[xi][q] += s[c * ukern + q];
    }
    for (int jj = 0; jj < 4; jj++) /* Gᵀ X */
      for (int64_t q = 0; q < Cg; q++) {
        const float x0 = x[jj][q], x1 = x[4 + jj][q], x2 = x[8 + jj][q], x3 = x[12 + jj][q];
        t[0][jj][q] = x0 + 0.5f * (x1 + x2);
        t[1][jj][q] = 0.5f * (x1 - x2);
        t[2][jj][q] = 0.5f * (x1 + x2) + x3;
      }
    float *wd = j->w_diff + r * Cg * 9;
    for (int i = 0; i < 3; i++) /* (Gᵀ X) G */
      for (int64_t q = 0; q < Cg; q++) {
        const float t0 = t[i][0][q], t1 = t[i][1][q], t2 = t[i][2][q], t3 = t[i][3][q];
        wd[q * 9 + i * 3 + 0] += t0 + 0.5f * (t1 + t2);
        wd[q * 9 + i * 3 + 1] += 0.5f * (t1 - t2);
        wd[q * 9 + i * 3 + 2] += 0.5f * (t1 + t2) + t3;
      }
  }
}

nr_status nr__winograd_weight_grad(const nr_conv *cv, const float *im, const float *out_diff,
                                   float *w_diff, nr_error *err) {
  wino z = wino_of(cv, false);
  z.in = im;
  z.dy = out_diff;
  const int64_t chunks = wgrad_chunks(&z, wgrad_blocks(&z)), ukern = 16 * z.K * (z.C / z.G);
  if (!(z.dU = wbuf_get(&tls_dU, chunks * ukern)))
    return nr_err_set(err, NR_ERR_NOMEM,
                      "out of memory for a Winograd weight gradient's %lld chunk sums",
                      (long long)chunks);
  if (!nr__parallel_run(wgrad_part, &z, (int)chunks))
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory for a Winograd convolution block");
  wgrad_sum_job j = {&z, (int)chunks, w_diff};
  nr__parallel_for(z.K, nr__parallel_grain(16 * chunks * (z.C / z.G)), wgrad_sum_range, &j);
  return NR_OK;
}

nr_status nr__winograd_forward(const nr_conv *cv, const float *im, const float *w, float *out,
                               nr_error *err) {
  wino z = wino_of(cv, false);
  z.in = im, z.out = out, z.w = w;
  return run(&z, err);
}

nr_status nr__winograd_backward_data(const nr_conv *cv, const float *out_diff, const float *w,
                                     float *im_diff, nr_error *err) {
  wino z = wino_of(cv, true);
  z.in = out_diff, z.out = im_diff, z.w = w, z.flip = true;
  return run(&z, err);
}

void nr__winograd_release(void) {
  wbuf_free(&tls_kernel);
  wbuf_free(&tls_kpack);
  wbuf_free(&tls_blk);
  wbuf_free(&tls_dU);
}
