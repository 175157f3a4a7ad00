/* Python layers inside real nets (core/net.c) built from prototxt: pycaffe's ×10 chain
 * forward/backward, a Python parameter layer whose add_blob parameter becomes a net
 * learnable, a Python loss with an explicit loss_weight, the same results with the
 * in-process backend. */
#include "net.h"
#include "nr_test.h"
#include "textformat.h"
#include "wk.h"

static const char *net_text =
    "name: 'pynet' force_backward: true\n"
    "layer { name: 'data' type: 'Input' top: 'data'\n"
    "        input_param { shape { dim: 2 dim: 3 } } }\n"
    "layer { name: 'one' type: 'Python' bottom: 'data' top: 'one'\n"
    "        python_param { module: 'nr_fx_layers' layer: 'TimesTen' } }\n"
    "layer { name: 'two' type: 'Python' bottom: 'one' top: 'two'\n"
    "        python_param { module: 'nr_fx_layers' layer: 'TimesTen' } }\n"
    "layer { name: 'scale' type: 'Python' bottom: 'two' top: 'three'\n"
    "        python_param { module: 'nr_fx_layers' layer: 'Scale' } }\n";

static void run_net(nr_py_backend *py, const nr_allocator *alloc, float *out) {
  nr_error err;
  ProtobufCMessage *m = NULL;
  CHECK_OK(nr_text_parse(net_text, strlen(net_text), "pynet", &caffe__net_parameter__descriptor,
                         &m, &err), &err);
  nr_net_opts o = {0};
  o.phase = NR_TRAIN;
  o.alloc = alloc;
  o.py = py;
  o.source_dir = wk_fixtures();
  nr_net *n = NULL;
  nr_status s = nr_net_create((Caffe__NetParameter *)m, &o, &n, &err);
  nr_text_free(m);
  CHECK_OK(s, &err);
  nr_blob *data = nr_net_blob(n, "data"), *three = nr_net_blob(n, "three");
  CHECK(data && three);
  for (int i = 0; i < 6; i++) data->data[i] = (float)(i + 1);
  CHECK_OK(nr_net_forward(n, NULL, &err), &err);
  CHECK_INT_EQ(three->count, 6);
  for (int i = 0; i < 6; i++) CHECK_NEAR(three->data[i], 200.0 * (i + 1), 1e-3);
  CHECK_INT_EQ(n->nlearnable, 1); /* the Python layer's add_blob parameter */
  for (int i = 0; i < 6; i++) three->diff[i] = 1;
  nr_net_clear_param_diffs(n);
  CHECK_OK(nr_net_backward(n, &err), &err);
  for (int i = 0; i < 6; i++) CHECK_NEAR(data->diff[i], 200.0, 1e-3);
  CHECK_NEAR(n->learnable[0]->diff[0], 100.0 * 21, 1e-2);
  for (int i = 0; i < 6; i++) out[i] = three->data[i];
  out[6] = data->diff[0];
  out[7] = n->learnable[0]->diff[0];
  nr_net_destroy(n);
}

static void test_net_pool_and_inproc(void) {
  float a[8] = {0}, b[8] = {0};
  nr_error err;
  nr_pool *p = NULL;
  nr_pool_opts o = {-1, 30, 0, NULL, NULL, 0, 0, NULL, NULL};
  CHECK_OK(nr_pool_create(&o, &p, &err), &err);
  run_net(nr_pool_backend(p), nr_pool_allocator(p), a);
  nr_pool_destroy(p);
  nr_py_backend *py = NULL;
  CHECK_OK(nr_inproc_create(&py, &err), &err);
  run_net(py, NULL, b);
  nr_inproc_destroy(py);
  CHECK(memcmp(a, b, sizeof a) == 0);
  CHECK_INT_EQ(wk_children(), 0);
}

int main(void) {
  NR_RUN(test_net_pool_and_inproc);
  return NR_TEST_EXIT();
}
