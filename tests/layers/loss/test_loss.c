/* Loss layers: SoftmaxWithLoss, EuclideanLoss, SigmoidCrossEntropyLoss, MultinomialLogisticLoss,
 * InfogainLoss, HingeLoss, ContrastiveLoss, and Accuracy:
 * values against direct formulas, normalization modes, ignore_label, errors, gradient checks. */
#include <unistd.h>

#include "binary.h"
#include "layer_fixture.h"

static lf *loss_layer(const char *proto, int nt, int64_t n, int64_t c, int64_t s) {
  lf *f = lf_new(proto, 2, nt);
  if (!f) return NULL;
  if (s > 0) {
    LF_SHAPE(f->bottom[0], n, c, s);
    LF_SHAPE(f->bottom[1], n, 1, s);
  } else {
    LF_SHAPE(f->bottom[0], n, c);
    LF_SHAPE(f->bottom[1], n);
  }
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 34);
  for (int64_t i = 0; i < f->bottom[1]->count; i++) f->bottom[1]->data[i] = (float)((i * 7) % c);
  return f;
}

static double swl_ref(const lf *f, int64_t N, int64_t C, int64_t S, int ignore, int64_t *valid) {
  double loss = 0;
  *valid = 0;
  for (int64_t n = 0; n < N; n++)
    for (int64_t s = 0; s < S; s++) {
      int v = (int)f->bottom[1]->data[n * S + s];
      if (v == ignore) continue;
      double z = 0;
      for (int64_t c = 0; c < C; c++) z += exp(f->bottom[0]->data[(n * C + c) * S + s]);
      loss -= f->bottom[0]->data[(n * C + v) * S + s] - log(z);
      (*valid)++;
    }
  return loss;
}

static void test_softmax_loss(void) {
  /* optional second top: the probabilities */
  lf *f = loss_layer("name: 'l' type: 'SoftmaxWithLoss'", 2, 3, 5, 0);
  CHECK(f);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[1]->count, 15);
  double z = 0;
  for (int c = 0; c < 5; c++) z += exp(f->bottom[0]->data[c]);
  CHECK_NEAR(f->top[1]->data[1], exp(f->bottom[0]->data[1]) / z, 1e-6);
  lf_free(f);

  /* the gradient check uses one top: like Caffe, no gradient flows from the prob top */
  f = loss_layer("name: 'l' type: 'SoftmaxWithLoss'", 1, 3, 5, 0);
  CHECK(f);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->num_axes, 0);
  CHECK(f->l->type->is_loss);
  CHECK(f->l->type->no_force_backward & 2u);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  int64_t valid;
  double ref = swl_ref(f, 3, 5, 1, -1000, &valid);
  CHECK_NEAR(f->top[0]->data[0], ref / 3, 1e-5);
  LF_GRAD(f, 1e-2f, 1e-2f, 0, NR_GC_ALL);
  /* loss weight scales the gradient: top diff 2 doubles it */
  f->top[0]->diff[0] = 1;
  f->l->prop_down[0] = true;
  f->l->prop_down[1] = false;
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->backward(f->l, &f->err), &f->err);
  float g1 = f->bottom[0]->diff[3];
  f->top[0]->diff[0] = 2;
  CHECK_OK(f->l->type->backward(f->l, &f->err), &f->err);
  CHECK_NEAR(f->bottom[0]->diff[3], 2 * g1, 1e-7);
  f->l->prop_down[1] = true;
  CHECK_INT_EQ(f->l->type->backward(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "label");
  lf_free(f);
}

