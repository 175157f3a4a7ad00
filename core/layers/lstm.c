/* LSTM: Caffe's LSTMLayer computed natively (core/recurrent.c has the engine shared with
 * RNN, recurrent.h the full description). Per time step t of x (T, N, ...) with
 * continuation flags cont (T, N):
 *   gates_t = W_xc x_t + b_c [+ W_xc_static x_static] + W_hc (cont_t · h_{t−1})
 *   (c_t, h_t) = LSTMUnit(c_{t−1}, gates_t, cont_t)     top[0] = h, (T, N, num_output)
 * with the gate blocks in Caffe's order i, f, o, g. Learnable blobs W_xc (4H, I), b_c
 * (4H), [W_xc_static (4H, S)], W_hc (4H, H) as Caffe's. With
 * recurrent_param.expose_hidden, h_0 and c_0 are bottoms and h_T and c_T tops; otherwise
 * the final states carry over to the next forward.
 */
#include "layer.h"
#include "recurrent.h"

static nr_status lstm_setup(nr_layer *l, nr_error *err) {
  return nr__recur_setup(l, NR_RECUR_LSTM, err);
}

const nr_layer_type nr_layer_lstm = {
    .name = "LSTM", .min_bottoms = 2, .max_bottoms = 5, .min_tops = 1, .max_tops = 3,
    .no_force_backward = 1u << 1,
    .setup = lstm_setup, .reshape = nr__recur_reshape, .forward = nr__recur_forward,
    .backward = nr__recur_backward, .destroy = nr__recur_destroy};
