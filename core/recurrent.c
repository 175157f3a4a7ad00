/* recurrent.c: RNN and LSTM computed step by step (see recurrent.h). */
#include "recurrent.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "filler.h"
#include "nr_math.h"

static const Caffe__RecurrentParameter default_param = CAFFE__RECURRENT_PARAMETER__INIT;

typedef struct recur {
  int kind;
  bool expose, has_static;
  int nstate;                    /* 1 (h) or 2 (h, c) */
  int static_bottom, state_bottom;
  int64_t T, N, H;  /* time steps, streams, num_output */
  int64_t ni, S, G; /* inputs per step, static inputs, width of a pre-activation (H or 4H) */
  int w_x, b_x, w_s, w_h, w_o, b_o; /* learnable blob indices, -1 = none */
  /* per shape, (re)allocated by reshape */
  float *pre;   /* (T, N, G) pre-activations */
  float *hs;    /* (T + 1, N, H): h_0 .. h_T */
  float *cs;    /* LSTM: (T + 1, N, H): c_0 .. c_T */
  float *hc;    /* (T, N, H): cont_t · h_{t-1} */
  float *dpre;  /* (T, N, G) */
  float *dout;  /* (T, N, H): the diff reaching each h_t from the top (RNN: through o_t) */
  float *sx;    /* (N, G): the static input's contribution */
  float *dh, *dc, *tmp, *tmp2; /* (N, H) running diffs */
  float *carry[2]; /* (N, H) states kept between forwards (not exposed) */
  int64_t carry_n;
} recur;

static const Caffe__RecurrentParameter *rparam(const nr_layer *l) {
  return l->param->recurrent_param ? l->param->recurrent_param : &default_param;
}

static nr_status add_blob(nr_layer *l, int64_t d0, int64_t d1, int naxes,
                          const Caffe__FillerParameter *fp, const char *what, int *idx,
                          nr_error *err) {
  const int64_t dims[2] = {d0, d1};
  nr_blob *b = NULL;
  NR_TRY(nr_layer_add_param(l, naxes, dims, &b, err));
  *idx = l->nblobs - 1;
  if (nr_fill(b, fp, l->ctx ? l->ctx->rng : NULL, err) != NR_OK)
    return nr_err_prefix(err, "%s", what);
  return NR_OK;
}

nr_status nr__recur_setup(nr_layer *l, int kind, nr_error *err) {
  const Caffe__RecurrentParameter *p = rparam(l);
  recur *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  l->priv = q;
  q->kind = kind;
  q->nstate = kind == NR_RECUR_LSTM ? 2 : 1;
  q->expose = p->expose_hidden;
  q->w_x = q->b_x = q->w_s = q->w_h = q->w_o = q->b_o = -1;
  if (p->num_output == 0)
    return nr_err_set(err, NR_ERR_INPUT, "recurrent_param.num_output must be given and > 0");
  const int exposed = q->expose ? q->nstate : 0;
  const char *states = kind == NR_RECUR_LSTM ? "h_0 and c_0" : "h_0";
  if (l->nbottom < 2 + exposed || l->nbottom > 3 + exposed)
    return nr_err_set(err, NR_ERR_INPUT,
                      "takes x, cont, an optional static input%s%s: %d to %d bottoms, got %d",
                      q->expose ? " and " : "", q->expose ? states : "", 2 + exposed,
                      3 + exposed, l->nbottom);
  if (l->ntop != 1 + exposed)
    return nr_err_set(err, NR_ERR_INPUT, "needs %d top%s (the output%s%s), got %d",
                      1 + exposed, exposed ? "s" : "", exposed ? " and the final " : "",
                      exposed ? (kind == NR_RECUR_LSTM ? "h and c" : "h") : "", l->ntop);
  q->has_static = l->nbottom > 2 + exposed;
  q->static_bottom = q->has_static ? 2 : -1;
  q->state_bottom = 2 + (q->has_static ? 1 : 0);
  const nr_blob *x = l->bottom[0];
  if (x->num_axes < 2)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[0] must have at least 2 axes (time steps, streams, ...), has %d",
                      x->num_axes);
  q->H = p->num_output;
  q->G = kind == NR_RECUR_LSTM ? 4 * q->H : q->H;
  q->ni = nr_blob_count_range(x, 2, x->num_axes);
  if (q->has_static) {
    const nr_blob *s = l->bottom[q->static_bottom];
    if (s->num_axes < 1)
      return nr_err_set(err, NR_ERR_INPUT, "the static input (bottom[2]) has 0 axes");
    q->S = nr_blob_count_range(s, 1, s->num_axes);
  }
  const bool lstm = kind == NR_RECUR_LSTM;
  const Caffe__FillerParameter *wf = p->weight_filler, *bf = p->bias_filler;
  NR_TRY(add_blob(l, q->G, q->ni, 2, wf, lstm ? "W_xc" : "W_xh", &q->w_x, err));
  NR_TRY(add_blob(l, q->G, 0, 1, bf, lstm ? "b_c" : "b_h", &q->b_x, err));
  if (q->has_static)
    NR_TRY(add_blob(l, q->G, q->S, 2, wf, lstm ? "W_xc_static" : "W_xh_static", &q->w_s, err));
  NR_TRY(add_blob(l, q->G, q->H, 2, wf, lstm ? "W_hc" : "W_hh", &q->w_h, err));
  if (kind == NR_RECUR_RNN) {
    NR_TRY(add_blob(l, q->H, q->H, 2, wf, "W_ho", &q->w_o, err));
    NR_TRY(add_blob(l, q->H, 0, 1, bf, "b_o", &q->b_o, err));
  }
  return NR_OK;
}

