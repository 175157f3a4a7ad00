/* Loss layers: SoftmaxWithLoss, EuclideanLoss, SigmoidCrossEntropyLoss, and Accuracy:
 * values against direct formulas, normalization modes, ignore_label, errors, gradient checks. */
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
  lf *f = loss_layer("name: 'l' type: 'SoftmaxWithLoss' loss_param { normalize: false }", 1, 2, 4, 3);
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

int main(void) {
  NR_RUN(test_softmax_loss);
  NR_RUN(test_softmax_loss_spatial_ignore);
  NR_RUN(test_softmax_loss_errors);
  NR_RUN(test_euclidean_loss);
  NR_RUN(test_sigmoid_ce_loss);
  NR_RUN(test_accuracy);
  return NR_TEST_EXIT();
}
