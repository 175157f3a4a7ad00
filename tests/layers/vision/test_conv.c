/* Convolution and Deconvolution: values against naive loops (groups, dilation, stride,
 * pad, 1×1 fast path, N-D path, chunked batches), error messages, gradient checks. */
#include "im2col.h"
#include "layer_fixture.h"
#include "nr_math.h"
#include "winograd.h"

/* Direct 2-D convolution, as in the definition. w is (M, C/G, kh, kw). */
static void naive_conv(const float *x, int N, int C, int H, int W, const float *w,
                       const float *bias, int M, int G, int kh, int kw, int ph, int pw, int sh,
                       int sw, int dh, int dw, float *y, int OH, int OW) {
  int cg = C / G, mg = M / G;
  for (int n = 0; n < N; n++)
    for (int m = 0; m < M; m++)
      for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
          int g = m / mg;
          double s = bias ? bias[m] : 0;
          for (int c = 0; c < cg; c++)
            for (int i = 0; i < kh; i++)
              for (int j = 0; j < kw; j++) {
                int ih = oh * sh - ph + i * dh, iw = ow * sw - pw + j * dw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += (double)x[((n * C + g * cg + c) * H + ih) * W + iw] *
                     w[((m * cg + c) * kh + i) * kw + j];
              }
          y[((n * M + m) * OH + oh) * OW + ow] = (float)s;
        }
}

/* Direct transposed convolution: every input pixel scatters its kernel. w is (C, M/G, kh, kw). */
static void naive_deconv(const float *x, int N, int C, int H, int W, const float *w,
                         const float *bias, int M, int G, int kh, int kw, int ph, int pw,
                         int sh, int sw, int dh, int dw, float *y, int OH, int OW) {
  int cg = C / G, mg = M / G;
  for (int i = 0; i < N * M * OH * OW; i++) y[i] = 0;
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++)
      for (int h = 0; h < H; h++)
        for (int ww = 0; ww < W; ww++) {
          int g = c / cg;
          float v = x[((n * C + c) * H + h) * W + ww];
          for (int o = 0; o < mg; o++)
            for (int i = 0; i < kh; i++)
              for (int j = 0; j < kw; j++) {
                int oh = h * sh - ph + i * dh, ow = ww * sw - pw + j * dw;
                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                y[((n * M + g * mg + o) * OH + oh) * OW + ow] +=
                    v * w[((c * mg + o) * kh + i) * kw + j];
              }
        }
  if (bias)
    for (int n = 0; n < N; n++)
      for (int m = 0; m < M; m++)
        for (int p = 0; p < OH * OW; p++) y[(n * M + m) * OH * OW + p] += bias[m];
}

/* The brief's hand case: 3x3 kernel on a 4x4 input, no pad, stride 1: 2x2 output. */
static void test_conv_3x3_on_4x4(void) {
  lf *f = lf_new("name: 'c' type: 'Convolution' convolution_param { num_output: 1 "
                 "kernel_size: 3 bias_filler { type: 'constant' value: 0.5 } }",
                 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 1, 4, 4);
  for (int i = 0; i < 16; i++) f->bottom[0]->data[i] = (float)i;
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->l->nblobs, 2);
  CHECK_INT_EQ(f->top[0]->num_axes, 4);
  CHECK_INT_EQ(f->top[0]->shape[2], 2);
  CHECK_INT_EQ(f->top[0]->shape[3], 2);
  CHECK_NEAR(f->l->blobs[1]->data[0], 0.5, 0);
  for (int i = 0; i < 9; i++) f->l->blobs[0]->data[i] = (float)(i % 3 == 1 ? 1 : 0) + (i == 4);
  /* kernel [[0,1,0],[0,2,0],[0,1,0]]: out(r,c) = x(r,c+1) + 2 x(r+1,c+1) + x(r+2,c+1) */
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  for (int r = 0; r < 2; r++)
    for (int c = 0; c < 2; c++) {
      float want =
          (float)((r * 4 + c + 1) + 2 * ((r + 1) * 4 + c + 1) + ((r + 2) * 4 + c + 1)) + 0.5f;
      CHECK_NEAR(f->top[0]->data[r * 2 + c], want, 1e-5);
    }
  lf_free(f);
}

