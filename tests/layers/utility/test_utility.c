/* Utility layers: Split, Silence, Flatten, Reshape, Concat, Slice, Crop, Eltwise, ArgMax,
 * Tile, Reduction, BatchReindex, Filter, Parameter:
 * shapes, values, error messages and gradient checks. */
#include "layer_fixture.h"

/* ---- Split, Silence ---- */

static void test_split(void) {
  lf *f = lf_new("type: 'Split'", 1, 3);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 1);
  LF_SETUP(f);
  LF_FORWARD(f);
  for (int t = 0; t < 3; t++) {
    CHECK_SHAPE(f->top[t], 2, 3);
    for (int i = 0; i < 6; i++) CHECK_NEAR(f->top[t]->data[i], f->bottom[0]->data[i], 0);
  }
  for (int t = 0; t < 3; t++)
    for (int i = 0; i < 6; i++) f->top[t]->diff[i] = (float)(t + 1) * (float)i;
  f->l->prop_down[0] = true;
  LF_BACKWARD(f);
  for (int i = 0; i < 6; i++) CHECK_NEAR(f->bottom[0]->diff[i], 6 * i, 0);
  LF_GRAD(f, 1e-2f, 1e-2f, -1, NR_GC_ALL);
  lf_free(f);

  f = lf_make("type: 'Split'", 1, 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "in place");
  lf_free(f);
}

static void test_silence(void) {
  lf *f = lf_new("type: 'Silence'", 2, 0);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 3);
  LF_SHAPE(f->bottom[1], 2);
  LF_SETUP(f);
  LF_FORWARD(f);
  for (int i = 0; i < 3; i++) f->bottom[0]->diff[i] = 5;
  for (int i = 0; i < 2; i++) f->bottom[1]->diff[i] = 5;
  f->l->prop_down[0] = true;
  f->l->prop_down[1] = false;
  LF_BACKWARD(f);
  for (int i = 0; i < 3; i++) CHECK_NEAR(f->bottom[0]->diff[i], 0, 0);
  CHECK_NEAR(f->bottom[1]->diff[0], 5, 0);
  lf_free(f);
}

/* ---- Flatten ---- */

