/* InnerProduct, Embed, Bias, Scale: hand-computed values, shapes, parameter blobs and
 * fillers, error messages, in-place runs, gradient checks. */
#include "layer_fixture.h"

/* ---- InnerProduct ---- */

static void test_ip_hand(void) {
  for (int tr = 0; tr < 2; tr++) {
    lf *f = lf_new(tr ? "type: 'InnerProduct' inner_product_param { num_output: 2 "
                        "transpose: true }"
                      : "type: 'InnerProduct' inner_product_param { num_output: 2 }",
                   1, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 2, 3);
    lf_set(f->bottom[0], (const float[]){1, 2, 3, 4, 5, 6});
    LF_SETUP(f);
    CHECK_INT_EQ(f->l->nblobs, 2);
    if (tr)
      CHECK_SHAPE(f->l->blobs[0], 3, 2);
    else
      CHECK_SHAPE(f->l->blobs[0], 2, 3);
    CHECK_SHAPE(f->l->blobs[1], 2);
    /* Default fillers: constant 0. */
    for (int i = 0; i < 6; i++) CHECK_NEAR(f->l->blobs[0]->data[i], 0, 0);
    const float w[2][3] = {{1, 0, -1}, {0.5f, 0.5f, 0.5f}};
    for (int n = 0; n < 2; n++)
      for (int k = 0; k < 3; k++) f->l->blobs[0]->data[tr ? k * 2 + n : n * 3 + k] = w[n][k];
    lf_set(f->l->blobs[1], (const float[]){1, -1});
    LF_FORWARD(f);
    CHECK_SHAPE(f->top[0], 2, 2);
    const float want[] = {-1, 2, -1, 6.5f};
    for (int i = 0; i < 4; i++) CHECK_NEAR(f->top[0]->data[i], want[i], 1e-6);

    /* Backward: dy = ones. dx = column sums of W; dW += dy^T x; db += column sums. */
    for (int i = 0; i < 4; i++) f->top[0]->diff[i] = 1;
    f->l->prop_down[0] = true;
    LF_BACKWARD(f);
    LF_BACKWARD(f); /* param diffs accumulate, bottom diff is overwritten */
    const float dx[] = {1.5f, 0.5f, -0.5f};
    for (int i = 0; i < 6; i++) CHECK_NEAR(f->bottom[0]->diff[i], dx[i % 3], 1e-6);
    for (int n = 0; n < 2; n++)
      for (int k = 0; k < 3; k++)
        CHECK_NEAR(f->l->blobs[0]->diff[tr ? k * 2 + n : n * 3 + k], 2 * (1 + k + 1 + 3 + k),
                   1e-5);
    CHECK_NEAR(f->l->blobs[1]->diff[0], 4, 0);
    lf_free(f);
  }
}

static void test_ip_shapes_and_errors(void) {
  lf *f = lf_new("type: 'InnerProduct' inner_product_param { num_output: 7 axis: 2 "
                 "bias_term: false weight_filler { type: 'xavier' } }",
                 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4, 5);
  LF_SETUP(f);
  CHECK_INT_EQ(f->l->nblobs, 1);
  CHECK_SHAPE(f->l->blobs[0], 7, 20);
  CHECK_SHAPE(f->top[0], 2, 3, 7);
  CHECK(f->l->blobs[0]->data[0] != 0);
  /* A new batch size reshapes; a new input size is an error. */
  LF_SHAPE(f->bottom[0], 6, 3, 4, 5);
  CHECK_OK(f->l->type->reshape(f->l, &f->err), &f->err);
  CHECK_SHAPE(f->top[0], 6, 3, 7);
  LF_SHAPE(f->bottom[0], 6, 3, 4, 6);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "has 24 inputs per item from axis 2, expected 20");
  lf_free(f);

  f = lf_new("type: 'InnerProduct' inner_product_param { bias_term: false }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "num_output must be given");
  lf_free(f);
  f = lf_new("type: 'InnerProduct'", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "num_output must be given");
  lf_free(f);
  f = lf_new("type: 'InnerProduct' inner_product_param { num_output: 0 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "num_output must be given");
  lf_free(f);
  f = lf_new("type: 'InnerProduct' inner_product_param { num_output: 2 axis: 4 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "axis 4 is out of range");
  lf_free(f);
  f = lf_new("type: 'InnerProduct' inner_product_param { num_output: 2 "
             "weight_filler { type: 'nope' } }",
             1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "weight_filler: unknown filler type 'nope'");
  lf_free(f);
}

static void test_ip_grad(void) {
  const char *protos[] = {
      "type: 'InnerProduct' inner_product_param { num_output: 10 weight_filler { type: "
      "'gaussian' } bias_filler { type: 'uniform' min: 1 max: 2 } }",
      "type: 'InnerProduct' inner_product_param { num_output: 10 transpose: true "
      "weight_filler { type: 'gaussian' } bias_filler { type: 'uniform' min: 1 max: 2 } }",
      "type: 'InnerProduct' inner_product_param { num_output: 4 axis: -1 weight_filler { "
      "type: 'gaussian' } bias_filler { type: 'gaussian' } }"};
  for (int k = 0; k < 3; k++) {
    lf *f = lf_new(protos[k], 1, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 2, 3, 4, 5);
    nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 21);
    LF_SETUP(f);
    LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_EXHAUSTIVE);
    lf_free(f);
  }
}