typedef struct conv_case {
  int N, C, H, W, M, G, kh, kw, ph, pw, sh, sw, dh, dw;
  bool bias, force_nd;
} conv_case;

/* `wino`: whether the case must go through Winograd (winograd.h). */
static void run_conv_case(const conv_case *k, bool deconv, bool wino) {
  char proto[512];
  snprintf(proto, sizeof proto,
           "name: 'c' type: '%s' convolution_param { num_output: %d group: %d kernel_h: %d "
           "kernel_w: %d pad_h: %d pad_w: %d stride_h: %d stride_w: %d bias_term: %s "
           "force_nd_im2col: %s weight_filler { type: 'gaussian' std: 1 } bias_filler { type: "
           "'gaussian' std: 1 } }",
           deconv ? "Deconvolution" : "Convolution", k->M, k->G, k->kh, k->kw, k->ph, k->pw,
           k->sh, k->sw, k->bias ? "true" : "false", k->force_nd ? "true" : "false");
  /* dilation only through the repeated form */
  char *brace = strstr(proto, "num_output");
  char with_dil[600];
  snprintf(with_dil, sizeof with_dil, "%.*sdilation: %d dilation: %d %s", (int)(brace - proto),
           proto, k->dh, k->dw, brace);
  lf *f = lf_new(with_dil, 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], k->N, k->C, k->H, k->W);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 7);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  int OH, OW;
  if (!deconv) {
    OH = (k->H + 2 * k->ph - (k->dh * (k->kh - 1) + 1)) / k->sh + 1;
    OW = (k->W + 2 * k->pw - (k->dw * (k->kw - 1) + 1)) / k->sw + 1;
  } else {
    OH = k->sh * (k->H - 1) + k->dh * (k->kh - 1) + 1 - 2 * k->ph;
    OW = k->sw * (k->W - 1) + k->dw * (k->kw - 1) + 1 - 2 * k->pw;
  }
  CHECK_INT_EQ(f->top[0]->shape[0], k->N);
  CHECK_INT_EQ(f->top[0]->shape[1], k->M);
  CHECK_INT_EQ(f->top[0]->shape[2], OH);
  CHECK_INT_EQ(f->top[0]->shape[3], OW);
  CHECK_INT_EQ(f->l->blobs[0]->shape[0], deconv ? k->C : k->M);
  CHECK_INT_EQ(f->l->blobs[0]->shape[1], deconv ? k->M / k->G : k->C / k->G);
  CHECK_INT_EQ(nr__winograd_applies(f->l->priv), wino);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  float *want = malloc((size_t)f->top[0]->count * sizeof *want);
  const float *bias = k->bias ? f->l->blobs[1]->data : NULL;
  if (deconv)
    naive_deconv(f->bottom[0]->data, k->N, k->C, k->H, k->W, f->l->blobs[0]->data, bias, k->M,
                 k->G, k->kh, k->kw, k->ph, k->pw, k->sh, k->sw, k->dh, k->dw, want, OH, OW);
  else
    naive_conv(f->bottom[0]->data, k->N, k->C, k->H, k->W, f->l->blobs[0]->data, bias, k->M, k->G,
               k->kh, k->kw, k->ph, k->pw, k->sh, k->sw, k->dh, k->dw, want, OH, OW);
  double d = lf_maxdiff(want, f->top[0]->data, f->top[0]->count);
  free(want);
  if (!(d < 1e-4))
    fprintf(stderr, "case N%d C%d %dx%d M%d G%d k%dx%d p%d,%d s%d,%d d%d,%d nd%d\n", k->N, k->C,
            k->H, k->W, k->M, k->G, k->kh, k->kw, k->ph, k->pw, k->sh, k->sw, k->dh, k->dw,
            k->force_nd);
  CHECK(d < 1e-4);
  lf_free(f);
}

