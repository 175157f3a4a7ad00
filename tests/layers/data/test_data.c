/* Data layers that need no database: Input and DummyData: top shapes, fillers (refilled or
 * not), error messages. (Data and HDF5Data read LMDB and HDF5 files: tests/data.) */
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

int main(void) {
  NR_RUN(test_input);
  NR_RUN(test_dummy_data);
  return NR_TEST_EXIT();
}