/* ---- Embed ---- */

static void test_embed(void) {
  lf *f = lf_new("type: 'Embed' embed_param { num_output: 3 input_dim: 4 "
                 "bias_filler { type: 'constant' value: 0.5 } }",
                 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 2);
  lf_set(f->bottom[0], (const float[]){2, 0, 3, 2});
  LF_SETUP(f);
  CHECK_INT_EQ(f->l->nblobs, 2);
  CHECK_SHAPE(f->l->blobs[0], 4, 3);
  CHECK_SHAPE(f->l->blobs[1], 3);
  CHECK_SHAPE(f->top[0], 2, 2, 3);
  for (int i = 0; i < 12; i++) f->l->blobs[0]->data[i] = (float)i;
  LF_FORWARD(f);
  const int idx[] = {2, 0, 3, 2};
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 3; j++)
      CHECK_NEAR(f->top[0]->data[i * 3 + j], idx[i] * 3 + j + 0.5f, 0);
  /* Backward: rows hit twice get twice the diff; indices get none. */
  for (int i = 0; i < 12; i++) f->top[0]->diff[i] = 1;
  LF_BACKWARD(f);
  const float rows[] = {1, 0, 2, 1};
  for (int r = 0; r < 4; r++)
    for (int j = 0; j < 3; j++) CHECK_NEAR(f->l->blobs[0]->diff[r * 3 + j], rows[r], 0);
  CHECK_NEAR(f->l->blobs[1]->diff[0], 4, 0);
  f->l->prop_down[0] = true;
  CHECK_INT_EQ(f->l->type->backward(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "indices");

  /* Out-of-range and fractional indices. */
  f->bottom[0]->data[1] = 4;
  CHECK_INT_EQ(f->l->type->forward(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "element 1 is 4, expected an integer index in [0, 4)");
  f->bottom[0]->data[1] = 1.5f;
  CHECK_INT_EQ(f->l->type->forward(f->l, &f->err), NR_ERR_INPUT);
  f->bottom[0]->data[1] = -1;
  CHECK_INT_EQ(f->l->type->forward(f->l, &f->err), NR_ERR_INPUT);
  lf_free(f);

  f = lf_new("type: 'Embed' embed_param { num_output: 3 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "input_dim must be given");
  lf_free(f);
  f = lf_new("type: 'Embed' embed_param { input_dim: 3 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "num_output must be given");
  lf_free(f);
}

static void test_embed_grad(void) {
  for (int bias = 0; bias < 2; bias++) {
    lf *f = lf_new(bias ? "type: 'Embed' embed_param { num_output: 10 input_dim: 5 "
                          "weight_filler { type: 'uniform' min: -0.1 max: 0.1 } "
                          "bias_filler { type: 'uniform' min: -0.1 max: 0.1 } }"
                        : "type: 'Embed' embed_param { num_output: 10 input_dim: 5 "
                          "bias_term: false weight_filler { type: 'uniform' min: -0.1 "
                          "max: 0.1 } }",
                   1, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 4, 1, 2);
    for (int i = 0; i < 8; i++) f->bottom[0]->data[i] = (float)((i * 3) % 5);
    LF_SETUP(f);
    CHECK_INT_EQ(f->l->nblobs, bias ? 2 : 1);
    LF_GRAD(f, 1e-2f, 1e-3f, -2, NR_GC_EXHAUSTIVE);
    lf_free(f);
  }
}

/* ---- Bias ---- */

static void test_bias_values(void) {
  /* Learnable bias over axis 1 (channels). */
  lf *f = lf_new("type: 'Bias' bias_param { filler { type: 'uniform' min: 1 max: 2 } }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 3);
  LF_SETUP(f);
  CHECK_INT_EQ(f->l->nblobs, 1);
  CHECK_SHAPE(f->l->blobs[0], 3);
  LF_FORWARD(f);
  for (int i = 0; i < 24; i++)
    CHECK_NEAR(f->top[0]->data[i], f->bottom[0]->data[i] + f->l->blobs[0]->data[(i / 4) % 3],
               1e-6);
  lf_free(f);

  /* num_axes -1: every axis from `axis`; default filler constant 0. */
  f = lf_new("type: 'Bias' bias_param { num_axes: -1 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4);
  LF_SETUP(f);
  CHECK_SHAPE(f->l->blobs[0], 3, 4);
  CHECK_NEAR(f->l->blobs[0]->data[5], 0, 0);
  lf_free(f);

  /* Bias from bottom[1], broadcast over axes 1-2; a scalar bottom[1] broadcasts everywhere. */
  f = lf_new("type: 'Bias'", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4);
  LF_SHAPE(f->bottom[1], 3, 4);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 3);
  nr_gradcheck_fill_uniform(f->bottom[1], -1, 1, 4);
  LF_SETUP(f);
  CHECK_INT_EQ(f->l->nblobs, 0);
  LF_FORWARD(f);
  for (int i = 0; i < 24; i++)
    CHECK_NEAR(f->top[0]->data[i], f->bottom[0]->data[i] + f->bottom[1]->data[i % 12], 1e-6);
  lf_free(f);

  f = lf_new("type: 'Bias' bias_param { axis: 2 }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  LF_SHAPE(f->bottom[1]);
  f->bottom[1]->data[0] = 5;
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 3);
  LF_SETUP(f);
  LF_FORWARD(f);
  for (int i = 0; i < 6; i++) CHECK_NEAR(f->top[0]->data[i], f->bottom[0]->data[i] + 5, 1e-6);
  lf_free(f);

  f = lf_new("type: 'Bias'", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4);
  LF_SHAPE(f->bottom[1], 4);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "bottom[0] axis 1 is 3 but bias axis 0 is 4");
  lf_free(f);
  f = lf_new("type: 'Bias' bias_param { axis: 1 num_axes: 3 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "bottom[0] has 3 axes");
  lf_free(f);
}

static void test_bias_grad(void) {
  lf *f = lf_new("type: 'Bias' bias_param { filler { type: 'gaussian' } }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4, 5);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 3);
  LF_SETUP(f);
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_EXHAUSTIVE);
  lf_free(f);

  f = lf_new("type: 'Bias' bias_param { axis: 2 }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4, 5);
  LF_SHAPE(f->bottom[1], 4, 5);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 3);
  nr_gradcheck_fill_gaussian(f->bottom[1], 0, 1, 4);
  LF_SETUP(f);
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_EXHAUSTIVE);
  lf_free(f);
}

/* ---- Scale ---- */

static void test_scale_values(void) {
  lf *f = lf_new("type: 'Scale' scale_param { bias_term: true "
                 "bias_filler { type: 'constant' value: 0.5 } }",
                 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 3);
  LF_SETUP(f);
  CHECK_INT_EQ(f->l->nblobs, 2);
  CHECK_SHAPE(f->l->blobs[0], 3);
  CHECK_SHAPE(f->l->blobs[1], 3);
  for (int c = 0; c < 3; c++) CHECK_NEAR(f->l->blobs[0]->data[c], 1, 0); /* default filler */
  for (int c = 0; c < 3; c++) CHECK_NEAR(f->l->blobs[1]->data[c], 0.5, 0);
  lf_set(f->l->blobs[0], (const float[]){2, -1, 0.5f});
  LF_FORWARD(f);
  const float s[] = {2, -1, 0.5f};
  for (int i = 0; i < 24; i++)
    CHECK_NEAR(f->top[0]->data[i], f->bottom[0]->data[i] * s[(i / 4) % 3] + 0.5f, 1e-6);
  lf_free(f);

  /* Scale from bottom[1] (axis 0, 2 axes) with a learnable bias of its shape: blobs[0]. */
  f = lf_new("type: 'Scale' scale_param { axis: 0 bias_term: true }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4);
  LF_SHAPE(f->bottom[1], 2, 3);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 3);
  nr_gradcheck_fill_uniform(f->bottom[1], -1, 1, 4);
  LF_SETUP(f);
  CHECK_INT_EQ(f->l->nblobs, 1);
  CHECK_SHAPE(f->l->blobs[0], 2, 3);
  LF_FORWARD(f);
  for (int i = 0; i < 24; i++)
    CHECK_NEAR(f->top[0]->data[i], f->bottom[0]->data[i] * f->bottom[1]->data[i / 4], 1e-6);
  lf_free(f);

  f = lf_new("type: 'Scale'", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4);
  LF_SHAPE(f->bottom[1], 3, 5);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "bottom[0] axis 2 is 4 but scale axis 1 is 5");
  lf_free(f);
}

static void test_scale_grad(void) {
  lf *f = lf_new("type: 'Scale' scale_param { filler { type: 'gaussian' } bias_term: true "
                 "bias_filler { type: 'gaussian' } }",
                 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4, 5);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 3);
  LF_SETUP(f);
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_EXHAUSTIVE);
  lf_free(f);

  f = lf_new("type: 'Scale' scale_param { axis: 1 num_axes: -1 bias_term: true }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4);
  LF_SHAPE(f->bottom[1], 3, 4);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 3);
  nr_gradcheck_fill_gaussian(f->bottom[1], 0, 1, 4);
  LF_SETUP(f);
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_EXHAUSTIVE);
  lf_free(f);
}