static const conv_case cases[] = {
    /* N C  H  W  M  G kh kw ph pw sh sw dh dw bias nd */
    {2, 3, 7, 6, 4, 1, 3, 3, 0, 0, 1, 1, 1, 1, true, false},
    {2, 4, 7, 8, 6, 2, 3, 2, 1, 2, 2, 1, 1, 1, true, false},
    {3, 6, 9, 9, 6, 3, 3, 3, 2, 1, 1, 2, 2, 3, true, false},
    {1, 4, 5, 5, 4, 4, 2, 2, 1, 1, 3, 3, 1, 1, false, false}, /* depthwise */
    {2, 4, 6, 5, 3, 1, 1, 1, 0, 0, 1, 1, 1, 1, true, false},  /* 1x1, batched column path */
    {2, 8, 20, 20, 4, 2, 1, 1, 0, 0, 1, 1, 1, 1, true, false},/* 1x1, direct path (400 px) */
    {2, 3, 6, 6, 2, 1, 1, 1, 1, 0, 2, 1, 1, 1, true, false},  /* 1x1 with pad/stride */
    {2, 4, 7, 6, 4, 2, 3, 2, 1, 0, 2, 1, 2, 1, true, true},   /* N-D path on 2-D data */
    {1, 2, 4, 4, 3, 1, 4, 4, 0, 0, 1, 1, 1, 1, true, false},  /* kernel == input */
};

static void test_conv_vs_naive(void) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    run_conv_case(&cases[i], false, false);
    if (nr_test_case_failed) return;
  }
}

static void test_deconv_vs_naive(void) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    conv_case k = cases[i];
    if (k.C % k.G) continue;
    run_conv_case(&k, true, false);
    if (nr_test_case_failed) return;
  }
}

/* A tiny workspace cap forces several chunks per batch (chunks of 2, 2, 1 images). */
static void test_conv_chunked(void) {
  int64_t saved = nr__conv_workspace_floats;
  nr__conv_workspace_floats = 2 * (3 * 9 + 4) * 5 * 5;
  conv_case k = {5, 3, 7, 7, 4, 1, 3, 3, 0, 0, 1, 1, 1, 1, true, false};
  run_conv_case(&k, false, false);
  if (!nr_test_case_failed) run_conv_case(&k, true, false);
  nr__conv_workspace_floats = saved;
}

static void test_conv_errors(void) {
  lf *f = lf_new("name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_size: 5 }",
                 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 1, 3, 3);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "kernel 5x5 larger than padded input 3x3");
  lf_free(f);

  f = lf_new("name: 'c' type: 'Convolution' convolution_param { kernel_size: 3 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 1, 5, 5);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "num_output");
  lf_free(f);

  f = lf_new("name: 'c' type: 'Convolution'", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 1, 5, 5);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "num_output");
  lf_free(f);

  f = lf_new("name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_size: 3 "
             "kernel_size: 3 kernel_size: 3 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 1, 5, 5);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "kernel must be given once, or once per spatial axis (2)");
  lf_free(f);

  f = lf_new("name: 'c' type: 'Convolution' convolution_param { num_output: 3 kernel_size: 1 "
             "group: 2 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 4, 5, 5);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "num_output 3 is not a multiple of group 2");
  lf_free(f);

  /* A later reshape with a wrong bottom. */
  f = lf_new("name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_size: 3 }",
             1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 5, 5);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  LF_SHAPE(f->bottom[0], 3, 5, 5);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "bottom[0] has 3 axes, expected 4");
  LF_SHAPE(f->bottom[0], 2, 4, 5, 5);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "bottom[0] has 4 channels, expected 3");
  /* A bigger batch reshapes fine. */
  LF_SHAPE(f->bottom[0], 7, 3, 6, 5);
  CHECK_OK(f->l->type->reshape(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[0], 7);
  CHECK_INT_EQ(f->top[0]->shape[2], 4);
  lf_free(f);
}

