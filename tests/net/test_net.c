/* Net construction as a Caffe user sees it: filtering by NetState, split insertion, in-place
 * layers, outputs, loss weights, backward inference, parameter sharing, errors. */
#include <stdlib.h>

#include "gradcheck.h"
#include "net.h"
#include "nr_test.h"
#include "textformat.h"

static nr_error err;

static Caffe__NetParameter *parse(const char *text) {
  ProtobufCMessage *m = NULL;
  if (nr_text_parse(text, strlen(text), "test.prototxt", &caffe__net_parameter__descriptor, &m,
                    &err) != NR_OK) {
    fprintf(stderr, "parse failed: %s\n", err.msg);
    return NULL;
  }
  return (Caffe__NetParameter *)m;
}

static nr_net *build(const char *text, int phase, const char *stage) {
  Caffe__NetParameter *p = parse(text);
  if (!p) return NULL;
  nr_net_opts o = {0};
  o.phase = phase;
  o.seed = 1701;
  const char *stages[1] = {stage};
  if (stage) {
    o.stages = stages;
    o.nstages = 1;
  }
  nr_net *n = NULL;
  if (nr_net_create(p, &o, &n, &err) != NR_OK) n = NULL;
  nr_text_free(&p->base);
  return n;
}

static const char *kLinReg =
    "name: 'linreg'\n"
    "layer { name: 'data' type: 'DummyData' top: 'x' top: 'y'\n"
    "  dummy_data_param { shape { dim: 8 dim: 3 } shape { dim: 8 dim: 2 }\n"
    "    data_filler { type: 'gaussian' std: 1 } data_filler { type: 'gaussian' std: 1 } } }\n"
    "layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'ip'\n"
    "  inner_product_param { num_output: 2 weight_filler { type: 'gaussian' std: 0.1 } } }\n"
    "layer { name: 'relu' type: 'ReLU' bottom: 'ip' top: 'ip' }\n"
    "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'ip' bottom: 'y' top: 'loss' }\n";

static void test_linreg_structure(void) {
  nr_net *n = build(kLinReg, NR_TRAIN, NULL);
  CHECK(n != NULL);
  CHECK_INT_EQ(n->nlayers, 4);
  CHECK_INT_EQ(n->noutputs, 1);
  CHECK_STR_EQ(n->outputs[0]->name, "loss");
  /* in place: relu's top is the ip blob */
  CHECK(n->layers[2]->top[0] == n->layers[2]->bottom[0]);
  CHECK(n->layers[2]->top[0] == n->layers[1]->top[0]);
  /* data needs no backward, ip/relu/loss do */
  CHECK(!n->layer_need_backward[0]);
  CHECK(n->layer_need_backward[1]);
  CHECK(n->layer_need_backward[2]);
  CHECK(n->layer_need_backward[3]);
  /* ip's bottom is data: no gradient to it; loss's label bottom: no gradient */
  CHECK(!n->layers[1]->prop_down[0]);
  CHECK(n->layers[3]->prop_down[0]);
  CHECK(!n->layers[3]->prop_down[1]);
  CHECK_INT_EQ(n->nlearnable, 2); /* weights and bias */
  float loss = 0;
  CHECK_OK(nr_net_forward(n, &loss, &err), &err);
  CHECK(loss > 0);
  nr_net_destroy(n);
}

