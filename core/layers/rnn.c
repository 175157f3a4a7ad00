/* RNN: Caffe's RNNLayer, a simple recurrent net computed natively (core/recurrent.c has
 * the engine shared with LSTM, recurrent.h the full description). Per time step t of
 * x (T, N, ...) with continuation flags cont (T, N):
 *   h_t = tanh(W_xh x_t + b_h [+ W_xh_static x_static] + W_hh (cont_t · h_{t−1}))
 *   o_t = tanh(W_ho h_t + b_o)            top[0] = o, (T, N, num_output)
 * Learnable blobs W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o as Caffe's. With
 * recurrent_param.expose_hidden, h_0 is a bottom and h_T a top; otherwise h_T carries
 * over to the next forward.
 */
#include "layer.h"
#include "recurrent.h"

static nr_status rnn_setup(nr_layer *l, nr_error *err) {
  return nr__recur_setup(l, NR_RECUR_RNN, err);
}

const nr_layer_type nr_layer_rnn = {
    .name = "RNN", .min_bottoms = 2, .max_bottoms = 4, .min_tops = 1, .max_tops = 2,
    .no_force_backward = 1u << 1,
    .setup = rnn_setup, .reshape = nr__recur_reshape, .forward = nr__recur_forward,
    .backward = nr__recur_backward, .destroy = nr__recur_destroy};