static void test_softmax_loss_spatial_ignore(void) {
  const char *modes[] = {"VALID", "FULL", "BATCH_SIZE", "NONE"};
  for (int m = 0; m < 4; m++) {
    char proto[200];
    snprintf(proto, sizeof proto,
             "name: 'l' type: 'SoftmaxWithLoss' loss_param { ignore_label: 2 normalization: %s }",
             modes[m]);
    lf *f = loss_layer(proto, 1, 2, 4, 3);
    CHECK(f);
    CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
    CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
    int64_t valid;
    double ref = swl_ref(f, 2, 4, 3, 2, &valid);
    CHECK(valid < 6); /* some labels are ignored */
    double norm[4] = {(double)valid, 6, 2, 1};
    CHECK_NEAR(f->top[0]->data[0], ref / norm[m], 1e-5);
    LF_GRAD(f, 1e-2f, 1e-2f, 0, NR_GC_ALL);
    lf_free(f);
  }
  /* legacy normalize: false means BATCH_SIZE */
  lf *f =
      loss_layer("name: 'l' type: 'SoftmaxWithLoss' loss_param { normalize: false }", 1, 2, 4, 3);
  CHECK(f);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  int64_t valid;
  CHECK_NEAR(f->top[0]->data[0], swl_ref(f, 2, 4, 3, -1000, &valid) / 2, 1e-5);
  lf_free(f);
}

static void test_softmax_loss_errors(void) {
  lf *f = lf_new("name: 'l' type: 'SoftmaxWithLoss'", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 64, 10);
  LF_SHAPE(f->bottom[1], 10);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "bottom[1] count 10 does not match bottom[0] outer count 64");
  LF_SHAPE(f->bottom[1], 64);
  CHECK_OK(f->l->type->reshape(f->l, &f->err), &f->err);
  f->bottom[1]->data[5] = 10;
  CHECK_INT_EQ(f->l->type->forward(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "label 10 at position 5 out of range [0, 10)");
  lf_free(f);
}

static void test_euclidean_loss(void) {
  lf *f = lf_new("name: 'e' type: 'EuclideanLoss'", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 4, 3);
  LF_SHAPE(f->bottom[1], 4, 3);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 35);
  nr_gradcheck_fill_gaussian(f->bottom[1], 0, 1, 36);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  double ref = 0;
  for (int i = 0; i < 12; i++) ref += pow(f->bottom[0]->data[i] - f->bottom[1]->data[i], 2);
  CHECK_NEAR(f->top[0]->data[0], ref / 4 / 2, 1e-5);
  LF_GRAD(f, 1e-2f, 1e-2f, -1, NR_GC_ALL);
  LF_SHAPE(f->bottom[1], 4, 4);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "bottom[1] count 16 does not match bottom[0] count 12");
  lf_free(f);
}

static void test_sigmoid_ce_loss(void) {
  lf *f = lf_new("name: 's' type: 'SigmoidCrossEntropyLoss' loss_param { ignore_label: -1 }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 3, 4);
  LF_SHAPE(f->bottom[1], 3, 4);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 3, 37);
  nr_gradcheck_fill_uniform(f->bottom[1], 0, 1, 38);
  f->bottom[1]->data[2] = -1;
  f->bottom[0]->data[5] = 30; /* stable for large logits */
  f->bottom[0]->data[6] = -30;
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  double ref = 0;
  for (int i = 0; i < 12; i++) {
    if (i == 2) continue;
    double x = f->bottom[0]->data[i], t = f->bottom[1]->data[i];
    double p = 1 / (1 + exp(-x));
    ref -= t * log(fmax(p, 1e-300)) + (1 - t) * log(fmax(1 - p, 1e-300));
  }
  CHECK_NEAR(f->top[0]->data[0], ref / 11, 1e-4); /* VALID: 11 counted */
  CHECK(isfinite(f->top[0]->data[0]));
  f->bottom[0]->data[5] = 3;
  f->bottom[0]->data[6] = -3;
  LF_GRAD(f, 1e-2f, 1e-2f, 0, NR_GC_ALL);
  lf_free(f);
}