static void test_training_reduces_loss(void) {
  /* Plain SGD by hand: the net's forward/backward/update must learn a fixed target. */
  const char *text =
      "name: 'fit'\n"
      "layer { name: 'in' type: 'Input' top: 'x' top: 'y' input_param { shape { dim: 4 dim: 3 }"
      " shape { dim: 4 dim: 1 } } }\n"
      "layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'p'\n"
      "  inner_product_param { num_output: 1 weight_filler { type: 'gaussian' std: 0.1 } } }\n"
      "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'p' bottom: 'y' top: 'loss' }\n";
  nr_net *n = build(text, NR_TRAIN, NULL);
  CHECK(n != NULL);
  CHECK_INT_EQ(n->ninputs, 2);
  nr_blob *x = nr_net_blob(n, "x"), *y = nr_net_blob(n, "y");
  for (int i = 0; i < 12; i++) x->data[i] = (float)((i * 7) % 5) - 2.0f;
  for (int i = 0; i < 4; i++) y->data[i] = x->data[3 * i] - 2 * x->data[3 * i + 1] + 0.5f;
  float first = 0, last = 0;
  for (int it = 0; it < 300; it++) {
    float loss;
    nr_net_clear_param_diffs(n);
    CHECK_OK(nr_net_forward(n, &loss, &err), &err);
    CHECK_OK(nr_net_backward(n, &err), &err);
    for (int k = 0; k < n->nlearnable; k++)
      for (int64_t j = 0; j < n->learnable[k]->count; j++) n->learnable[k]->diff[j] *= 0.05f;
    nr_net_update(n);
    if (it == 0) first = loss;
    last = loss;
  }
  CHECK(first > 0.1);
  CHECK(last < first * 1e-3);
  nr_net_destroy(n);
}

static void test_split_insertion(void) {
  const char *text =
      "name: 'splits'\n"
      "layer { name: 'data' type: 'DummyData' top: 'x' dummy_data_param { shape { dim: 2 dim: 3 } "
      "} }\n"
      "layer { name: 'a' type: 'ReLU' bottom: 'x' top: 'a' }\n"
      "layer { name: 'b' type: 'Sigmoid' bottom: 'x' top: 'b' }\n";
  nr_net *n = build(text, NR_TRAIN, NULL);
  CHECK(n != NULL);
  CHECK_INT_EQ(n->nlayers, 4);
  CHECK_STR_EQ(n->layers[1]->name, "x_data_0_split");
  CHECK_STR_EQ(n->layers[1]->type->name, "Split");
  CHECK_STR_EQ(n->layers[2]->bottom[0]->name, "x_data_0_split_0");
  CHECK_STR_EQ(n->layers[3]->bottom[0]->name, "x_data_0_split_1");
  /* outputs alphabetical */
  CHECK_INT_EQ(n->noutputs, 2);
  CHECK_STR_EQ(n->outputs[0]->name, "a");
  CHECK_STR_EQ(n->outputs[1]->name, "b");
  nr_net_destroy(n);
}

static void test_state_filtering(void) {
  const char *text =
      "name: 'f'\n"
      "layer { name: 'd' type: 'DummyData' top: 'x' dummy_data_param { shape { dim: 1 } } }\n"
      "layer { name: 'train_only' type: 'ReLU' bottom: 'x' top: 't' include { phase: TRAIN } }\n"
      "layer { name: 'test_only' type: 'ReLU' bottom: 'x' top: 'u' include { phase: TEST } }\n"
      "layer { name: 'staged' type: 'ReLU' bottom: 'x' top: 's' include { stage: 'deploy' } }\n"
      "layer { name: 'not_deploy' type: 'ReLU' bottom: 'x' top: 'v' exclude { stage: 'deploy' } "
      "}\n";
  nr_net *n = build(text, NR_TRAIN, NULL);
  CHECK(n != NULL);
  CHECK(nr_net_layer_index(n, "train_only") >= 0);
  CHECK(nr_net_layer_index(n, "test_only") < 0);
  CHECK(nr_net_layer_index(n, "staged") < 0);
  CHECK(nr_net_layer_index(n, "not_deploy") >= 0);
  nr_net_destroy(n);
  n = build(text, NR_TEST, "deploy");
  CHECK(n != NULL);
  CHECK(nr_net_layer_index(n, "train_only") < 0);
  CHECK(nr_net_layer_index(n, "test_only") >= 0);
  CHECK(nr_net_layer_index(n, "staged") >= 0);
  CHECK(nr_net_layer_index(n, "not_deploy") < 0);
  nr_net_destroy(n);
}

