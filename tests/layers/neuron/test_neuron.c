/* Neuron layers (ReLU, PReLU, ELU, Sigmoid, TanH, AbsVal, Power, Exp, Log, BNLL, Dropout,
 * Clip, Swish, Threshold):
 * forward values against the formulas, in-place runs equal to out-of-place runs, error
 * cases, and finite-difference gradient checks. */
#include "layer_fixture.h"

/* ---- generic element-wise checks ---- */

typedef double (*ref_fn)(double);

/* Forward on a (2, 3, 4, 5) bottom uniform in [lo, hi] must match ref element-wise (relative
 * 1e-5); then the element-wise gradient check (kink_range < 0: none). */
static void check_neuron(const char *proto, ref_fn ref, float lo, float hi, float kink_range,
                         float thr) {
  lf *f = lf_new(proto, 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4, 5);
  nr_gradcheck_fill_uniform(f->bottom[0], lo, hi, 7);
  LF_SETUP(f);
  CHECK_SHAPE(f->top[0], 2, 3, 4, 5);
  LF_FORWARD(f);
  for (int64_t i = 0; i < f->bottom[0]->count; i++) {
    const double want = ref(f->bottom[0]->data[i]);
    CHECK_NEAR(f->top[0]->data[i], want, 1e-5 * fmax(1.0, fabs(want)));
  }
  nr_gradcheck_config c = nr_gradcheck_defaults(1e-2f, thr);
  c.kink_range = kink_range;
  nr_status s = nr_gradcheck_layer(f->l, &c, -1, NR_GC_ELTWISE, &f->err);
  if (s != NR_OK) fprintf(stderr, "%s\n", proto);
  CHECK_OK(s, &f->err);
  lf_free(f);
}

/* The same layer in place (top == bottom) must give the same top and bottom diff as out of
 * place, for the same input and top diff. */
static void check_in_place(const char *proto, float lo, float hi) {
  lf *a = lf_new(proto, 1, 1), *b = lf_make(proto, 1, 1, 1);
  CHECK(a && b);
  LF_SHAPE(a->bottom[0], 3, 4, 5);
  LF_SHAPE(b->bottom[0], 3, 4, 5);
  nr_gradcheck_fill_uniform(a->bottom[0], lo, hi, 11);
  nr_gradcheck_fill_uniform(b->bottom[0], lo, hi, 11);
  LF_SETUP(a);
  LF_SETUP(b);
  CHECK(b->top[0] == b->bottom[0]);
  LF_FORWARD(a);
  LF_FORWARD(b);
  const int64_t n = a->top[0]->count;
  for (int64_t i = 0; i < n; i++) CHECK_NEAR(b->top[0]->data[i], a->top[0]->data[i], 0);
  nr_gradcheck_fill_uniform(a->top[0], -1, 1, 13);
  memcpy(a->top[0]->diff, a->top[0]->data, (size_t)n * sizeof(float));
  memcpy(b->top[0]->diff, a->top[0]->data, (size_t)n * sizeof(float));
  /* Restore a's top data (the fill above overwrote it) with the same random draws (Dropout);
   * b's top is its bottom. */
  nr_rng_seed(&a->rng, 1701);
  LF_FORWARD(a);
  a->l->prop_down[0] = b->l->prop_down[0] = true;
  LF_BACKWARD(a);
  LF_BACKWARD(b);
  for (int64_t i = 0; i < n; i++)
    CHECK_NEAR(b->bottom[0]->diff[i], a->bottom[0]->diff[i], 1e-6);
  for (int j = 0; j < a->l->nblobs; j++)
    for (int64_t i = 0; i < a->l->blobs[j]->count; i++)
      CHECK_NEAR(b->l->blobs[j]->diff[i], a->l->blobs[j]->diff[i], 1e-5);
  lf_free(a);
  lf_free(b);
}

/* ---- ReLU ---- */
static double ref_relu(double x) { return x > 0 ? x : 0; }
static double ref_leaky(double x) { return x > 0 ? x : 0.01 * x; }

static void test_relu(void) {
  check_neuron("type: 'ReLU'", ref_relu, -1, 1, 0.01f, 1e-3f);
  check_neuron("type: 'ReLU' relu_param { negative_slope: 0.01 }", ref_leaky, -1, 1, 0.01f,
               1e-3f);
  check_in_place("type: 'ReLU'", -1, 1);
  check_in_place("type: 'ReLU' relu_param { negative_slope: 0.3 }", -1, 1);
}