static void test_accuracy(void) {
  lf *f = lf_new("name: 'a' type: 'Accuracy' accuracy_param { top_k: 2 }", 2, 2);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 4, 3);
  LF_SHAPE(f->bottom[1], 4);
  const float x[12] = {0.1f, 0.5f, 0.4f,  /* label 2: 2nd best -> top-2 hit */
                       0.9f, 0.05f, 0.05f, /* label 1: tie for 2nd counts against -> miss */
                       0.2f, 0.3f, 0.5f,   /* label 0: 3rd -> miss */
                       0.7f, 0.2f, 0.1f};  /* label 0: best -> hit */
  const float lab[4] = {2, 1, 0, 0};
  memcpy(f->bottom[0]->data, x, sizeof x);
  memcpy(f->bottom[1]->data, lab, sizeof lab);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK(!f->l->type->backward);
  CHECK(!f->l->type->is_loss);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  CHECK_NEAR(f->top[0]->data[0], 0.5, 1e-7);
  CHECK_INT_EQ(f->top[1]->count, 3);
  CHECK_NEAR(f->top[1]->data[0], 0.5, 1e-7);
  CHECK_NEAR(f->top[1]->data[1], 0, 1e-7);
  CHECK_NEAR(f->top[1]->data[2], 1, 1e-7);
  lf_free(f);

  f = lf_new("name: 'a' type: 'Accuracy' accuracy_param { ignore_label: 1 }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 4, 3);
  LF_SHAPE(f->bottom[1], 4);
  memcpy(f->bottom[0]->data, x, sizeof x);
  memcpy(f->bottom[1]->data, lab, sizeof lab);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  CHECK_NEAR(f->top[0]->data[0], 1 / 3.0, 1e-6); /* top-1: only the last of 3 counted */
  lf_free(f);

  f = lf_new("name: 'a' type: 'Accuracy' accuracy_param { top_k: 4 }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 4, 3);
  LF_SHAPE(f->bottom[1], 4);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "top_k 4 is larger than the number of classes 3");
  lf_free(f);
}

/* ---- MultinomialLogisticLoss, HingeLoss ---- */

static void test_multinomial_logistic_loss(void) {
  lf *f = lf_new("type: 'MultinomialLogisticLoss'", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 3, 2);
  LF_SHAPE(f->bottom[1], 3, 1, 1, 1);
  lf_set(f->bottom[0], (const float[]){0.25f, 0.75f, 0.5f, 0.5f, 0, 1});
  lf_set(f->bottom[1], (const float[]){1, 0, 0});
  LF_SETUP(f);
  CHECK(f->l->type->is_loss);
  CHECK(f->l->type->no_force_backward & 2u);
  CHECK_INT_EQ(f->top[0]->num_axes, 0);
  LF_FORWARD(f);
  /* p = 0 is clamped at 1e-20 */
  CHECK_NEAR(f->top[0]->data[0], -(log(0.75) + log(0.5) + log(1e-20)) / 3, 1e-4);
  f->top[0]->diff[0] = 3;
  f->l->prop_down[0] = true;
  f->l->prop_down[1] = false;
  f->bottom[1]->data[2] = 1; /* avoid the clamp for the hand gradient */
  LF_BACKWARD(f);
  const float dwant[] = {0, -1 / 0.75f, -2, 0, 0, -1};
  for (int i = 0; i < 6; i++) CHECK_NEAR(f->bottom[0]->diff[i], dwant[i], 1e-6);
  nr_gradcheck_fill_uniform(f->bottom[0], 0.2f, 1, 51);
  LF_GRAD(f, 1e-2f, 2e-2f, 0, NR_GC_ALL);
  f->bottom[1]->data[1] = 2;
  CHECK_INT_EQ(f->l->type->forward(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "label 2 at position 1 out of range [0, 2)");
  f->l->prop_down[1] = true;
  CHECK_INT_EQ(f->l->type->backward(f->l, &f->err), NR_ERR_INPUT);
  LF_SHAPE(f->bottom[1], 3, 2);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "one label per row");
  lf_free(f);
}