static void test_conv_gradient(void) {
  const char *protos[] = {
      "name: 'c' type: 'Convolution' convolution_param { num_output: 4 kernel_size: 3 "
      "stride: 2 pad: 1 group: 2 weight_filler { type: 'gaussian' std: 0.5 } "
      "bias_filler { type: 'gaussian' std: 0.5 } }",
      "name: 'c' type: 'Convolution' convolution_param { num_output: 3 kernel_h: 2 kernel_w: 3 "
      "dilation: 2 pad_w: 2 weight_filler { type: 'gaussian' std: 0.5 } }",
      "name: 'c' type: 'Convolution' convolution_param { num_output: 3 kernel_size: 1 "
      "weight_filler { type: 'gaussian' std: 0.5 } }",
      "name: 'c' type: 'Deconvolution' convolution_param { num_output: 4 kernel_size: 3 "
      "stride: 2 pad: 1 group: 2 weight_filler { type: 'gaussian' std: 0.5 } "
      "bias_filler { type: 'gaussian' std: 0.5 } }",
  };
  for (size_t i = 0; i < sizeof protos / sizeof protos[0]; i++) {
    lf *f = lf_new(protos[i], 2, 2); /* two bottom/top pairs sharing the weights */
    CHECK(f);
    LF_SHAPE(f->bottom[0], 2, 4, 5, 5);
    LF_SHAPE(f->bottom[1], 2, 4, 5, 5);
    nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 11);
    nr_gradcheck_fill_gaussian(f->bottom[1], 0, 1, 12);
    CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
    LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_ALL);
    lf_free(f);
  }
}

static void test_conv_nd_gradient(void) {
  /* 3 spatial axes (N-D im2col), and 1 spatial axis. */
  lf *f = lf_new(
      "name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_size: 2 "
      "kernel_size: 3 kernel_size: 2 stride: 2 stride: 1 stride: 1 pad: 1 pad: 0 pad: 1 "
      "weight_filler { type: 'gaussian' std: 0.5 } bias_filler { type: 'gaussian' std: 1 } }",
      1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 2, 3, 4, 3);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 13);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->num_axes, 5);
  CHECK_INT_EQ(f->top[0]->shape[2], 2); /* (3+2-2)/2+1 */
  CHECK_INT_EQ(f->top[0]->shape[3], 2);
  CHECK_INT_EQ(f->top[0]->shape[4], 4);
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_ALL);
  lf_free(f);

  f = lf_new("name: 'c' type: 'Deconvolution' convolution_param { num_output: 2 kernel_size: 3 "
             "stride: 2 weight_filler { type: 'gaussian' std: 0.5 } }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 14);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[2], 9);
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_ALL);
  lf_free(f);
}

/* The forward and the weight gradient of a 2-D convolution write its columns straight into
 * the GEMM's panels (nr__conv_panels); without them the plain column matrix is built and
 * packed. Both must give the same bits, with either kernel set, 1 or 2 threads, output
 * planes in place (a multiple of 32 pixels) or through the workspace, whole batches or
 * chunks of images, several K slices, groups, padding, stride and dilation. */
static void conv_run_internal(const conv_case *k, bool panels, const float *x, const float *w,
                              const float *dy, float *y, float *dw) {
  nr_conv cv = {0};
  cv.nsp = 2;
  cv.axis = 1;
  cv.kernel[0] = k->kh, cv.kernel[1] = k->kw, cv.pad[0] = k->ph, cv.pad[1] = k->pw;
  cv.stride[0] = k->sh, cv.stride[1] = k->sw, cv.dil[0] = k->dh, cv.dil[1] = k->dw;
  cv.group = k->G, cv.num_output = k->M, cv.force_nd = k->force_nd, cv.id = 999999 + panels;
  nr__conv_panels = panels;
  cv.num = k->N, cv.in_ch = k->C, cv.out_ch = k->M, cv.im_sp[0] = k->H, cv.im_sp[1] = k->W;
  for (int a = 0; a < 2; a++)
    cv.col_sp[a] = (cv.im_sp[a] + 2 * cv.pad[a] - (cv.dil[a] * (cv.kernel[a] - 1) + 1)) /
                       cv.stride[a] + 1;
  nr_error err = {0};
  CHECK_OK(nr__conv_prepare(&cv, &err), &err);
  CHECK_OK(nr__conv_forward(&cv, x, w, y, &err), &err);
  CHECK_OK(nr__conv_weight_grad(&cv, x, dy, dw, &err), &err);
  nr__conv_panels = true;
}