static void test_flatten(void) {
  lf *f = lf_new("type: 'Flatten'", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4, 5);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 1);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 2, 60);
  LF_FORWARD(f);
  for (int i = 0; i < 120; i++) CHECK_NEAR(f->top[0]->data[i], f->bottom[0]->data[i], 0);
  LF_GRAD(f, 1e-2f, 1e-2f, -1, NR_GC_ALL);
  lf_free(f);

  const char *protos[] = {"type: 'Flatten' flatten_param { axis: 2 }",
                          "type: 'Flatten' flatten_param { end_axis: -2 }",
                          "type: 'Flatten' flatten_param { axis: 0 end_axis: 1 }",
                          "type: 'Flatten' flatten_param { axis: -1 }"};
  const int64_t want[4][4] = {{2, 3, 20, 0}, {2, 12, 5, 0}, {6, 4, 5, 0}, {2, 3, 4, 5}};
  const int nax[4] = {3, 3, 3, 4};
  for (int k = 0; k < 4; k++) {
    f = lf_new(protos[k], 1, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 2, 3, 4, 5);
    LF_SETUP(f);
    CHECK_INT_EQ(f->top[0]->num_axes, nax[k]);
    for (int i = 0; i < nax[k]; i++) CHECK_INT_EQ(f->top[0]->shape[i], want[k][i]);
    lf_free(f);
  }

  f = lf_new("type: 'Flatten' flatten_param { axis: 4 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4, 5);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "flatten_param.axis 4 is out of range for 4 axes");
  lf_free(f);
  f = lf_new("type: 'Flatten' flatten_param { axis: 2 end_axis: 1 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4, 5);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "comes before");
  lf_free(f);
}

/* ---- Reshape ---- */

static void reshape_case(const char *proto, int nb, const int64_t *bshape, int nw,
                         const int64_t *want) {
  lf *f = lf_new(proto, 1, 1);
  CHECK(f);
  lf_shape_(f->bottom[0], nb, bshape);
  LF_SETUP(f);
  CHECK_INT_EQ(f->top[0]->num_axes, nw);
  for (int i = 0; i < nw; i++) CHECK_INT_EQ(f->top[0]->shape[i], want[i]);
  lf_free(f);
}
#define RESHAPE_CASE(proto, bshape, want)                                               \
  reshape_case((proto), (int)(sizeof(bshape) / sizeof(int64_t)), (bshape),             \
               (int)(sizeof(want) / sizeof(int64_t)), (want))

static void test_reshape_shapes(void) {
  const int64_t b4[] = {2, 3, 4, 5};
  RESHAPE_CASE("type: 'Reshape' reshape_param { shape { dim: 0 dim: -1 } }", b4,
               ((const int64_t[]){2, 60}));
  RESHAPE_CASE("type: 'Reshape' reshape_param { shape { dim: 6 dim: 2 dim: 10 } }", b4,
               ((const int64_t[]){6, 2, 10}));
  RESHAPE_CASE("type: 'Reshape' reshape_param { shape { dim: 0 dim: 0 dim: 20 } }", b4,
               ((const int64_t[]){2, 3, 20}));
  RESHAPE_CASE("type: 'Reshape' reshape_param { shape { dim: -1 } axis: 1 }", b4,
               ((const int64_t[]){2, 60}));
  /* Insert a singleton axis: axis 1, num_axes 0. */
  RESHAPE_CASE("type: 'Reshape' reshape_param { shape { dim: 1 } axis: 1 num_axes: 0 }", b4,
               ((const int64_t[]){2, 1, 3, 4, 5}));
  /* Replace axes 1-2 only; negative axis counts from the end (-1 = after the last). */
  RESHAPE_CASE("type: 'Reshape' reshape_param { shape { dim: 12 } axis: 1 num_axes: 2 }", b4,
               ((const int64_t[]){2, 12, 5}));
  RESHAPE_CASE("type: 'Reshape' reshape_param { shape { dim: 1 dim: 1 } axis: -1 "
               "num_axes: 0 }",
               b4, ((const int64_t[]){2, 3, 4, 5, 1, 1}));
  RESHAPE_CASE("type: 'Reshape' reshape_param { shape { dim: 2 dim: -1 } axis: -3 }", b4,
               ((const int64_t[]){2, 3, 2, 10}));
}

static void test_reshape_values_and_errors(void) {
  lf *f = lf_new("type: 'Reshape' reshape_param { shape { dim: 4 dim: -1 } }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 2);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 1);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 4, 3);
  LF_FORWARD(f);
  for (int i = 0; i < 12; i++) CHECK_NEAR(f->top[0]->data[i], f->bottom[0]->data[i], 0);
  LF_GRAD(f, 1e-2f, 1e-2f, -1, NR_GC_ALL);
  /* A bottom whose count no longer fits. */
  LF_SHAPE(f->bottom[0], 2, 5);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "cannot infer the -1 dim");
  lf_free(f);

  struct {
    const char *proto, *msg;
  } bad[] = {
      {"type: 'Reshape' reshape_param { shape { dim: -1 dim: -1 } }", "more than one -1"},
      {"type: 'Reshape' reshape_param { shape { dim: 7 dim: 3 } }", "changes the count"},
      {"type: 'Reshape' reshape_param { shape { dim: -2 } }", "must be >= 0"},
      {"type: 'Reshape' reshape_param { shape { dim: 6 } axis: 4 }", "axis 4 is out of range"},
      {"type: 'Reshape' reshape_param { shape { dim: 6 } axis: 1 num_axes: 3 }",
       "exceeds the bottom's 3 axes"},
      {"type: 'Reshape' reshape_param { shape { dim: 0 dim: 0 dim: 0 dim: 0 } }",
       "no axis 3"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    f = lf_new(bad[k].proto, 1, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 2, 3, 2);
    LF_SETUP_FAILS(f, NR_ERR_INPUT, bad[k].msg);
    lf_free(f);
  }
  f = lf_make("type: 'Reshape' reshape_param { shape { dim: -1 } }", 1, 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "in place");
  lf_free(f);
}

/* ---- Concat, Slice, Eltwise, ArgMax, Crop ---- */

static void fill_iota(nr_blob *b, float start) {
  for (int64_t i = 0; i < b->count; i++) b->data[i] = start + (float)i;
}

static void test_concat(void) {
  lf *f = lf_new("name: 'c' type: 'Concat'", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 2);
  LF_SHAPE(f->bottom[1], 2, 1, 2);
  fill_iota(f->bottom[0], 0);
  fill_iota(f->bottom[1], 100);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[1], 4);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  const float want[16] = {0, 1, 2, 3, 4, 5, 100, 101, 6, 7, 8, 9, 10, 11, 102, 103};
  for (int i = 0; i < 16; i++) CHECK_NEAR(f->top[0]->data[i], want[i], 0);
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_EXHAUSTIVE);
  LF_SHAPE(f->bottom[1], 3, 1, 2);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "bottom[1] shape 3 1 2");
  lf_free(f);

  /* legacy concat_dim, and axis -1 */
  f = lf_new("name: 'c' type: 'Concat' concat_param { concat_dim: 0 }", 3, 1);
  CHECK(f);
  for (int i = 0; i < 3; i++) LF_SHAPE(f->bottom[i], i + 1, 2);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[0], 6);
  lf_free(f);
  f = lf_new("name: 'c' type: 'Concat' concat_param { axis: -1 }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 2);
  LF_SHAPE(f->bottom[1], 2, 3);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[1], 5);
  lf_free(f);
  f = lf_new("name: 'c' type: 'Concat' concat_param { axis: 1 concat_dim: 1 }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 2);
  LF_SHAPE(f->bottom[1], 2, 3);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  lf_free(f);
}

