/* Recurrent layers: LSTMUnit by hand; RNN and LSTM against a direct step-by-step
 * reference (sequence starts, a static input, exposed states, the state carried between
 * forwards), Caffe's blob shapes, errors, gradient checks through time. */
#include "layer_fixture.h"

static double sg(double v) { return 1 / (1 + exp(-v)); }

/* ---- LSTMUnit ---- */

static void test_lstm_unit(void) {
  lf *f = lf_new("type: 'LSTMUnit'", 3, 2);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 1, 2, 1);
  LF_SHAPE(f->bottom[1], 1, 2, 4);
  LF_SHAPE(f->bottom[2], 1, 2);
  lf_set(f->bottom[0], (const float[]){0.5f, -1});
  lf_set(f->bottom[1], (const float[]){0, 0, 0, 0, 1, 2, -1, 0.5f});
  lf_set(f->bottom[2], (const float[]){1, 0});
  LF_SETUP(f);
  CHECK(f->l->type->no_force_backward & 4u);
  CHECK_SHAPE(f->top[0], 1, 2, 1);
  CHECK_SHAPE(f->top[1], 1, 2, 1);
  LF_FORWARD(f);
  /* instance 0: i = f = o = 0.5, g = 0: c = 0.25; instance 1, cont 0: f = 0 */
  CHECK_NEAR(f->top[0]->data[0], 0.25, 1e-7);
  CHECK_NEAR(f->top[1]->data[0], 0.5 * tanh(0.25), 1e-7);
  const double c1 = sg(1) * tanh(0.5);
  CHECK_NEAR(f->top[0]->data[1], c1, 1e-6);
  CHECK_NEAR(f->top[1]->data[1], sg(-1) * tanh(c1), 1e-6);
  /* backward by hand for instance 0 with dc = 1, dh = 0: dc_prev = f = 0.5, dx_g = i = 0.5 */
  f->top[0]->diff[0] = 1;
  f->top[0]->diff[1] = 0;
  f->top[1]->diff[0] = f->top[1]->diff[1] = 0;
  f->l->prop_down[0] = f->l->prop_down[1] = true;
  f->l->prop_down[2] = false;
  LF_BACKWARD(f);
  CHECK_NEAR(f->bottom[0]->diff[0], 0.5, 1e-7);
  CHECK_NEAR(f->bottom[1]->diff[3], 0.5, 1e-7);
  CHECK_NEAR(f->bottom[1]->diff[1], 0.5 * 0.25, 1e-7); /* dx_f = c_prev·f(1 − f) */
  /* gradients, cont 1 and 0 */
  LF_SHAPE(f->bottom[0], 1, 3, 2);
  LF_SHAPE(f->bottom[1], 1, 3, 8);
  LF_SHAPE(f->bottom[2], 1, 3);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 101);
  nr_gradcheck_fill_uniform(f->bottom[1], -2, 2, 102);
  lf_set(f->bottom[2], (const float[]){1, 0, 1});
  CHECK_OK(f->l->type->reshape(f->l, &f->err), &f->err);
  LF_GRAD(f, 1e-2f, 1e-3f, 0, NR_GC_ALL);
  LF_GRAD(f, 1e-2f, 1e-3f, 1, NR_GC_ALL);
  f->l->prop_down[2] = true;
  CHECK_INT_EQ(f->l->type->backward(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "continuation");
  LF_SHAPE(f->bottom[1], 1, 3, 7);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "bottom[1] (the gate inputs) must be (1, 3, 8)");
  lf_free(f);
}

/* ---- RNN and LSTM against a reference ---- */

enum { T_ = 3, N_ = 2, I_ = 3, H_ = 2, S_ = 2 };

/* A direct computation of Caffe's unrolled nets. W: the layer's blobs in order.
 * h0/c0 (N, H) are the initial states; writes the outputs (T, N, H) and the final
 * states back into h0/c0. */