static void test_conv_panels_same_bits(void) {
  static const conv_case more[] = {
      /* N C  H  W  M  G kh kw ph pw sh sw dh dw */
      {4, 20, 12, 12, 50, 1, 5, 5, 0, 0, 1, 1, 1, 1, false, false}, /* LeNet conv2: 64 px */
      {3, 4, 11, 11, 6, 2, 3, 3, 1, 1, 1, 1, 1, 1, false, false},   /* 121 px: workspace */
      {2, 3, 27, 27, 8, 1, 11, 11, 0, 0, 4, 4, 1, 1, false, false}, /* conv1-style stride 4 */
      {2, 6, 13, 13, 40, 2, 3, 3, 1, 1, 1, 1, 1, 1, false, false},  /* K > 256: two slices */
  };
  conv_case all[sizeof cases / sizeof cases[0] + sizeof more / sizeof more[0]];
  size_t n = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) all[n++] = cases[i];
  for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) all[n++] = more[i];
  const int saved_threads = openblas_get_num_threads();
  const int64_t saved_ws = nr__conv_workspace_floats;
  static const char *const isas[] = {"avx512", "avx2"};
  for (int isa = 0; isa < 2; isa++) {
    if (!nr__gemm_use(isas[isa])) continue;
    for (int threads = 1; threads <= 2; threads++) {
      openblas_set_num_threads(threads);
      for (size_t i = 0; i < n; i++) {
        const conv_case *k = &all[i];
        const int OH = (k->H + 2 * k->ph - (k->dh * (k->kh - 1) + 1)) / k->sh + 1;
        const int OW = (k->W + 2 * k->pw - (k->dw * (k->kw - 1) + 1)) / k->sw + 1;
        const size_t nx = (size_t)k->N * k->C * k->H * k->W, ny = (size_t)k->N * k->M * OH * OW;
        const size_t nw = (size_t)k->M * (k->C / k->G) * k->kh * k->kw;
        float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w),
              *dy = malloc(ny * sizeof *dy);
        float *y[2], *dw[2];
        for (size_t j = 0; j < nx; j++) x[j] = (float)((j * 7919 % 1000) / 500.0 - 1);
        for (size_t j = 0; j < nw; j++) w[j] = (float)((j * 104729 % 997) / 498.0 - 1);
        for (size_t j = 0; j < ny; j++) dy[j] = (float)((j * 3571 % 991) / 495.0 - 1);
        /* every other case in chunks of one image */
        nr__conv_workspace_floats = i % 2 ? 1 : saved_ws;
        for (int nd = 0; nd < 2; nd++) {
          y[nd] = malloc(ny * sizeof *y[nd]);
          dw[nd] = malloc(nw * sizeof *dw[nd]);
          for (size_t j = 0; j < nw; j++) dw[nd][j] = 0.25f; /* accumulated onto */
          conv_run_internal(k, !nd, x, w, dy, y[nd], dw[nd]);
        }
        if (memcmp(y[0], y[1], ny * sizeof *y[0]) || memcmp(dw[0], dw[1], nw * sizeof *dw[0]))
          fprintf(stderr, "case %zu (%s, %d threads) differs\n", i, isas[isa], threads);
        CHECK(memcmp(y[0], y[1], ny * sizeof *y[0]) == 0);
        CHECK(memcmp(dw[0], dw[1], nw * sizeof *dw[0]) == 0);
        free(x), free(w), free(dy);
        for (int nd = 0; nd < 2; nd++) free(y[nd]), free(dw[nd]);
      }
    }
  }
  nr__conv_workspace_floats = saved_ws;
  openblas_set_num_threads(saved_threads);
  nr__gemm_use("auto");
}