static void test_slice(void) {
  lf *f = lf_new("name: 's' type: 'Slice' slice_param { axis: 1 slice_point: 1 slice_point: 3 }",
                 1, 3);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 5, 2);
  fill_iota(f->bottom[0], 0);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[1], 1);
  CHECK_INT_EQ(f->top[1]->shape[1], 2);
  CHECK_INT_EQ(f->top[2]->shape[1], 2);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  CHECK_NEAR(f->top[0]->data[2], 10, 0); /* n=1, c=0 */
  CHECK_NEAR(f->top[1]->data[0], 2, 0);  /* n=0, c=1 */
  CHECK_NEAR(f->top[2]->data[7], 19, 0); /* n=1, c=4, w=1 */
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_EXHAUSTIVE);
  lf_free(f);

  f = lf_new("name: 's' type: 'Slice' slice_param { slice_dim: 0 }", 1, 2);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 4, 3);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[1]->shape[0], 2);
  LF_SHAPE(f->bottom[0], 5, 3);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "does not split evenly into 2 tops");
  lf_free(f);

  f = lf_new("name: 's' type: 'Slice' slice_param { slice_point: 2 }", 1, 3);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 4, 3);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "1 slice_point values for 3 tops; need 2");
  lf_free(f);

  f = lf_new("name: 's' type: 'Slice' slice_param { slice_point: 2 slice_point: 2 }", 1, 3);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 4, 3);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "slice_point");
  lf_free(f);
}