static void recur_ref(bool lstm, bool stat, nr_blob **W, const float *x, const float *cont,
                      const float *xs, double *h0, double *c0, double *out) {
  const int G = lstm ? 4 * H_ : H_;
  const float *wx = W[0]->data, *bx = W[1]->data, *ws = stat ? W[2]->data : NULL;
  const float *wh = W[stat ? 3 : 2]->data;
  for (int t = 0; t < T_; t++) {
    double hn[N_][H_], cn[N_][H_];
    for (int n = 0; n < N_; n++) {
      double pre[4 * H_];
      const double ct = cont[t * N_ + n];
      for (int g = 0; g < G; g++) {
        double v = bx[g];
        for (int k = 0; k < I_; k++) v += (double)wx[g * I_ + k] * x[(t * N_ + n) * I_ + k];
        if (stat)
          for (int k = 0; k < S_; k++) v += (double)ws[g * S_ + k] * xs[n * S_ + k];
        for (int k = 0; k < H_; k++) v += (double)wh[g * H_ + k] * ct * h0[n * H_ + k];
        pre[g] = v;
      }
      for (int j = 0; j < H_; j++) {
        if (lstm) {
          const double i = sg(pre[j]), f = ct * sg(pre[H_ + j]), o = sg(pre[2 * H_ + j]),
                       g = tanh(pre[3 * H_ + j]);
          cn[n][j] = f * c0[n * H_ + j] + i * g;
          hn[n][j] = o * tanh(cn[n][j]);
        } else {
          hn[n][j] = tanh(pre[j]);
        }
      }
    }
    for (int n = 0; n < N_; n++)
      for (int j = 0; j < H_; j++) {
        h0[n * H_ + j] = hn[n][j];
        if (lstm) c0[n * H_ + j] = cn[n][j];
      }
    for (int n = 0; n < N_; n++)
      for (int j = 0; j < H_; j++) {
        double o = hn[n][j];
        if (!lstm) {
          const float *wo = W[stat ? 4 : 3]->data, *bo = W[stat ? 5 : 4]->data;
          o = bo[j];
          for (int k = 0; k < H_; k++) o += (double)wo[j * H_ + k] * hn[n][k];
          o = tanh(o);
        }
        out[(t * N_ + n) * H_ + j] = o;
      }
  }
}

static lf *recur_layer(bool lstm, bool stat, bool expose) {
  char proto[300];
  snprintf(proto, sizeof proto,
           "type: '%s' recurrent_param { num_output: %d expose_hidden: %s "
           "weight_filler { type: 'uniform' min: -0.8 max: 0.8 } "
           "bias_filler { type: 'uniform' min: -0.3 max: 0.3 } }",
           lstm ? "LSTM" : "RNN", H_, expose ? "true" : "false");
  const int nstate = expose ? (lstm ? 2 : 1) : 0;
  lf *f = lf_new(proto, 2 + (stat ? 1 : 0) + nstate, 1 + nstate);
  if (!f) return NULL;
  LF_SHAPE(f->bottom[0], T_, N_, I_);
  LF_SHAPE(f->bottom[1], T_, N_);
  nr_gradcheck_fill_uniform(f->bottom[0], -1, 1, 111);
  /* stream 0 starts at t 0 and again at t 2; stream 1 continues from the start */
  lf_set(f->bottom[1], (const float[]){0, 1, 1, 1, 0, 1});
  int b = 2;
  if (stat) {
    LF_SHAPE(f->bottom[b], N_, S_);
    nr_gradcheck_fill_uniform(f->bottom[b], -1, 1, 112);
    b++;
  }
  for (int k = 0; k < nstate; k++, b++) {
    LF_SHAPE(f->bottom[b], 1, N_, H_);
    nr_gradcheck_fill_uniform(f->bottom[b], -1, 1, 113 + (uint64_t)k);
  }
  return f;
}