/* 3×3 stride-1 convolutions with at least 16 channels a group on each side go through
 * Winograd's F(2×2, 3×3) (winograd.h). Against the definition: the forward, and
 * Deconvolution's forward (the engine's data gradient), with padding 0, 1 and 2 (also
 * unequal), odd and even sizes, groups, and a batch of several tile blocks whose edges
 * cut tile rows. */
static const conv_case wino_cases[] = {
    /* N C  H  W  M  G kh kw ph pw sh sw dh dw bias nd */
    {3, 16, 9, 10, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, true, false},
    /* 630 tiles: the parts and the weight gradient's blocks cut tile rows */
    {3, 16, 30, 27, 32, 1, 3, 3, 0, 2, 1, 1, 1, 1, true, false},
    {5, 32, 7, 8, 32, 2, 3, 3, 2, 0, 1, 1, 1, 1, false, false},  /* 16 a group */
    {16, 20, 4, 3, 17, 1, 3, 3, 1, 1, 1, 1, 1, 1, true, false},  /* 2x2 tiles over 4x3 */
};

static void test_conv_winograd_vs_naive(void) {
  for (size_t i = 0; i < sizeof wino_cases / sizeof wino_cases[0]; i++) {
    run_conv_case(&wino_cases[i], false, true);
    if (!nr_test_case_failed) run_conv_case(&wino_cases[i], true, true);
    if (nr_test_case_failed) return;
  }
  /* and the column path for the same shapes when Winograd is off, the batch too small or
   * the group too thin */
  nr__conv_winograd = false;
  run_conv_case(&wino_cases[0], false, false);
  nr__conv_winograd = true;
  conv_case small = wino_cases[0];
  small.N = 2; /* 50 tiles in the batch: fewer than Winograd takes */
  run_conv_case(&small, false, false);
  conv_case thin = wino_cases[2];
  thin.G = 4; /* 8 channels a group */
  run_conv_case(&thin, false, false);
}

/* The gradient checks run on small layers (Winograd lowered to 2 channels a group, so that
 * they stay cheap under valgrind): the layers' shapes matter to the transforms only through
 * the padding, the sizes and the groups. */
static void test_conv_winograd_gradient(void) {
  const char *protos[] = {
      "name: 'c' type: 'Convolution' convolution_param { num_output: 4 kernel_size: 3 pad: 1 "
      "weight_filler { type: 'gaussian' std: 0.1 } bias_filler { type: 'gaussian' std: 0.5 } }",
      "name: 'c' type: 'Convolution' convolution_param { num_output: 4 kernel_size: 3 "
      "pad_h: 0 pad_w: 2 group: 2 weight_filler { type: 'gaussian' std: 0.1 } }",
      "name: 'c' type: 'Deconvolution' convolution_param { num_output: 3 kernel_size: 3 "
      "pad: 1 weight_filler { type: 'gaussian' std: 0.1 } }",
  };
  nr__winograd_min_channels = 2;
  for (size_t i = 0; i < sizeof protos / sizeof protos[0]; i++) {
    lf *f = lf_new(protos[i], 1, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 2, 4, 12, 11); /* at least 64 tiles */
    nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 21);
    CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
    CHECK(nr__winograd_applies(f->l->priv));
    LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_ALL);
    lf_free(f);
  }
  nr__winograd_min_channels = 16;
}

/* The forward, the data gradient and the weight gradient give the same bits on 1 and 2
 * threads (the tile blocks and the weight gradient's chunks depend on the shapes only),
 * and agree with the column path's. */