static void test_relu_hand(void) {
  lf *f = lf_new("type: 'ReLU' relu_param { negative_slope: 0.5 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 4);
  lf_set(f->bottom[0], (const float[]){-2, -0.5f, 0, 3});
  LF_SETUP(f);
  LF_FORWARD(f);
  const float want[] = {-1, -0.25f, 0, 3};
  for (int i = 0; i < 4; i++) CHECK_NEAR(f->top[0]->data[i], want[i], 0);
  lf_set(f->top[0], want); /* unused by backward; keeps data consistent */
  for (int i = 0; i < 4; i++) f->top[0]->diff[i] = 1;
  f->l->prop_down[0] = true;
  LF_BACKWARD(f);
  const float dwant[] = {0.5f, 0.5f, 0.5f, 1};
  for (int i = 0; i < 4; i++) CHECK_NEAR(f->bottom[0]->diff[i], dwant[i], 0);
  /* prop_down false leaves the bottom diff alone. */
  f->bottom[0]->diff[0] = 42;
  f->l->prop_down[0] = false;
  LF_BACKWARD(f);
  CHECK_NEAR(f->bottom[0]->diff[0], 42, 0);
  lf_free(f);
}

/* ---- ELU, Sigmoid, TanH, AbsVal, BNLL ---- */
static double ref_elu(double x) { return x > 0 ? x : 0.5 * (exp(x) - 1); }
static double ref_elu1(double x) { return x > 0 ? x : exp(x) - 1; }
static double ref_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double ref_tanh(double x) { return tanh(x); }
static double ref_abs(double x) { return fabs(x); }
static double ref_bnll(double x) { return log(1 + exp(x)); }

static void test_elu(void) {
  check_neuron("type: 'ELU' elu_param { alpha: 0.5 }", ref_elu, -2, 2, 0.01f, 1e-3f);
  check_neuron("type: 'ELU'", ref_elu1, -2, 2, -1, 1e-3f);
  check_in_place("type: 'ELU' elu_param { alpha: 0.5 }", -2, 2);
}

static void test_sigmoid_tanh(void) {
  check_neuron("type: 'Sigmoid'", ref_sigmoid, -4, 4, -1, 1e-3f);
  check_neuron("type: 'TanH'", ref_tanh, -3, 3, -1, 1e-3f);
  check_in_place("type: 'Sigmoid'", -4, 4);
  check_in_place("type: 'TanH'", -3, 3);
  /* Saturation: no overflow, exact limits. */
  lf *f = lf_new("type: 'Sigmoid'", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 3);
  lf_set(f->bottom[0], (const float[]){-200, 0, 200});
  LF_SETUP(f);
  LF_FORWARD(f);
  CHECK_NEAR(f->top[0]->data[0], 0, 1e-30);
  CHECK_NEAR(f->top[0]->data[1], 0.5, 0);
  CHECK_NEAR(f->top[0]->data[2], 1, 0);
  lf_free(f);
}

static void test_absval(void) {
  check_neuron("type: 'AbsVal'", ref_abs, -1, 1, 0.01f, 1e-3f);
  lf *f = lf_make("type: 'AbsVal'", 1, 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "in place");
  lf_free(f);
}

static void test_bnll(void) {
  check_neuron("type: 'BNLL'", ref_bnll, -3, 3, -1, 1e-3f);
  check_in_place("type: 'BNLL'", -3, 3);
  lf *f = lf_new("type: 'BNLL'", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2);
  lf_set(f->bottom[0], (const float[]){100, -100});
  LF_SETUP(f);
  LF_FORWARD(f);
  CHECK_NEAR(f->top[0]->data[0], 100, 1e-4);
  CHECK(f->top[0]->data[1] >= 0 && f->top[0]->data[1] < 1e-30);
  lf_free(f);
}

/* ---- Power, Exp, Log ---- */
static double ref_pow_frac(double x) { return pow(-2.4 + 0.83 * x, 0.37); }
static double ref_pow2(double x) { return (0.5 + 2 * x) * (0.5 + 2 * x); }
static double ref_pow1(double x) { return -1 + 3 * x; }
static double ref_pow0(double x) { return 1; }
static double ref_pow_scale0(double x) { return pow(2.0, 3.0); }

static void test_power(void) {
  check_neuron("type: 'Power' power_param { power: 0.37 scale: 0.83 shift: -2.4 }",
               ref_pow_frac, 3.5f, 5.0f, -1, 1e-3f);
  check_neuron("type: 'Power' power_param { power: 2 scale: 2 shift: 0.5 }", ref_pow2, -1, 1,
               -1, 1e-3f);
  check_neuron("type: 'Power' power_param { power: 1 scale: 3 shift: -1 }", ref_pow1, -1, 1,
               -1, 1e-3f);
  check_neuron("type: 'Power' power_param { power: 0 scale: 3 shift: -1 }", ref_pow0, -1, 1,
               -1, 1e-3f);
  check_neuron("type: 'Power' power_param { power: 3 scale: 0 shift: 2 }", ref_pow_scale0, -1,
               1, -1, 1e-3f);
  check_in_place("type: 'Power' power_param { power: 0.37 scale: 0.83 shift: -2.4 }", 3.5f, 5);
  check_in_place("type: 'Power' power_param { power: 2 scale: 2 shift: 0.5 }", -1, 1);
  check_in_place("type: 'Power' power_param { power: 3 shift: 1 }", -1, 1);
}

static double ref_exp_default(double x) { return exp(x); }
static double ref_exp2(double x) { return pow(2.0, 1 + 0.5 * x); }
static double ref_log_default(double x) { return log(x); }
static double ref_log2(double x) { return log2(1 + 0.5 * x); }

static void test_exp_log(void) {
  check_neuron("type: 'Exp'", ref_exp_default, -2, 2, -1, 1e-3f);
  check_neuron("type: 'Exp' exp_param { base: 2 scale: 0.5 shift: 1 }", ref_exp2, -2, 2, -1,
               1e-3f);
  check_in_place("type: 'Exp' exp_param { base: 2 scale: 0.5 shift: 1 }", -2, 2);
  check_neuron("type: 'Log'", ref_log_default, 0.5f, 3, -1, 1e-3f);
  check_neuron("type: 'Log' log_param { base: 2 scale: 0.5 shift: 1 }", ref_log2, 0.5f, 3, -1,
               1e-3f);
  check_in_place("type: 'Log' log_param { base: 2 scale: 0.5 shift: 1 }", 0.5f, 3);

  lf *f = lf_new("type: 'Exp' exp_param { base: -3 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "strictly positive");
  lf_free(f);
  f = lf_new("type: 'Log' log_param { base: 0 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "strictly positive");
  lf_free(f);
}

/* ---- PReLU ---- */
static void test_prelu_forward(void) {
  lf *f = lf_new("type: 'PReLU'", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 2);
  LF_SETUP(f);
  CHECK_INT_EQ(f->l->nblobs, 1);
  CHECK_SHAPE(f->l->blobs[0], 3);
  for (int c = 0; c < 3; c++) CHECK_NEAR(f->l->blobs[0]->data[c], 0.25, 0);
  lf_set(f->l->blobs[0], (const float[]){0.1f, 0.2f, 0.3f});
  for (int i = 0; i < 12; i++) f->bottom[0]->data[i] = (i % 2) ? 1.0f + i : -1.0f - i;
  LF_FORWARD(f);
  for (int i = 0; i < 12; i++) {
    const int c = (i / 2) % 3;
    const float x = f->bottom[0]->data[i];
    CHECK_NEAR(f->top[0]->data[i], x > 0 ? x : x * 0.1f * (c + 1), 1e-6);
  }
  lf_free(f);

  f = lf_new("type: 'PReLU' prelu_param { channel_shared: true filler { type: 'constant' "
             "value: 0.5 } }",
             1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3);
  LF_SETUP(f);
  CHECK_INT_EQ(f->l->blobs[0]->num_axes, 0);
  CHECK_INT_EQ(f->l->blobs[0]->count, 1);
  CHECK_NEAR(f->l->blobs[0]->data[0], 0.5, 0);
  lf_free(f);

  f = lf_new("type: 'PReLU'", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 5);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "bottom[0] has 1 axes, expected at least 2");
  lf_free(f);
}

static void test_prelu_grad(void) {
  const char *protos[] = {
      "type: 'PReLU' prelu_param { filler { type: 'uniform' min: 0.1 max: 0.5 } }",
      "type: 'PReLU' prelu_param { channel_shared: true filler { type: 'gaussian' } }"};
  for (int k = 0; k < 2; k++) {
    lf *f = lf_new(protos[k], 1, 1);
    CHECK(f);
    LF_SHAPE(f->bottom[0], 2, 3, 4, 5);
    nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 3);
    LF_SETUP(f);
    LF_GRAD_KINK(f, 1e-2f, 1e-3f, 0.01f, -1, NR_GC_EXHAUSTIVE);
    lf_free(f);
  }
  check_in_place("type: 'PReLU' prelu_param { filler { type: 'uniform' min: 0.1 max: 0.5 } }",
                 -1, 1);
}

/* ---- Dropout ---- */
static void test_dropout_forward(void) {
  lf *f = lf_new("type: 'Dropout' dropout_param { dropout_ratio: 0.3 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 100, 100);
  nr_gradcheck_fill_uniform(f->bottom[0], 1, 2, 5);
  LF_SETUP(f);
  LF_FORWARD(f);
  int64_t kept = 0;
  const float scale = 1.0f / 0.7f;
  for (int64_t i = 0; i < 10000; i++) {
    const float x = f->bottom[0]->data[i], y = f->top[0]->data[i];
    if (y != 0) {
      kept++;
      CHECK_NEAR(y, x * scale, 1e-5);
    }
  }
  /* 10000 draws at p_keep 0.7: sd ~46; allow 5 sd. */
  CHECK(kept > 7000 - 230 && kept < 7000 + 230);
  /* Another forward draws a new mask. */
  float first[16];
  memcpy(first, f->top[0]->data, sizeof first);
  LF_FORWARD(f);
  CHECK(memcmp(first, f->top[0]->data, sizeof first) != 0);
  lf_free(f);

  /* TEST phase: identity, forward and backward. */
  f = lf_new("type: 'Dropout' phase: TEST", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 50);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 5);
  LF_SETUP(f);
  LF_FORWARD(f);
  for (int i = 0; i < 50; i++) CHECK_NEAR(f->top[0]->data[i], f->bottom[0]->data[i], 0);
  for (int i = 0; i < 50; i++) f->top[0]->diff[i] = (float)i;
  f->l->prop_down[0] = true;
  LF_BACKWARD(f);
  for (int i = 0; i < 50; i++) CHECK_NEAR(f->bottom[0]->diff[i], i, 0);
  lf_free(f);

  f = lf_new("type: 'Dropout' dropout_param { dropout_ratio: 1 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 5);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "dropout_ratio");
  lf_free(f);
}

static void test_dropout_grad(void) {
  lf *f = lf_new("type: 'Dropout'", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4, 5);
  nr_gradcheck_fill_gaussian(f->bottom[0], 0, 1, 9);
  LF_SETUP(f);
  LF_GRAD(f, 1e-2f, 1e-3f, -1, NR_GC_ELTWISE);
  lf_free(f);
  check_in_place("type: 'Dropout' dropout_param { dropout_ratio: 0.4 }", -1, 1);
}

/* ---- Clip, Swish, Threshold ---- */
static double ref_clip1(double x) { return x < -1 ? -1 : x > 1 ? 1 : x; }
static double ref_swish(double x) { return x / (1 + exp(-x)); }
static double ref_swish_b(double x) { return x / (1 + exp(-0.5 * x)); }

static void test_clip(void) {
  /* by hand, asymmetric bounds; the bounds themselves pass the gradient */
  lf *f = lf_new("type: 'Clip' clip_param { min: -1 max: 2 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 6);
  lf_set(f->bottom[0], (const float[]){-3, -1, -0.5f, 0, 2, 5});
  LF_SETUP(f);
  LF_FORWARD(f);
  const float want[] = {-1, -1, -0.5f, 0, 2, 2};
  for (int i = 0; i < 6; i++) CHECK_NEAR(f->top[0]->data[i], want[i], 0);
  for (int i = 0; i < 6; i++) f->top[0]->diff[i] = (float)(i + 1);
  f->l->prop_down[0] = true;
  LF_BACKWARD(f);
  const float dwant[] = {0, 2, 3, 4, 5, 0};
  for (int i = 0; i < 6; i++) CHECK_NEAR(f->bottom[0]->diff[i], dwant[i], 0);
  lf_free(f);
  /* symmetric bounds: values, then the gradient away from the kinks at |x| = 1 */
  f = lf_new("type: 'Clip' clip_param { min: -1 max: 1 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 3, 4);
  nr_gradcheck_fill_uniform(f->bottom[0], -2, 2, 5);
  LF_SETUP(f);
  LF_FORWARD(f);
  for (int64_t i = 0; i < f->bottom[0]->count; i++)
    CHECK_NEAR(f->top[0]->data[i], ref_clip1(f->bottom[0]->data[i]), 0);
  nr_gradcheck_config c = nr_gradcheck_defaults(1e-2f, 1e-3f);
  c.kink = 1;
  c.kink_range = 0.02f;
  CHECK_OK(nr_gradcheck_layer(f->l, &c, -1, NR_GC_ELTWISE, &f->err), &f->err);
  lf_free(f);
  /* in place: same results away from the bounds */
  check_in_place("type: 'Clip' clip_param { min: -0.5 max: 0.7 }", -1, 1);
  /* errors: a bound missing, min > max */
  f = lf_new("type: 'Clip' clip_param { min: -1 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "clip_param { min: .. max: .. } is required");
  lf_free(f);
  f = lf_new("type: 'Clip' clip_param { min: 1 max: 0 }", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "min 1 is greater than max 0");
  lf_free(f);
}

static void test_swish(void) {
  check_neuron("type: 'Swish'", ref_swish, -4, 4, -1, 1e-3f);
  check_neuron("type: 'Swish' swish_param { beta: 0.5 }", ref_swish_b, -4, 4, -1, 1e-3f);
  /* by hand: swish(2) with beta 1 = 2·σ(2); its slope σ(2)(1 + 2(1 − σ(2))) */
  lf *f = lf_new("type: 'Swish'", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1);
  f->bottom[0]->data[0] = 2;
  LF_SETUP(f);
  LF_FORWARD(f);
  CHECK_NEAR(f->top[0]->data[0], 1.7615942, 1e-6);
  f->top[0]->diff[0] = 1;
  f->l->prop_down[0] = true;
  LF_BACKWARD(f);
  CHECK_NEAR(f->bottom[0]->diff[0], 0.8807971 * (1 + 2 * (1 - 0.8807971)), 1e-6);
  lf_free(f);
  check_in_place("type: 'Swish' swish_param { beta: 1.5 }", -3, 3);
}

static void test_threshold(void) {
  lf *f = lf_make("type: 'Threshold' threshold_param { threshold: 0.5 }", 1, 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 5);
  lf_set(f->bottom[0], (const float[]){-1, 0.5f, 0.51f, 3, 0});
  LF_SETUP(f);
  LF_FORWARD(f);
  const float want[] = {0, 0, 1, 1, 0};
  for (int i = 0; i < 5; i++) CHECK_NEAR(f->top[0]->data[i], want[i], 0);
  lf_free(f);
  f = lf_new("type: 'Threshold'", 1, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 2, 2);
  lf_set(f->bottom[0], (const float[]){-0.1f, 0, 1e-6f, 7});
  LF_SETUP(f);
  LF_FORWARD(f);
  CHECK_NEAR(f->top[0]->data[0] + f->top[0]->data[1], 0, 0);
  CHECK_NEAR(f->top[0]->data[2] + f->top[0]->data[3], 2, 0);
  /* no gradient: asking for one is an error, not asking is fine */
  f->l->prop_down[0] = false;
  LF_BACKWARD(f);
  f->l->prop_down[0] = true;
  CHECK_INT_EQ(f->l->type->backward(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "no gradient");
  lf_free(f);
}

int main(void) {
  NR_RUN(test_relu);
  NR_RUN(test_relu_hand);
  NR_RUN(test_elu);
  NR_RUN(test_sigmoid_tanh);
  NR_RUN(test_absval);
  NR_RUN(test_bnll);
  NR_RUN(test_power);
  NR_RUN(test_exp_log);
  NR_RUN(test_prelu_forward);
  NR_RUN(test_prelu_grad);
  NR_RUN(test_dropout_forward);
  NR_RUN(test_dropout_grad);
  NR_RUN(test_clip);
  NR_RUN(test_swish);
  NR_RUN(test_threshold);
  return NR_TEST_EXIT();
}
