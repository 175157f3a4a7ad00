/* Concat, Slice, Eltwise, ArgMax, Crop: values, shapes, errors, gradient checks. */
#include "layer_fixture.h"

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

int main(void) {
  NR_RUN(test_concat);
  NR_RUN(test_slice);
  NR_RUN(test_eltwise);
  NR_RUN(test_argmax);
  NR_RUN(test_crop);
  return NR_TEST_EXIT();
}