static void check_recur(bool lstm, bool stat, bool expose) {
  lf *f = recur_layer(lstm, stat, expose);
  CHECK(f);
  LF_SETUP(f);
  const int G = lstm ? 4 * H_ : H_;
  CHECK_INT_EQ(f->l->nblobs, (lstm ? 3 : 5) + (stat ? 1 : 0));
  CHECK_SHAPE(f->l->blobs[0], G, I_);
  CHECK_SHAPE(f->l->blobs[1], G);
  if (stat) CHECK_SHAPE(f->l->blobs[2], G, S_);
  CHECK_SHAPE(f->l->blobs[stat ? 3 : 2], G, H_);
  if (!lstm) {
    CHECK_SHAPE(f->l->blobs[stat ? 4 : 3], H_, H_);
    CHECK_SHAPE(f->l->blobs[stat ? 5 : 4], H_);
  }
  CHECK_SHAPE(f->top[0], T_, N_, H_);
  const int sb = 2 + (stat ? 1 : 0);
  double h0[N_ * H_] = {0}, c0[N_ * H_] = {0}, out[T_ * N_ * H_];
  if (expose) {
    for (int i = 0; i < N_ * H_; i++) h0[i] = f->bottom[sb]->data[i];
    if (lstm)
      for (int i = 0; i < N_ * H_; i++) c0[i] = f->bottom[sb + 1]->data[i];
  }
  LF_FORWARD(f);
  recur_ref(lstm, stat, f->l->blobs, f->bottom[0]->data, f->bottom[1]->data,
            stat ? f->bottom[2]->data : NULL, h0, c0, out);
  for (int i = 0; i < T_ * N_ * H_; i++) CHECK_NEAR(f->top[0]->data[i], out[i], 1e-5);
  if (expose) {
    CHECK_SHAPE(f->top[1], 1, N_, H_);
    for (int i = 0; i < N_ * H_; i++) CHECK_NEAR(f->top[1]->data[i], h0[i], 1e-5);
    if (lstm)
      for (int i = 0; i < N_ * H_; i++) CHECK_NEAR(f->top[2]->data[i], c0[i], 1e-5);
  } else {
    /* the final state carries over: a second forward continuing every stream starts
     * from it */
    lf_set(f->bottom[1], (const float[]){1, 1, 1, 1, 1, 1});
    LF_FORWARD(f);
    recur_ref(lstm, stat, f->l->blobs, f->bottom[0]->data, f->bottom[1]->data,
              stat ? f->bottom[2]->data : NULL, h0, c0, out);
    for (int i = 0; i < T_ * N_ * H_; i++) CHECK_NEAR(f->top[0]->data[i], out[i], 1e-5);
    lf_set(f->bottom[1], (const float[]){0, 0, 1, 1, 0, 1}); /* fresh starts for the checks */
  }
  /* gradients: x and every parameter, then each other bottom that takes one */
  LF_GRAD(f, 1e-2f, 1e-2f, 0, NR_GC_ALL);
  for (int b = 2; b < f->nb; b++) LF_GRAD(f, 1e-2f, 1e-2f, b, NR_GC_ALL);
  f->l->prop_down[1] = true;
  CHECK_INT_EQ(f->l->type->backward(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "continuation");
  lf_free(f);
}

static void test_rnn(void) {
  check_recur(false, false, false);
  check_recur(false, true, false);
  check_recur(false, false, true);
  check_recur(false, true, true);
}

static void test_lstm(void) {
  check_recur(true, false, false);
  check_recur(true, true, false);
  check_recur(true, false, true);
  check_recur(true, true, true);
}

static void test_recur_errors(void) {
  lf *f = lf_new("type: 'LSTM'", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 3, 2, 4);
  LF_SHAPE(f->bottom[1], 3, 2);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "num_output must be given");
  lf_free(f);
  f = lf_new("type: 'RNN' recurrent_param { num_output: 2 }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 3, 2, 4);
  LF_SHAPE(f->bottom[1], 3, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "bottom[1] (cont) must be (3, 2)");
  lf_free(f);
  f = lf_new("type: 'LSTM' recurrent_param { num_output: 2 expose_hidden: true }", 3, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 3, 2, 4);
  LF_SHAPE(f->bottom[1], 3, 2);
  LF_SHAPE(f->bottom[2], 1, 2, 2);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "4 to 5 bottoms, got 3");
  lf_free(f);
  f = lf_new("type: 'RNN' recurrent_param { num_output: 2 expose_hidden: true }", 3, 2);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 3, 2, 4);
  LF_SHAPE(f->bottom[1], 3, 2);
  LF_SHAPE(f->bottom[2], 1, 2, 3);
  LF_SETUP_FAILS(f, NR_ERR_INPUT, "bottom[2] (initial h) must be (1, 2, 2)");
  lf_free(f);
  f = lf_new("type: 'RNN' recurrent_param { num_output: 2 }", 2, 1);
  CHECK(f);
  LF_SHAPE(f->bottom[0], 3, 2, 4);
  LF_SHAPE(f->bottom[1], 3, 2);
  LF_SETUP(f);
  LF_SHAPE(f->bottom[0], 3, 2, 5);
  CHECK_INT_EQ(f->l->type->reshape(f->l, &f->err), NR_ERR_INPUT);
  CHECK_CONTAINS(f->err.msg, "5 inputs per step, the weights take 4");
  lf_free(f);
}

int main(void) {
  NR_RUN(test_lstm_unit);
  NR_RUN(test_rnn);
  NR_RUN(test_lstm);
  NR_RUN(test_recur_errors);
  return NR_TEST_EXIT();
}