static void test_param_sharing(void) {
  const char *text =
      "name: 'share'\n"
      "layer { name: 'd' type: 'DummyData' top: 'x' top: 'y' dummy_data_param { shape { dim: 2 "
      "dim: 3 } shape { dim: 2 dim: 4 } } }\n"
      "layer { name: 'ip1' type: 'InnerProduct' bottom: 'x' top: 'a' param { name: 'w' } "
      "param { name: 'b' } inner_product_param { num_output: 4 weight_filler { type: 'xavier' } } "
      "}\n"
      "layer { name: 'ip2' type: 'InnerProduct' bottom: 'x' top: 'c' param { name: 'w' } "
      "param { name: 'b' } inner_product_param { num_output: 4 } }\n"
      "layer { name: 'l1' type: 'EuclideanLoss' bottom: 'a' bottom: 'y' top: 'l1' }\n";
  nr_net *n = build(text, NR_TRAIN, NULL);
  CHECK(n != NULL);
  CHECK_INT_EQ(n->nparams, 4);
  CHECK_INT_EQ(n->nlearnable, 2);
  nr_layer *a = n->layers[nr_net_layer_index(n, "ip1")],
           *b = n->layers[nr_net_layer_index(n, "ip2")];
  CHECK(a->blobs[0]->data == b->blobs[0]->data);
  CHECK(a->blobs[0]->diff == b->blobs[0]->diff);
  nr_net_destroy(n);
}

static void test_errors(void) {
  nr_net *n = build("name: 'e'\nlayer { name: 'r' type: 'ReLU' bottom: 'nope' top: 'r' }\n",
                    NR_TRAIN, NULL);
  CHECK(n == NULL);
  CHECK_CONTAINS(err.msg, "net 'e': layer 0 'r' (ReLU): unknown bottom blob 'nope'");
  n = build("name: 'e'\nlayer { name: 'q' type: 'Frobnicate' top: 'r' }\n", NR_TRAIN, NULL);
  CHECK(n == NULL);
  CHECK_CONTAINS(err.msg, "unknown layer type 'Frobnicate'");
  CHECK_CONTAINS(err.msg, "InnerProduct");
  n = build(
      "name: 'e'\n"
      "layer { name: 'd' type: 'DummyData' top: 'x' dummy_data_param { shape { dim: 1 } } }\n"
      "layer { name: 'd2' type: 'DummyData' top: 'x' dummy_data_param { shape { dim: 1 } } }\n",
      NR_TRAIN, NULL);
  CHECK(n == NULL);
  CHECK_CONTAINS(err.msg, "produced by multiple sources");
  n = build(
      "name: 'e'\n"
      "layer { name: 'd' type: 'DummyData' top: 'x' dummy_data_param { shape { dim: 2 dim: 2 } } "
      "}\n"
      "layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'y' }\n",
      NR_TRAIN, NULL);
  CHECK(n == NULL);
  CHECK_CONTAINS(err.msg, "layer 1 'ip' (InnerProduct)");
  CHECK_CONTAINS(err.msg, "num_output");
}

static void test_weights_roundtrip(void) {
  nr_net *n = build(kLinReg, NR_TRAIN, NULL);
  CHECK(n != NULL);
  Caffe__NetParameter *w = NULL;
  CHECK_OK(nr_net_to_proto(n, false, &w, &err), &err);
  nr_net *m = build(kLinReg, NR_TEST, NULL);
  CHECK(m != NULL);
  /* different seed state: fill m's weights with junk, then copy */
  nr_layer *ml = m->layers[nr_net_layer_index(m, "ip")];
  for (int64_t i = 0; i < ml->blobs[0]->count; i++) ml->blobs[0]->data[i] = 42;
  CHECK_OK(nr_net_copy_from(m, w, NULL, NULL, &err), &err);
  nr_layer *nl = n->layers[nr_net_layer_index(n, "ip")];
  for (int64_t i = 0; i < nl->blobs[0]->count; i++)
    CHECK_NEAR(ml->blobs[0]->data[i], nl->blobs[0]->data[i], 0);
  protobuf_c_message_free_unpacked(&w->base, NULL);
  nr_net_destroy(n);
  nr_net_destroy(m);
}

int main(void) {
  NR_RUN(test_linreg_structure);
  NR_RUN(test_training_reduces_loss);
  NR_RUN(test_split_insertion);
  NR_RUN(test_state_filtering);
  NR_RUN(test_param_sharing);
  NR_RUN(test_errors);
  NR_RUN(test_weights_roundtrip);
  return NR_TEST_EXIT();
}