static void test_hinge_loss(void) {
  /* row 0 label 1: margins 1+0.5, 1−2 (<0), 1−1 (=0) → L1 1.5, L2 2.25;
   * row 1 label 0: 1−0.2, 1+0.3, 1−3 (<0)          → L1 2.1, L2 0.64 + 1.69 */
  const float x[6] = {0.5f, 2, -1, 0.2f, 0.3f, -3};
  const float lab[2] = {1, 0};
  for (int l2 = 0; l2 < 2; l2++) {
    lf *f =
        lf_new(l2 ? "type: 'HingeLoss' hinge_loss_param { norm: L2 }" : "type: 'HingeLoss'", 2, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 2, 3);
    LF_SHAPE(f->bottom[1], 2);
    lf_set(f->bottom[0], x);
    lf_set(f->bottom[1], lab);
    LF_SETUP(f);
    CHECK(f->l->type->is_loss && (f->l->type->no_force_backward & 2u));
    LF_FORWARD(f);
    CHECK_NEAR(f->top[0]->data[0], l2 ? (2.25 + 0.64 + 1.69) / 2 : (1.5 + 2.1) / 2, 1e-6);
    f->top[0]->diff[0] = 1;
    f->l->prop_down[0] = true;
    f->l->prop_down[1] = false;
    LF_BACKWARD(f);
    const float d1[6] = {0.5f, 0, 0, -0.5f, 0.5f, 0};
    const float d2[6] = {1.5f, 0, 0, -0.8f, 1.3f, 0};
    for (int i = 0; i < 6; i++) CHECK_NEAR(f->bottom[0]->diff[i], l2 ? d2[i] : d1[i], 1e-6);
    LF_SHAPE(f->bottom[0], 4, 5);
    LF_SHAPE(f->bottom[1], 4);
    nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 52);
    lf_set(f->bottom[1], (const float[]){0, 4, 2, 1});
    CHECK_OK(f->l->type->reshape(f->l, &f->err), &f->err);
    LF_GRAD_KINK(f, 1e-2f, 1e-2f, 0.02f, 0, NR_GC_ALL);
    f->bottom[1]->data[0] = -1;
    CHECK_INT_EQ(f->l->type->forward(f->l, &f->err), NR_ERR_INPUT);
    CHECK_CONTAINS(f->err.msg, "label -1 at position 0");
    lf_free(f);
  }
}

/* ---- InfogainLoss ---- */

/* The loss by its formula from a fresh softmax, for (N, C) scores. */
static double infogain_ref(const float *x, const float *lab, const float *h, int N, int C) {
  double loss = 0;
  for (int n = 0; n < N; n++) {
    double z = 0;
    for (int c = 0; c < C; c++) z += exp(x[n * C + c]);
    const int y = (int)lab[n];
    for (int c = 0; c < C; c++) loss -= h[y * C + c] * log(exp(x[n * C + c]) / z);
  }
  return loss;
}