static void test_conv_winograd_threads(void) {
  const int saved_threads = openblas_get_num_threads();
  for (size_t i = 0; i < sizeof wino_cases / sizeof wino_cases[0]; i++) {
    const conv_case *k = &wino_cases[i];
    nr_conv cv = {0};
    cv.nsp = 2, cv.axis = 1, cv.group = k->G, cv.num_output = k->M;
    cv.kernel[0] = cv.kernel[1] = 3, cv.pad[0] = k->ph, cv.pad[1] = k->pw;
    cv.stride[0] = cv.stride[1] = cv.dil[0] = cv.dil[1] = 1;
    cv.num = k->N, cv.in_ch = k->C, cv.out_ch = k->M, cv.im_sp[0] = k->H, cv.im_sp[1] = k->W;
    cv.col_sp[0] = k->H + 2 * k->ph - 2, cv.col_sp[1] = k->W + 2 * k->pw - 2;
    nr_error err = {0};
    CHECK_OK(nr__conv_prepare(&cv, &err), &err);
    CHECK(nr__winograd_applies(&cv));
    const size_t nx = (size_t)k->N * k->C * k->H * k->W,
                 ny = (size_t)k->N * k->M * cv.col_sp[0] * cv.col_sp[1],
                 nw = (size_t)k->M * (k->C / k->G) * 9;
    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *dy = malloc(ny * sizeof *dy);
    float *y[3], *dx[3], *dw[3];
    for (size_t j = 0; j < nx; j++) x[j] = (float)((j * 7919 % 1000) / 500.0 - 1);
    for (size_t j = 0; j < nw; j++) w[j] = (float)((j * 104729 % 997) / 498.0 - 1);
    for (size_t j = 0; j < ny; j++) dy[j] = (float)((j * 3571 % 991) / 495.0 - 1);
    for (int r = 0; r < 3; r++) { /* 1 thread, 2 threads, the column path */
      y[r] = malloc(ny * sizeof *y[r]);
      dx[r] = malloc(nx * sizeof *dx[r]);
      dw[r] = malloc(nw * sizeof *dw[r]);
      for (size_t j = 0; j < nw; j++) dw[r][j] = 0.5f; /* accumulated onto */
      openblas_set_num_threads(r == 1 ? 2 : 1);
      nr__conv_winograd = r < 2;
      CHECK_OK(nr__conv_forward(&cv, x, w, y[r], &err), &err);
      CHECK_OK(nr__conv_backward_data(&cv, dy, w, dx[r], &err), &err);
      CHECK_OK(nr__conv_weight_grad(&cv, x, dy, dw[r], &err), &err);
    }
    nr__conv_winograd = true;
    CHECK(memcmp(y[0], y[1], ny * sizeof *y[0]) == 0);
    CHECK(memcmp(dx[0], dx[1], nx * sizeof *dx[0]) == 0);
    CHECK(lf_maxdiff(y[0], y[2], (int64_t)ny) < 1e-4);
    CHECK(memcmp(dw[0], dw[1], nw * sizeof *dw[0]) == 0);
    CHECK(lf_maxdiff(dx[0], dx[2], (int64_t)nx) < 1e-4);
    /* a sum over every output pixel of the batch: compared relative to its size */
    double big = 1;
    for (size_t j = 0; j < nw; j++) big = fabs(dw[2][j]) > big ? fabs(dw[2][j]) : big;
    CHECK(lf_maxdiff(dw[0], dw[2], (int64_t)nw) < 1e-5 * big);
    free(x), free(w), free(dy);
    for (int r = 0; r < 3; r++) free(y[r]), free(dx[r]), free(dw[r]);
  }
  openblas_set_num_threads(saved_threads);
}

int main(void) {
  NR_RUN(test_conv_3x3_on_4x4);
  NR_RUN(test_conv_vs_naive);
  NR_RUN(test_deconv_vs_naive);
  NR_RUN(test_conv_chunked);
  NR_RUN(test_conv_panels_same_bits);
  NR_RUN(test_conv_errors);
  NR_RUN(test_conv_gradient);
  NR_RUN(test_conv_nd_gradient);
  NR_RUN(test_conv_winograd_vs_naive);
  NR_RUN(test_conv_winograd_gradient);
  NR_RUN(test_conv_winograd_threads);
  return NR_TEST_EXIT();
}
