/* Input, DummyData, Split, Silence, Flatten, Reshape: shapes, values, error messages and
 * gradient checks. */
#include "layer_fixture.h"

/* ---- Input ---- */

static void test_input(void) {
  lf *f = lf_new("type: 'Input' input_param { shape { dim: 2 dim: 3 } }", 0, 2);
  CHECK(f);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 2, 3);
  CHECK_SHAPE(f->top[1], 2, 3);
  LF_FORWARD(f);
  lf_free(f);

  f = lf_new("type: 'Input' input_param { shape { dim: 2 dim: 3 } shape { dim: 5 } }", 0, 2);
  CHECK(f);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 2, 3);
  CHECK_SHAPE(f->top[1], 5);
  lf_free(f);

  /* No shape: tops keep whatever the caller gave them. */
  f = lf_new("type: 'Input'", 0, 1);
  CHECK(f);
  LF_SHAPE(f->top[0], 4, 4);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 4, 4);
  lf_free(f);

  f = lf_new("type: 'Input' input_param { shape { dim: 2 } shape { dim: 5 } }", 0, 3);
  CHECK(f);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "2 shapes for 3 tops");
  lf_free(f);
  f = lf_new("type: 'Input' input_param { shape { dim: 2 dim: -3 } }", 0, 1);
  CHECK(f);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "negative dimension");
  lf_free(f);
  CHECK(nr_layer_type_find("Input")->backward == NULL);
}

/* ---- DummyData ---- */

static void test_dummy_data(void) {
  /* One constant filler for both tops: filled once. */
  lf *f = lf_new("type: 'DummyData' dummy_data_param { shape { dim: 2 dim: 3 } "
                 "data_filler { type: 'constant' value: 7 } }",
                 0, 2);
  CHECK(f);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 2, 3);
  CHECK_SHAPE(f->top[1], 2, 3);
  for (int i = 0; i < 6; i++) CHECK_NEAR(f->top[1]->data[i], 7, 0);
  f->top[0]->data[0] = -1; /* a constant top is not refilled */
  LF_FORWARD(f);
  CHECK_NEAR(f->top[0]->data[0], -1, 0);
  lf_free(f);

  /* Per-top fillers and shapes; the gaussian top is refilled every forward. */
  f = lf_new("type: 'DummyData' dummy_data_param { shape { dim: 4 } shape { dim: 1 dim: 5 } "
             "data_filler { type: 'gaussian' } data_filler { } }",
             0, 2);
  CHECK(f);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 4);
  CHECK_SHAPE(f->top[1], 1, 5);
  LF_FORWARD(f);
  float first[4];
  memcpy(first, f->top[0]->data, sizeof first);
  CHECK(first[0] != 0 && first[0] != first[1]);
  LF_FORWARD(f);
  CHECK(memcmp(first, f->top[0]->data, sizeof first) != 0);
  for (int i = 0; i < 5; i++) CHECK_NEAR(f->top[1]->data[i], 0, 0);
  lf_free(f);

  /* Legacy 4-D fields; no filler = zeros. */
  f = lf_new("type: 'DummyData' dummy_data_param { num: 2 channels: 3 channels: 1 height: 4 "
             "width: 5 }",
             0, 2);
  CHECK(f);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 2, 3, 4, 5);
  CHECK_SHAPE(f->top[1], 2, 1, 4, 5);
  LF_FORWARD(f);
  CHECK_NEAR(f->top[1]->data[39], 0, 0);
  lf_free(f);

  f = lf_new("type: 'DummyData' dummy_data_param { shape { dim: 2 } num: 2 channels: 1 "
             "height: 1 width: 1 }",
             0, 1);
  CHECK(f);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "both shape and the legacy");
  lf_free(f);
  f = lf_new("type: 'DummyData' dummy_data_param { shape { dim: 2 } shape { dim: 2 } }", 0, 3);
  CHECK(f);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "2 shape for 3 tops");
  lf_free(f);
  f = lf_new("type: 'DummyData' dummy_data_param { num: 2 height: 1 width: 1 }", 0, 1);
  CHECK(f);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "0 channels for 1 tops");
  lf_free(f);
  f = lf_new("type: 'DummyData' dummy_data_param { shape { dim: 2 } data_filler { type: 'x' } }",
             0, 1);
  CHECK(f);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "data_filler for top 0: unknown filler type 'x'");
  lf_free(f);
}

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

int main(void) {
  NR_RUN(test_input);
  NR_RUN(test_dummy_data);
  NR_RUN(test_split);
  NR_RUN(test_silence);
  NR_RUN(test_flatten);
  NR_RUN(test_reshape_shapes);
  NR_RUN(test_reshape_values_and_errors);
  return NR_TEST_EXIT();
}