static void test_infogain_loss(void) {
  const float h[9] = {1, 0.5f, 0, 0, 2, 0, 0.25f, 0, 1};
  /* identity H: SoftmaxWithLoss */
  lf *f = lf_new("type: 'InfogainLoss'", 3, 2);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 4, 3);
  LF_SHAPE(f->bottom[1], 4);
  LF_SHAPE(f->bottom[2], 1, 1, 3, 3);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 61);
  lf_set(f->bottom[1], (const float[]){0, 2, 1, 2});
  lf_set(f->bottom[2], (const float[]){1, 0, 0, 0, 1, 0, 0, 0, 1});
  LF_SETUP(f);
  CHECK(f->l->type->is_loss);
  CHECK_INT_EQ(f->l->type->no_force_backward, 6);
  CHECK_SHAPE(f->top[1], 4, 3);
  LF_FORWARD(f);
  double want = infogain_ref(f->bottom[0]->data, f->bottom[1]->data, f->bottom[2]->data, 4, 3);
  CHECK_NEAR(f->top[0]->data[0], want / 4, 1e-5);
  double z = exp(f->bottom[0]->data[0]) + exp(f->bottom[0]->data[1]) + exp(f->bottom[0]->data[2]);
  CHECK_NEAR(f->top[1]->data[1], exp(f->bottom[0]->data[1]) / z, 1e-6);
  /* a general H, with an ignored label and every normalization */
  lf_set(f->bottom[2], h);
  lf_free(f);
  const char *modes[] = {"VALID", "FULL", "BATCH_SIZE", "NONE"};
  for (int m = 0; m < 4; m++) {
    char proto[200];
    snprintf(proto, sizeof proto,
             "type: 'InfogainLoss' loss_param { ignore_label: 1 normalization: %s }", modes[m]);
    f = lf_new(proto, 3, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 4, 3);
    LF_SHAPE(f->bottom[1], 4);
    LF_SHAPE(f->bottom[2], 3, 3);
    nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 62);
    lf_set(f->bottom[1], (const float[]){0, 2, 1, 2});
    lf_set(f->bottom[2], h);
    LF_SETUP(f);
    LF_FORWARD(f);
    /* the ignored row (label 1) left out of the formula */
    float x3[9], l3[3] = {0, 2, 2};
    memcpy(x3, f->bottom[0]->data, 6 * sizeof(float));
    memcpy(x3 + 6, f->bottom[0]->data + 9, 3 * sizeof(float));
    want = infogain_ref(x3, l3, h, 3, 3);
    const double norm[4] = {3, 4, 4, 1};
    CHECK_NEAR(f->top[0]->data[0], want / norm[m], 1e-5);
    LF_GRAD(f, 1e-2f, 1e-2f, 0, NR_GC_ALL);
    lf_free(f);
  }
  /* spatial: axis 1 of (2, 3, 2), labels (2, 2), gradient */
  f = lf_new("type: 'InfogainLoss'", 3, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 2);
  LF_SHAPE(f->bottom[1], 2, 1, 2);
  LF_SHAPE(f->bottom[2], 3, 3);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 63);
  lf_set(f->bottom[1], (const float[]){0, 2, 1, 1});
  lf_set(f->bottom[2], h);
  LF_SETUP(f);
  LF_GRAD(f, 1e-2f, 1e-2f, 0, NR_GC_ALL);
  f->l->prop_down[2] = true;
  CHECK_INT_EQ(f->l->type->backward(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "infogain matrix");
  LF_SHAPE(f->bottom[2], 2, 3);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "has 6 values, expected 3 x 3");
  lf_free(f);

  /* H from infogain_loss_param.source, a binary BlobProto */
  char path[64];
  snprintf(path, sizeof path, "/tmp/nr_infogain_%d.binaryproto", (int)getpid());
  Caffe__BlobProto bp = CAFFE__BLOB_PROTO__INIT;
  Caffe__BlobShape shape = CAFFE__BLOB_SHAPE__INIT;
  int64_t dims[2] = {3, 3};
  shape.n_dim = 2;
  shape.dim = dims;
  bp.shape = &shape;
  bp.n_data = 9;
  bp.data = (float *)h;
  nr_error e;
  CHECK_OK(nr_proto_save_binary(path, &bp.base, &e), &e);
  char proto[200];
  snprintf(proto, sizeof proto, "type: 'InfogainLoss' infogain_loss_param { source: '%s' }", path);
  f = lf_new(proto, 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 4, 3);
  LF_SHAPE(f->bottom[1], 4);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 64);
  lf_set(f->bottom[1], (const float[]){0, 2, 1, 2});
  LF_SETUP(f);
  LF_FORWARD(f);
  want = infogain_ref(f->bottom[0]->data, f->bottom[1]->data, h, 4, 3);
  CHECK_NEAR(f->top[0]->data[0], want / 4, 1e-5);
  LF_GRAD(f, 1e-2f, 1e-2f, 0, NR_GC_ALL);
  LF_SHAPE(f->bottom[0], 4, 4);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "the infogain matrix (source) has 9 values, expected 4 x 4");
  lf_free(f);
  unlink(path);
  f = lf_new("type: 'InfogainLoss'", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 4, 3);
  LF_SHAPE(f->bottom[1], 4);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "infogain matrix is missing");
  lf_free(f);
  f = lf_new("type: 'InfogainLoss' infogain_loss_param { source: '/nonexistent/h.binaryproto' }", 2,
             1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 4, 3);
  LF_SHAPE(f->bottom[1], 4);
  LF_SETUP_FAILS(f, NR_ERR_IO, "/nonexistent/h.binaryproto");
  lf_free(f);
}

/* ---- ContrastiveLoss ---- */

