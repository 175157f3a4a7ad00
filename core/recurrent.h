/* recurrent.h: the engine behind RNN and LSTM (Caffe's RecurrentLayer, RNNLayer,
 * LSTMLayer), computed natively instead of through an unrolled net, with Caffe's
 * parameters, blob layout and results.
 *
 * Concept. bottom[0] x is (T, N, ...): T time steps of N independent streams, each step's
 * input the I = count from axis 2 on; bottom[1] cont (T, N) is 0 where a stream starts a
 * new sequence (the previous state is then forgotten) and 1 where it continues; an
 * optional static input x_static (N, ...) is added at every step; with
 * recurrent_param.expose_hidden the initial states are the next bottoms, (1, N, H) each,
 * and the final states extra tops. Without it the final state of one forward is the
 * initial state of the next (zero at first), as Caffe keeps it. Per step t, with
 * hc = cont_t·h_{t-1}:
 *   RNN:  h_t = tanh(W_xh x_t + b_h [+ W_xh_static x_s] + W_hh hc),
 *         o_t = tanh(W_ho h_t + b_o)  → top[0] (T, N, H); states h.
 *   LSTM: gates_t = W_xc x_t + b_c [+ W_xc_static x_s] + W_hc hc (i, f, o, g blocks of H),
 *         then the LSTMUnit step (c_t, h_t) from (c_{t-1}, gates_t, cont_t);
 *         h_t → top[0] (T, N, H); states h, c.
 * Learnable blobs, in Caffe's order and shapes (H = recurrent_param.num_output):
 *   RNN:  W_xh (H, I), b_h (H), [W_xh_static (H, S)], W_hh (H, H), W_ho (H, H), b_o (H)
 *   LSTM: W_xc (4H, I), b_c (4H), [W_xc_static (4H, S)], W_hc (4H, H)
 * filled from recurrent_param.weight_filler / bias_filler. Backward is backpropagation
 * through the T steps; cont takes no gradient.
 *
 * Ownership: the engine's buffers live in l->priv, freed by nr__recur_destroy. The matrix
 * products are nr_gemm's, so results do not depend on the thread count.
 */
#ifndef NR_RECURRENT_H
#define NR_RECURRENT_H

#include <stdint.h>

#include "layer.h"

enum { NR_RECUR_RNN = 0, NR_RECUR_LSTM = 1 };

/* The layer callbacks of a recurrent layer of `kind`. */
nr_status nr__recur_setup(nr_layer *l, int kind, nr_error *err);
nr_status nr__recur_reshape(nr_layer *l, nr_error *err);
nr_status nr__recur_forward(nr_layer *l, nr_error *err);
nr_status nr__recur_backward(nr_layer *l, nr_error *err);
void nr__recur_destroy(nr_layer *l);

/* One LSTM step for n instances of d units (core/layers/lstm_unit.c): c, h (n × d) from
 * c_prev (n × d), the gate inputs x (n × 4d: i, f, o, g) and cont (n). */
void nr__lstm_unit_forward(int64_t n, int64_t d, const float *c_prev, const float *x,
                           const float *cont, float *c, float *h);
/* Its adjoint: dc_prev (n × d) and dx (n × 4d), each optional (NULL), from the step's
 * inputs, its c and the diffs dc, dh of c and h. Overwrites. */
void nr__lstm_unit_backward(int64_t n, int64_t d, const float *c_prev, const float *x,
                            const float *cont, const float *c, const float *dc,
                            const float *dh, float *dc_prev, float *dx);

#endif
