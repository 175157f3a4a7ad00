/* LSTMUnit: Caffe's LSTMUnitLayer, one step of an LSTM for N instances of width D.
 * bottom[0] c_prev (1, N, D), bottom[1] the gate inputs (1, N, 4D) in the order i, f, o,
 * g, bottom[2] the continuation flags cont (1, N). Per instance and unit:
 *   i = σ(x_i), f = cont·σ(x_f) (0 where cont is 0), o = σ(x_o), g = tanh(x_g)
 *   c = f·c_prev + i·g  (top[0]),  h = o·tanh(c)  (top[1])
 * Backward (Caffe's, exact for cont in {0, 1}): with dc' = dc + dh·o·(1 − tanh²c),
 *   dc_prev = dc'·f, dx_i = dc'·g·i(1 − i), dx_f = dc'·c_prev·f(1 − f),
 *   dx_o = dh·tanh c·o(1 − o), dx_g = dc'·i·(1 − g²); no gradient to cont.
 * The step itself (nr__lstm_unit_forward/backward) also runs inside LSTM (lstm.c).
 */
#include <math.h>

#include "layer.h"
#include "recurrent.h"

static float sigm(float v) { return 1.0f / (1.0f + expf(-v)); }

/* The gates of unit j of an instance whose 4·d gate inputs start at x. */
static void gates(const float *x, int64_t d, int64_t j, float cont, float *i, float *f,
                  float *o, float *g) {
  *i = sigm(x[j]);
  *f = cont == 0.0f ? 0.0f : cont * sigm(x[d + j]);
  *o = sigm(x[2 * d + j]);
  *g = tanhf(x[3 * d + j]);
}

void nr__lstm_unit_forward(int64_t n, int64_t d, const float *c_prev, const float *x,
                           const float *cont, float *c, float *h) {
  for (int64_t k = 0; k < n; k++)
    for (int64_t j = 0; j < d; j++) {
      float i, f, o, g;
      gates(x + k * 4 * d, d, j, cont[k], &i, &f, &o, &g);
      const float cv = f * c_prev[k * d + j] + i * g;
      c[k * d + j] = cv;
      h[k * d + j] = o * tanhf(cv);
    }
}

void nr__lstm_unit_backward(int64_t n, int64_t d, const float *c_prev, const float *x,
                            const float *cont, const float *c, const float *dc,
                            const float *dh, float *dc_prev, float *dx) {
  for (int64_t k = 0; k < n; k++)
    for (int64_t j = 0; j < d; j++) {
      const int64_t at = k * d + j;
      float i, f, o, g;
      gates(x + k * 4 * d, d, j, cont[k], &i, &f, &o, &g);
      const float tc = tanhf(c[at]);
      const float dct = dc[at] + dh[at] * o * (1 - tc * tc);
      if (dc_prev) dc_prev[at] = dct * f;
      if (!dx) continue;
      float *dxk = dx + k * 4 * d;
      dxk[j] = dct * g * i * (1 - i);
      dxk[d + j] = dct * c_prev[at] * f * (1 - f);
      dxk[2 * d + j] = dh[at] * tc * o * (1 - o);
      dxk[3 * d + j] = dct * i * (1 - g * g);
    }
}

static nr_status lu_setup(nr_layer *l, nr_error *err) {
  for (int t = 0; t < 2; t++)
    for (int b = 0; b < 3; b++)
      if (l->top[t] == l->bottom[b])
        return nr_err_set(err, NR_ERR_INPUT, "cannot run in place (top[%d] is bottom[%d])", t, b);
  return NR_OK;
}

static nr_status lu_reshape(nr_layer *l, nr_error *err) {
  const nr_blob *cp = l->bottom[0], *x = l->bottom[1], *cont = l->bottom[2];
  if (cp->num_axes != 3 || cp->shape[0] != 1)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[0] (c_prev) must be (1, N, D), has %d axes",
                      cp->num_axes);
  const int64_t n = cp->shape[1], d = cp->shape[2];
  if (x->num_axes != 3 || x->shape[0] != 1 || x->shape[1] != n || x->shape[2] != 4 * d)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[1] (the gate inputs) must be (1, %lld, %lld): N as c_prev and 4 "
                      "gates of its %lld units",
                      (long long)n, (long long)(4 * d), (long long)d);
  if (cont->num_axes != 2 || cont->shape[0] != 1 || cont->shape[1] != n)
    return nr_err_set(err, NR_ERR_INPUT, "bottom[2] (cont) must be (1, %lld)", (long long)n);
  NR_TRY(nr_blob_reshape_like(l->top[0], cp, err));
  return nr_blob_reshape_like(l->top[1], cp, err);
}

static nr_status lu_forward(nr_layer *l, nr_error *err) {
  const nr_blob *cp = l->bottom[0];
  nr__lstm_unit_forward(cp->shape[1], cp->shape[2], cp->data, l->bottom[1]->data,
                        l->bottom[2]->data, l->top[0]->data, l->top[1]->data);
  return NR_OK;
}

static nr_status lu_backward(nr_layer *l, nr_error *err) {
  if (l->prop_down[2])
    return nr_err_set(err, NR_ERR_INPUT,
                      "cannot backpropagate to the sequence continuation flags (bottom[2])");
  if (!l->prop_down[0] && !l->prop_down[1]) return NR_OK;
  const nr_blob *cp = l->bottom[0];
  nr__lstm_unit_backward(cp->shape[1], cp->shape[2], cp->data, l->bottom[1]->data,
                         l->bottom[2]->data, l->top[0]->data, l->top[0]->diff,
                         l->top[1]->diff, l->prop_down[0] ? l->bottom[0]->diff : NULL,
                         l->prop_down[1] ? l->bottom[1]->diff : NULL);
  return NR_OK;
}

const nr_layer_type nr_layer_lstm_unit = {
    .name = "LSTMUnit", .min_bottoms = 3, .max_bottoms = 3, .min_tops = 2, .max_tops = 2,
    .no_force_backward = 1u << 2,
    .setup = lu_setup, .reshape = lu_reshape, .forward = lu_forward, .backward = lu_backward};