static nr_status grow(float **p, int64_t n, nr_error *err) {
  float *v = realloc(*p, (size_t)(n > 0 ? n : 1) * sizeof *v);
  if (!v) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  *p = v;
  return NR_OK;
}

static bool is_state_shape(const nr_blob *b, int64_t n, int64_t h) {
  return b->num_axes == 3 && b->shape[0] == 1 && b->shape[1] == n && b->shape[2] == h;
}

nr_status nr__recur_reshape(nr_layer *l, nr_error *err) {
  recur *q = l->priv;
  const nr_blob *x = l->bottom[0], *cont = l->bottom[1];
  if (x->num_axes < 2)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[0] must have at least 2 axes (time steps, streams, ...), has %d",
                      x->num_axes);
  q->T = x->shape[0];
  q->N = x->shape[1];
  if (nr_blob_count_range(x, 2, x->num_axes) != q->ni)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[0] has %lld inputs per step, the weights take %lld",
                      (long long)nr_blob_count_range(x, 2, x->num_axes), (long long)q->ni);
  if (cont->num_axes != 2 || cont->shape[0] != q->T || cont->shape[1] != q->N)
    return nr_err_set(err, NR_ERR_INPUT,
                      "bottom[1] (cont) must be (%lld, %lld): (time steps, streams) as bottom[0]",
                      (long long)q->T, (long long)q->N);
  if (q->has_static) {
    const nr_blob *s = l->bottom[q->static_bottom];
    if (s->num_axes < 1 || s->shape[0] != q->N || nr_blob_count_range(s, 1, s->num_axes) != q->S)
      return nr_err_set(err, NR_ERR_INPUT,
                        "the static input (bottom[2]) must have %lld rows (streams) of %lld values",
                        (long long)q->N, (long long)q->S);
  }
  if (q->expose)
    for (int k = 0; k < q->nstate; k++)
      if (!is_state_shape(l->bottom[q->state_bottom + k], q->N, q->H))
        return nr_err_set(err, NR_ERR_INPUT, "bottom[%d] (initial %s) must be (1, %lld, %lld)",
                          q->state_bottom + k, k ? "c" : "h", (long long)q->N, (long long)q->H);
  const int64_t T = q->T, N = q->N, H = q->H, G = q->G;
  NR_TRY(grow(&q->pre, T * N * G, err));
  NR_TRY(grow(&q->dpre, T * N * G, err));
  NR_TRY(grow(&q->hs, (T + 1) * N * H, err));
  NR_TRY(grow(&q->hc, T * N * H, err));
  NR_TRY(grow(&q->dout, T * N * H, err));
  NR_TRY(grow(&q->sx, N * G, err));
  NR_TRY(grow(&q->dh, N * H, err));
  NR_TRY(grow(&q->dc, N * H, err));
  NR_TRY(grow(&q->tmp, N * H, err));
  NR_TRY(grow(&q->tmp2, N * G, err));
  if (q->kind == NR_RECUR_LSTM) NR_TRY(grow(&q->cs, (T + 1) * N * H, err));
  if (!q->expose && q->carry_n != N) { /* new stream count: start from zero states */
    for (int k = 0; k < q->nstate; k++) {
      NR_TRY(grow(&q->carry[k], N * H, err));
      nr_set(N * H, 0.0f, q->carry[k]);
    }
    q->carry_n = N;
  }
  const int64_t out[3] = {T, N, H}, st[3] = {1, N, H};
  NR_TRY(nr_blob_reshape(l->top[0], 3, out, err));
  for (int k = 1; k < l->ntop; k++) NR_TRY(nr_blob_reshape(l->top[k], 3, st, err));
  return NR_OK;
}