static void test_contrastive_loss(void) {
  /* pairs: (0,0)-(3,4) similar: d² 25; (1,0)-(1,0.5) dissimilar: d 0.5, margin 2 →
   * (2 − 0.5)² = 2.25, legacy max(2 − 0.25, 0) = 1.75; (0,0)-(0,3) dissimilar beyond the
   * margin: 0 */
  const float a[6] = {0, 0, 1, 0, 0, 0}, b[6] = {3, 4, 1, 0.5f, 0, 3}, y[3] = {1, 0, 0};
  for (int legacy = 0; legacy < 2; legacy++) {
    lf *f = lf_new(legacy ? "type: 'ContrastiveLoss' contrastive_loss_param { margin: 2 "
                            "legacy_version: true }"
                          : "type: 'ContrastiveLoss' contrastive_loss_param { margin: 2 }",
                   3, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 3, 2, 1, 1);
    LF_SHAPE(f->bottom[1], 3, 2, 1, 1);
    LF_SHAPE(f->bottom[2], 3, 1, 1, 1);
    lf_set(f->bottom[0], a);
    lf_set(f->bottom[1], b);
    lf_set(f->bottom[2], y);
    LF_SETUP(f);
    CHECK(f->l->type->is_loss);
    CHECK_INT_EQ(f->l->type->no_force_backward, 4);
    LF_FORWARD(f);
    CHECK_NEAR(f->top[0]->data[0], (25 + (legacy ? 1.75 : 2.25)) / 6, 1e-6);
    f->top[0]->diff[0] = 3;
    for (int i = 0; i < 3; i++) f->l->prop_down[i] = i < 2;
    LF_BACKWARD(f);
    /* similar: (a − b)·1; dissimilar pair 1: legacy −(a − b),
     * else −(2 − 0.5)/(0.5 + 1e-4)·(a − b) */
    const double c1 = legacy ? -1 : -1.5 / (0.5 + 1e-4);
    const double da[6] = {-3, -4, 0, c1 * -0.5, 0, 0};
    for (int i = 0; i < 6; i++) {
      CHECK_NEAR(f->bottom[0]->diff[i], da[i], 1e-5);
      CHECK_NEAR(f->bottom[1]->diff[i], -da[i], 1e-5);
    }
    /* gradient on random pairs (half similar), away from the margin */
    LF_SHAPE(f->bottom[0], 6, 3);
    LF_SHAPE(f->bottom[1], 6, 3);
    LF_SHAPE(f->bottom[2], 6);
    nr_gradcheck_fill_uniform(f->bottom[0], -0.5f, 0.5f, 71);
    nr_gradcheck_fill_uniform(f->bottom[1], -0.5f, 0.5f, 72);
    lf_set(f->bottom[2], (const float[]){1, 0, 0, 1, 0, 1});
    CHECK_OK(f->l->type->reshape(f->l, &f->err), &f->err);
    LF_GRAD(f, 1e-2f, 1e-2f, 0, NR_GC_ALL);
    LF_GRAD(f, 1e-2f, 1e-2f, 1, NR_GC_ALL);
    f->l->prop_down[2] = true;
    CHECK_INT_EQ(f->l->type->backward(f->l, &f->err), NR_ERR_INPUT);
    LF_SHAPE(f->bottom[1], 6, 2);
    CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
    CHECK_CONTAINS(f->err.msg, "must both be (N, C, 1, 1)");
    LF_SHAPE(f->bottom[1], 6, 3, 1, 1); /* (N, C) against (N, C, 1, 1) is fine, as Caffe */
    CHECK_OK(f->l->type->reshape(f->l, &f->err), &f->err);
    LF_SHAPE(f->bottom[1], 6, 1, 3, 1);
    CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
    lf_free(f);
  }
}

int main(void) {
  NR_RUN(test_softmax_loss);
  NR_RUN(test_softmax_loss_spatial_ignore);
  NR_RUN(test_softmax_loss_errors);
  NR_RUN(test_euclidean_loss);
  NR_RUN(test_sigmoid_ce_loss);
  NR_RUN(test_accuracy);
  NR_RUN(test_multinomial_logistic_loss);
  NR_RUN(test_hinge_loss);
  NR_RUN(test_infogain_loss);
  NR_RUN(test_contrastive_loss);
  return NR_TEST_EXIT();
}