/* In place (top == bottom[0]) must equal out of place, parameters' diffs included. */
static void test_bias_scale_in_place(void) {
  const char *protos[] = {"type: 'Scale' scale_param { filler { type: 'gaussian' } "
                          "bias_term: true bias_filler { type: 'gaussian' } }",
                          "type: 'Bias' bias_param { filler { type: 'gaussian' } }"};
  for (int k = 0; k < 2; k++) {
    lf *a = lf_new(protos[k], 1, 1), *b = lf_make(protos[k], 1, 1, 1);
    CHECK(a && b);
    LF_SHAPE(a->bottom[0], 2, 3, 4);
    LF_SHAPE(b->bottom[0], 2, 3, 4);
    nr_gradcheck_fill_uniform(a->bottom[0], -1, 1, 5);
    nr_gradcheck_fill_uniform(b->bottom[0], -1, 1, 5);
    LF_SETUP(a);
    LF_SETUP(b);
    LF_FORWARD(a);
    LF_FORWARD(b);
    for (int i = 0; i < 24; i++) CHECK_NEAR(b->top[0]->data[i], a->top[0]->data[i], 0);
    for (int i = 0; i < 24; i++) a->top[0]->diff[i] = b->top[0]->diff[i] = 0.1f * (float)(i - 7);
    a->l->prop_down[0] = b->l->prop_down[0] = true;
    LF_BACKWARD(a);
    LF_BACKWARD(b);
    for (int i = 0; i < 24; i++) CHECK_NEAR(b->bottom[0]->diff[i], a->bottom[0]->diff[i], 1e-6);
    for (int j = 0; j < a->l->nblobs; j++)
      for (int64_t i = 0; i < a->l->blobs[j]->count; i++)
        CHECK_NEAR(b->l->blobs[j]->diff[i], a->l->blobs[j]->diff[i], 1e-5);
    lf_free(a);
    lf_free(b);
  }
}

int main(void) {
  NR_RUN(test_ip_hand);
  NR_RUN(test_ip_shapes_and_errors);
  NR_RUN(test_ip_grad);
  NR_RUN(test_embed);
  NR_RUN(test_embed_grad);
  NR_RUN(test_bias_values);
  NR_RUN(test_bias_grad);
  NR_RUN(test_scale_values);
  NR_RUN(test_scale_grad);
  NR_RUN(test_bias_scale_in_place);
  return NR_TEST_EXIT();
}