static const float *bdata(const nr_layer *l, int i) { return l->blobs[i]->data; }

nr_status nr__recur_forward(nr_layer *l, nr_error *err) {
  recur *q = l->priv;
  const int64_t T = q->T, N = q->N, H = q->H, G = q->G, NH = N * H;
  const float *x = l->bottom[0]->data, *cont = l->bottom[1]->data;
  /* the input's part of every step at once, then the bias and the static part */
  if (T * N > 0) nr_gemm(false, true, T * N, G, q->ni, 1.0f, x, bdata(l, q->w_x), 0.0f, q->pre);
  if (q->has_static)
    nr_gemm(false, true, N, G, q->S, 1.0f, l->bottom[q->static_bottom]->data, bdata(l, q->w_s),
            0.0f, q->sx);
  for (int64_t r = 0; r < T * N; r++) {
    nr_axpy(G, 1.0f, bdata(l, q->b_x), q->pre + r * G);
    if (q->has_static) nr_axpy(G, 1.0f, q->sx + (r % N) * G, q->pre + r * G);
  }
  /* initial states */
  for (int k = 0; k < q->nstate; k++) {
    const float *s0 = q->expose ? l->bottom[q->state_bottom + k]->data : q->carry[k];
    nr_copy(NH, s0, k ? q->cs : q->hs);
  }
  for (int64_t t = 0; t < T; t++) {
    const float *hp = q->hs + t * NH, *ct = cont + t * N;
    float *hc = q->hc + t * NH, *pre = q->pre + t * N * G;
    for (int64_t n = 0; n < N; n++)
      for (int64_t j = 0; j < H; j++) hc[n * H + j] = ct[n] * hp[n * H + j];
    nr_gemm(false, true, N, G, H, 1.0f, hc, bdata(l, q->w_h), 1.0f, pre);
    float *h = q->hs + (t + 1) * NH;
    if (q->kind == NR_RECUR_LSTM) {
      nr__lstm_unit_forward(N, H, q->cs + t * NH, pre, ct, q->cs + (t + 1) * NH, h);
    } else {
      for (int64_t i = 0; i < NH; i++) h[i] = tanhf(pre[i]);
    }
  }
  float *top = l->top[0]->data;
  if (q->kind == NR_RECUR_LSTM) {
    nr_copy(T * NH, q->hs + NH, top);
  } else if (T * N > 0) { /* o_t = tanh(W_ho h_t + b_o) */
    nr_gemm(false, true, T * N, H, H, 1.0f, q->hs + NH, bdata(l, q->w_o), 0.0f, top);
    for (int64_t r = 0; r < T * N; r++) {
      float *o = top + r * H;
      nr_axpy(H, 1.0f, bdata(l, q->b_o), o);
      for (int64_t j = 0; j < H; j++) o[j] = tanhf(o[j]);
    }
  }
  /* final states: to the extra tops, or kept for the next forward */
  for (int k = 0; k < q->nstate; k++) {
    const float *sT = (k ? q->cs : q->hs) + T * NH;
    nr_copy(NH, sT, q->expose ? l->top[1 + k]->data : q->carry[k]);
  }
  return NR_OK;
}