static void test_eltwise(void) {
  const char *ops[] = {
      "operation: SUM coeff: 1 coeff: -0.5 coeff: 2",
      "operation: SUM",
      "operation: PROD",
      "operation: PROD stable_prod_grad: false",
      "operation: MAX",
  };
  for (int k = 0; k < 5; k++) {
    char proto[200];
    snprintf(proto, sizeof proto, "name: 'e' type: 'Eltwise' eltwise_param { %s }", ops[k]);
    lf *f = lf_new(proto, 3, 1);
    CHECK(f);
    for (int i = 0; i < 3; i++) {
      LF_SHAPE(f->bottom[i], 2, 3, 2);
      nr_gradcheck_fill_uniform(f->bottom[i], 0.5f, 2.0f, 40 + (uint64_t)i);
    }
    CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
    CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
    for (int j = 0; j < 12; j++) {
      float a = f->bottom[0]->data[j], b = f->bottom[1]->data[j], c = f->bottom[2]->data[j];
      float want = k == 0 ? a - 0.5f * b + 2 * c : k == 1 ? a + b + c : k <= 3 ? a * b * c
                 : fmaxf(a, fmaxf(b, c));
      CHECK_NEAR(f->top[0]->data[j], want, 1e-5);
    }
    LF_GRAD(f, 1e-3f, 1e-2f, -1, NR_GC_EXHAUSTIVE);
    lf_free(f);
  }
  /* MAX ties: between bottoms 0 and 1 the gradient goes to bottom 1 (Caffe's order) */
  lf *f = lf_new("name: 'e' type: 'Eltwise' eltwise_param { operation: MAX }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1);
  LF_SHAPE(f->bottom[1], 1);
  f->bottom[0]->data[0] = f->bottom[1]->data[0] = 3;
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  f->top[0]->diff[0] = 1;
  f->l->prop_down[0] = f->l->prop_down[1] = true;
  CHECK_OK(f->l->type->backward(f->l, &f->err), &f->err);
  CHECK_NEAR(f->bottom[0]->diff[0], 0, 0);
  CHECK_NEAR(f->bottom[1]->diff[0], 1, 0);
  lf_free(f);

  f = lf_new("name: 'e' type: 'Eltwise' eltwise_param { operation: PROD coeff: 1 coeff: 2 }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2);
  LF_SHAPE(f->bottom[1], 2);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "coeff is only allowed with operation SUM");
  lf_free(f);
  f = lf_new("name: 'e' type: 'Eltwise' eltwise_param { coeff: 2 }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2);
  LF_SHAPE(f->bottom[1], 2);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "1 coeff values for 2 bottoms");
  lf_free(f);
  f = lf_new("name: 'e' type: 'Eltwise'", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  LF_SHAPE(f->bottom[1], 3, 2);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "bottom[1] shape 3 2 (6) differs from bottom[0] shape 2 3 (6)");
  lf_free(f);
}

static void test_argmax(void) {
  lf *f = lf_new("name: 'a' type: 'ArgMax' argmax_param { out_max_val: true top_k: 2 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 4);
  const float x[8] = {0.1f, 0.9f, 0.3f, 0.9f, -1, -3, -2, 5};
  memcpy(f->bottom[0]->data, x, sizeof x);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->num_axes, 3);
  CHECK_INT_EQ(f->top[0]->shape[0], 2);
  CHECK_INT_EQ(f->top[0]->shape[1], 2);
  CHECK_INT_EQ(f->top[0]->shape[2], 2);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  /* ties go to the larger index first */
  const float want[8] = {3, 1, 0.9f, 0.9f, 3, 0, 5, -1};
  for (int i = 0; i < 8; i++) CHECK_NEAR(f->top[0]->data[i], want[i], 1e-7);
  lf_free(f);

  f = lf_new("name: 'a' type: 'ArgMax' argmax_param { axis: 1 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 2);
  const float y[12] = {1, 6, 2, 5, 3, 4, /* n=0: argmax over c for w=0 -> 2, w=1 -> 0 */
                       9, 0, 8, 1, 7, 2};
  memcpy(f->bottom[0]->data, y, sizeof y);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[1], 1);
  CHECK_INT_EQ(f->top[0]->shape[2], 2);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  CHECK_NEAR(f->top[0]->data[0], 2, 0);
  CHECK_NEAR(f->top[0]->data[1], 0, 0);
  CHECK_NEAR(f->top[0]->data[2], 0, 0);
  CHECK_NEAR(f->top[0]->data[3], 2, 0);
  lf_free(f);

  f = lf_new("name: 'a' type: 'ArgMax' argmax_param { top_k: 5 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 4);
  CHECK_INT_EQ(nr_layer_setup(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "top_k 5 is larger");
  lf_free(f);
}

static void test_crop(void) {
  lf *f = lf_new("name: 'c' type: 'Crop' crop_param { axis: 2 offset: 1 offset: 2 }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 2, 4, 5);
  LF_SHAPE(f->bottom[1], 1, 1, 2, 3);
  fill_iota(f->bottom[0], 0);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_INT_EQ(f->top[0]->shape[0], 2);
  CHECK_INT_EQ(f->top[0]->shape[1], 2);
  CHECK_INT_EQ(f->top[0]->shape[2], 2);
  CHECK_INT_EQ(f->top[0]->shape[3], 3);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  /* top (n, c, h, w) = bottom (n, c, h+1, w+2) */
  for (int n = 0; n < 2; n++)
    for (int c = 0; c < 2; c++)
      for (int h = 0; h < 2; h++)
        for (int w = 0; w < 3; w++)
          CHECK_NEAR(f->top[0]->data[((n * 2 + c) * 2 + h) * 3 + w],
                     ((n * 2 + c) * 4 + h + 1) * 5 + w + 2, 0);
  CHECK(f->l->type->no_force_backward & 2u);
  LF_GRAD(f, 1e-2f, 1e-3f, 0, NR_GC_EXHAUSTIVE);
  LF_SHAPE(f->bottom[1], 1, 1, 4, 3);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "offset 1 + size 4 exceeds bottom[0] size 4");
  lf_free(f);

  f = lf_new("name: 'c' type: 'Crop' crop_param { axis: 1 offset: 1 }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 3);
  LF_SHAPE(f->bottom[1], 2, 2, 2);
  fill_iota(f->bottom[0], 0);
  CHECK_OK(nr_layer_setup(f->l, &f->err), &f->err);
  CHECK_OK(f->l->type->forward(f->l, &f->err), &f->err);
  CHECK_NEAR(f->top[0]->data[0], 4, 0); /* (0, 1, 1) */
  CHECK_NEAR(f->top[0]->data[7], 9 + 8, 0); /* (1, 2, 2) */
  lf_free(f);
}

/* ---- Tile, Reduction ---- */

static void test_tile(void) {
  lf *f = lf_new("type: 'Tile' tile_param { tiles: 3 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 2);
  lf_set(f->bottom[0], (const float[]){1, 2, 3, 4});
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 2, 6);
  LF_FORWARD(f);
  const float want[] = {1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4};
  for (int i = 0; i < 12; i++) CHECK_NEAR(f->top[0]->data[i], want[i], 0);
  for (int i = 0; i < 12; i++) f->top[0]->diff[i] = (float)i;
  f->l->prop_down[0] = true;
  LF_BACKWARD(f);
  const float dwant[] = {0 + 2 + 4, 1 + 3 + 5, 6 + 8 + 10, 7 + 9 + 11};
  for (int i = 0; i < 4; i++) CHECK_NEAR(f->bottom[0]->diff[i], dwant[i], 0);
  lf_free(f);
  /* axis 0 of (2, 3): the whole blob twice; negative axis; gradient */
  f = lf_new("type: 'Tile' tile_param { axis: -3 tiles: 2 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 2);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 3);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 4, 3, 2);
  LF_FORWARD(f);
  CHECK(lf_maxdiff(f->top[0]->data + 12, f->bottom[0]->data, 12) == 0);
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_EXHAUSTIVE);
  lf_free(f);
  f = lf_new("type: 'Tile' tile_param { axis: 1 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "tiles must be given");
  lf_free(f);
  f = lf_new("type: 'Tile' tile_param { tiles: 0 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "tiles must be > 0");
  lf_free(f);
  f = lf_new("type: 'Tile' tile_param { axis: 2 tiles: 2 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "axis 2 out of range");
  lf_free(f);
}

static void test_reduction(void) {
  const float x[6] = {1, -2, 3, -4, 0, 6};
  const struct {
    const char *proto;
    float want[2];
    float dwant[6]; /* top diff (1, 2) */
  } cases[] = {
      {"type: 'Reduction' reduction_param { axis: 1 }", {2, 2}, {1, 1, 1, 2, 2, 2}},
      {"type: 'Reduction' reduction_param { axis: 1 operation: ASUM coeff: 2 }",
       {12, 20},
       {2, -2, 2, -4, 0, 4}},
      {"type: 'Reduction' reduction_param { axis: -1 operation: SUMSQ }",
       {14, 52},
       {2, -4, 6, -16, 0, 24}},
      {"type: 'Reduction' reduction_param { axis: 1 operation: MEAN coeff: 3 }",
       {2, 2},
       {1, 1, 1, 2, 2, 2}},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    lf *f = lf_new(cases[k].proto, 1, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 2, 3);
    lf_set(f->bottom[0], x);
    LF_SETUP(f);
    CHECK_SHAPE(f->top[0], 2);
    LF_FORWARD(f);
    CHECK_NEAR(f->top[0]->data[0], cases[k].want[0], 1e-6);
    CHECK_NEAR(f->top[0]->data[1], cases[k].want[1], 1e-6);
    f->top[0]->diff[0] = 1;
    f->top[0]->diff[1] = 2;
    f->l->prop_down[0] = true;
    LF_BACKWARD(f);
    for (int i = 0; i < 6; i++) CHECK_NEAR(f->bottom[0]->diff[i], cases[k].dwant[i], 1e-6);
    lf_free(f);
  }
  /* default axis 0: a scalar; gradient checks of every operation on (2, 3, 4) at axis 1 */
  lf *f = lf_new("type: 'Reduction'", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  lf_set(f->bottom[0], x);
  LF_SETUP(f);
  CHECK_INT_EQ(f->top[0]->num_axes, 0);
  LF_FORWARD(f);
  CHECK_NEAR(f->top[0]->data[0], 4, 0);
  lf_free(f);
  const char *ops[] = {"SUM", "ASUM", "SUMSQ", "MEAN"};
  for (int k = 0; k < 4; k++) {
    char proto[160];
    snprintf(proto, sizeof proto,
             "type: 'Reduction' reduction_param { axis: 1 operation: %s coeff: -1.5 }", ops[k]);
    f = lf_new(proto, 1, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 2, 3, 4);
    nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 21);
    LF_SETUP(f);
    CHECK_SHAPE(f->top[0], 2);
    LF_GRAD_KINK(f, 1e-2f, 1e-2f, 0.02f, -1, NR_GC_EXHAUSTIVE);
    lf_free(f);
  }
  f = lf_new("type: 'Reduction' reduction_param { axis: 3 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "axis 3 out of range");
  lf_free(f);
}

/* ---- BatchReindex, Filter ---- */

static void test_batch_reindex(void) {
  lf *f = lf_new("type: 'BatchReindex'", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 3, 2);
  LF_SHAPE(f->bottom[1], 4);
  lf_set(f->bottom[0], (const float[]){10, 11, 20, 21, 30, 31});
  lf_set(f->bottom[1], (const float[]){2, 0, 2, 1});
  LF_SETUP(f);
  CHECK(f->l->type->no_force_backward & 2u);
  CHECK_SHAPE(f->top[0], 4, 2);
  LF_FORWARD(f);
  const float want[] = {30, 31, 10, 11, 30, 31, 20, 21};
  for (int i = 0; i < 8; i++) CHECK_NEAR(f->top[0]->data[i], want[i], 0);
  for (int i = 0; i < 8; i++) f->top[0]->diff[i] = (float)(i + 1);
  f->l->prop_down[0] = true;
  f->l->prop_down[1] = false;
  LF_BACKWARD(f);
  const float dwant[] = {3, 4, 7, 8, 1 + 5, 2 + 6};
  for (int i = 0; i < 6; i++) CHECK_NEAR(f->bottom[0]->diff[i], dwant[i], 0);
  LF_GRAD(f, 1e-2f, 1e-3f, 0, NR_GC_EXHAUSTIVE);
  f->l->prop_down[1] = true;
  CHECK_INT_EQ(f->l->type->backward(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "indices");
  f->bottom[1]->data[3] = 3;
  CHECK_INT_EQ(f->l->type->forward(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "index 3 at position 3");
  f->bottom[1]->data[3] = 0.5f;
  CHECK_INT_EQ(f->l->type->forward(f->l, &f->err), NR_ERR_INPUT);
  LF_SHAPE(f->bottom[1], 2, 2);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "bottom[1] (the indices) has 2 axes, expected 1");
  lf_free(f);
}

static void test_filter(void) {
  lf *f = lf_new("type: 'Filter'", 3, 2);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 4, 2);
  LF_SHAPE(f->bottom[1], 4);
  LF_SHAPE(f->bottom[2], 4, 1);
  lf_set(f->bottom[0], (const float[]){1, 2, 3, 4, 5, 6, 7, 8});
  lf_set(f->bottom[1], (const float[]){10, 20, 30, 40});
  lf_set(f->bottom[2], (const float[]){0, 1, 0, -2});
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 4, 2); /* the first reshape keeps every row */
  CHECK_OK(f->l->type->reshape(f->l, &f->err), &f->err);
  CHECK_SHAPE(f->top[0], 2, 2);
  CHECK_SHAPE(f->top[1], 2);
  LF_FORWARD(f);
  const float want0[] = {3, 4, 7, 8};
  for (int i = 0; i < 4; i++) CHECK_NEAR(f->top[0]->data[i], want0[i], 0);
  CHECK_NEAR(f->top[1]->data[0], 20, 0);
  CHECK_NEAR(f->top[1]->data[1], 40, 0);
  for (int i = 0; i < 4; i++) f->top[0]->diff[i] = (float)(i + 1);
  f->l->prop_down[0] = true;
  f->l->prop_down[1] = false;
  f->l->prop_down[2] = true;
  f->bottom[2]->diff[1] = 9;
  LF_BACKWARD(f);
  const float dwant[] = {0, 0, 1, 2, 0, 0, 3, 4};
  for (int i = 0; i < 8; i++) CHECK_NEAR(f->bottom[0]->diff[i], dwant[i], 0);
  CHECK_NEAR(f->bottom[2]->diff[1], 0, 0); /* the selector gets no gradient */
  LF_GRAD(f, 1e-2f, 1e-3f, 0, NR_GC_EXHAUSTIVE);
  LF_GRAD(f, 1e-2f, 1e-3f, 1, NR_GC_EXHAUSTIVE);
  /* nothing selected: empty tops */
  lf_set(f->bottom[2], (const float[]){0, 0, 0, 0});
  CHECK_OK(f->l->type->reshape(f->l, &f->err), &f->err);
  CHECK_SHAPE(f->top[0], 0, 2);
  LF_FORWARD(f);
  LF_SHAPE(f->bottom[1], 3);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "bottom[1] must have 4 rows");
  LF_SHAPE(f->bottom[1], 4);
  LF_SHAPE(f->bottom[2], 4, 2);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "axis 1 is 2");
  lf_free(f);
  f = lf_new("type: 'Filter'", 2, 2);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2);
  LF_SHAPE(f->bottom[1], 2);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "2 bottoms (the last is the selector) but 2 tops");
  lf_free(f);
}

/* ---- Parameter ---- */

static void test_parameter(void) {
  lf *f = lf_new("type: 'Parameter' parameter_param { shape { dim: 2 dim: 3 } }", 0, 1);
  CHECK(f);
  LF_SETUP(f);
  CHECK_INT_EQ(f->l->nblobs, 1);
  CHECK_SHAPE(f->l->blobs[0], 2, 3);
  CHECK_SHAPE(f->top[0], 2, 3);
  for (int i = 0; i < 6; i++) f->l->blobs[0]->data[i] = (float)i - 2;
  LF_FORWARD(f);
  for (int i = 0; i < 6; i++) CHECK_NEAR(f->top[0]->data[i], (float)i - 2, 0);
  /* the diff accumulates into the blob's */
  for (int i = 0; i < 6; i++) f->top[0]->diff[i] = 1;
  f->l->blobs[0]->diff[0] = 5;
  LF_BACKWARD(f);
  CHECK_NEAR(f->l->blobs[0]->diff[0], 6, 0);
  CHECK_NEAR(f->l->blobs[0]->diff[1], 1, 0);
  LF_GRAD(f, 1e-2f, 1e-3f, -2, NR_GC_EXHAUSTIVE);
  lf_free(f);
  f = lf_new("type: 'Parameter'", 0, 1);
  CHECK(f);
  LF_SETUP(f);
  CHECK_INT_EQ(f->top[0]->num_axes, 0);
  lf_free(f);
}

int main(void) {
  NR_RUN(test_split);
  NR_RUN(test_silence);
  NR_RUN(test_flatten);
  NR_RUN(test_reshape_shapes);
  NR_RUN(test_reshape_values_and_errors);
  NR_RUN(test_concat);
  NR_RUN(test_slice);
  NR_RUN(test_eltwise);
  NR_RUN(test_argmax);
  NR_RUN(test_crop);
  NR_RUN(test_tile);
  NR_RUN(test_reduction);
  NR_RUN(test_batch_reindex);
  NR_RUN(test_filter);
  NR_RUN(test_parameter);
  return NR_TEST_EXIT();
}