nr_status nr__recur_backward(nr_layer *l, nr_error *err) {
  recur *q = l->priv;
  if (l->prop_down[1])
    return nr_err_set(err, NR_ERR_INPUT,
                      "cannot backpropagate to the sequence continuation flags (bottom[1])");
  const int64_t T = q->T, N = q->N, H = q->H, G = q->G, NH = N * H;
  const float *cont = l->bottom[1]->data;
  const nr_blob *top = l->top[0];
  /* the diff reaching each h_t from the output */
  if (q->kind == NR_RECUR_LSTM) {
    nr_copy(T * NH, top->diff, q->dout);
  } else if (T * N > 0) {
    float *dO = q->dpre; /* scratch: (T, N, H) fits in (T, N, G) */
    for (int64_t i = 0; i < T * NH; i++) dO[i] = top->diff[i] * (1 - top->data[i] * top->data[i]);
    nr_gemm(true, false, H, H, T * N, 1.0f, dO, q->hs + NH, 1.0f, l->blobs[q->w_o]->diff);
    float *db = l->blobs[q->b_o]->diff;
    for (int64_t r = 0; r < T * N; r++) nr_axpy(H, 1.0f, dO + r * H, db);
    nr_gemm(false, false, T * N, H, H, 1.0f, dO, bdata(l, q->w_o), 0.0f, q->dout);
  }
  /* diffs of the final states */
  for (int k = 0; k < q->nstate; k++) {
    float *d = k ? q->dc : q->dh;
    if (q->expose) nr_copy(NH, l->top[1 + k]->diff, d);
    else nr_set(NH, 0.0f, d);
  }
  for (int64_t t = T - 1; t >= 0; t--) {
    const float *ct = cont + t * N;
    float *dpre = q->dpre + t * N * G;
    nr_axpy(NH, 1.0f, q->dout + t * NH, q->dh); /* dh = output's diff + the next step's */
    if (q->kind == NR_RECUR_LSTM) {
      nr__lstm_unit_backward(N, H, q->cs + t * NH, q->pre + t * N * G, ct, q->cs + (t + 1) * NH,
                             q->dc, q->dh, q->tmp, dpre);
      nr_copy(NH, q->tmp, q->dc);
    } else {
      const float *h = q->hs + (t + 1) * NH;
      for (int64_t i = 0; i < NH; i++) dpre[i] = q->dh[i] * (1 - h[i] * h[i]);
    }
    nr_gemm(true, false, G, H, N, 1.0f, dpre, q->hc + t * NH, 1.0f, l->blobs[q->w_h]->diff);
    nr_gemm(false, false, N, H, G, 1.0f, dpre, bdata(l, q->w_h), 0.0f, q->tmp);
    for (int64_t n = 0; n < N; n++)
      for (int64_t j = 0; j < H; j++) q->dh[n * H + j] = ct[n] * q->tmp[n * H + j];
  }
  if (q->expose)
    for (int k = 0; k < q->nstate; k++)
      if (l->prop_down[q->state_bottom + k])
        nr_copy(NH, k ? q->dc : q->dh, l->bottom[q->state_bottom + k]->diff);
  if (T * N == 0) return NR_OK;
  const float *x = l->bottom[0]->data;
  nr_gemm(true, false, G, q->ni, T * N, 1.0f, q->dpre, x, 1.0f, l->blobs[q->w_x]->diff);
  float *db = l->blobs[q->b_x]->diff;
  for (int64_t r = 0; r < T * N; r++) nr_axpy(G, 1.0f, q->dpre + r * G, db);
  if (l->prop_down[0])
    nr_gemm(false, false, T * N, q->ni, G, 1.0f, q->dpre, bdata(l, q->w_x), 0.0f,
            l->bottom[0]->diff);
  if (q->has_static) {
    float *ds = q->tmp2; /* Σ_t dpre_t: (N, G) */
    nr_set(N * G, 0.0f, ds);
    for (int64_t t = 0; t < T; t++) nr_axpy(N * G, 1.0f, q->dpre + t * N * G, ds);
    nr_blob *s = l->bottom[q->static_bottom];
    nr_gemm(true, false, G, q->S, N, 1.0f, ds, s->data, 1.0f, l->blobs[q->w_s]->diff);
    if (l->prop_down[q->static_bottom])
      nr_gemm(false, false, N, q->S, G, 1.0f, ds, bdata(l, q->w_s), 0.0f, s->diff);
  }
  return NR_OK;
}

void nr__recur_destroy(nr_layer *l) {
  recur *q = l->priv;
  if (!q) return;
  free(q->pre);
  free(q->hs);
  free(q->cs);
  free(q->hc);
  free(q->dpre);
  free(q->dout);
  free(q->sx);
  free(q->dh);
  free(q->dc);
  free(q->tmp);
  free(q->tmp2);
  free(q->carry[0]);
  free(q->carry[1]);
  free(q);
}
