/* Sample slices (net.c): on 2 threads a run of convolution, pooling and ReLU layers goes
 * through the net in two halves of the batch, one per thread. What a user sees must not
 * change: every blob's data and diff and every parameter diff after a training pass are
 * the same bits with 1 thread, with 2 threads, and layer by layer (the path of `netrun
 * time`, which does not cut the batch); and the slices must really have run. */
#include <cblas.h>
#include <stdlib.h>

#include "net.h"
#include "nr_test.h"
#include "textformat.h"

static nr_error err;

/* LeNet's shape plus what the slices must cope with: padding and stride, a grouped
 * convolution, an in-place ReLU, a pooling layer with a mask top, average pooling, a
 * convolution whose weight gradient falls in chunks and a 1x1 convolution. */
#define NET_TEXT \
    "name: 'slices'\n" \
    "layer { name: 'data' type: 'Input' top: 'data' top: 'label'\n" \
    "  input_param { shape { dim: %d dim: 3 dim: 28 dim: 28 } shape { dim: %d } } }\n" \
    "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1'\n" \
    "  convolution_param { num_output: 8 kernel_size: 5 pad: 1 stride: 1\n" \
    "    weight_filler { type: 'xavier' } bias_filler { type: 'constant' value: 0.1 } } }\n" \
    "layer { name: 'relu1' type: 'ReLU' bottom: 'conv1' top: 'conv1' }\n" \
    "layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1' top: 'mask1'\n" \
    "  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }\n" \
    "layer { name: 'conv2' type: 'Convolution' bottom: 'pool1' top: 'conv2'\n" \
    "  convolution_param { num_output: 12 kernel_size: 3 group: 2 stride: 2\n" \
    "    weight_filler { type: 'xavier' } } }\n" \
    "layer { name: 'conv3' type: 'Convolution' bottom: 'conv2' top: 'conv3'\n" \
    "  convolution_param { num_output: 6 kernel_size: 1\n" \
    "    weight_filler { type: 'xavier' } } }\n" \
    "layer { name: 'pool2' type: 'Pooling' bottom: 'conv3' top: 'pool2'\n" \
    "  pooling_param { pool: AVE kernel_size: 2 stride: 2 } }\n" \
    "layer { name: 'ip1' type: 'InnerProduct' bottom: 'pool2' top: 'ip1'\n" \
    "  inner_product_param { num_output: 10 weight_filler { type: 'xavier' } } }\n" \
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip1' bottom: 'label' top: 'loss' }\n"

/* One convolution only, on the data: its weight gradient comes last in the backward, with
 * the columns of its forward slice still in the workspace; its chunks (layer.h,
 * im2col.c's wgrad_chunks: 8 x 324 pixels make 2) are the two slices. */
#define NET_TEXT_ONE_CONV \
    "name: 'one_conv'\n" \
    "layer { name: 'data' type: 'Input' top: 'data' top: 'label'\n" \
    "  input_param { shape { dim: %d dim: 2 dim: 20 dim: 20 } shape { dim: %d } } }\n" \
    "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1'\n" \
    "  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: 'xavier' } } }\n" \
    "layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1'\n" \
    "  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n" \
    "layer { name: 'ip1' type: 'InnerProduct' bottom: 'pool1' top: 'ip1'\n" \
    "  inner_product_param { num_output: 10 weight_filler { type: 'xavier' } } }\n" \
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip1' bottom: 'label' top: 'loss' }\n"

static bool g_one_conv; /* build NET_TEXT_ONE_CONV instead of NET_TEXT */

static nr_net *build(int batch) {
  char text[4096];
  if (g_one_conv) snprintf(text, sizeof text, NET_TEXT_ONE_CONV, batch, batch);
  else snprintf(text, sizeof text, NET_TEXT, batch, batch);
  ProtobufCMessage *m = NULL;
  if (nr_text_parse(text, strlen(text), "slices.prototxt", &caffe__net_parameter__descriptor,
                    &m, &err) != NR_OK) {
    fprintf(stderr, "parse failed: %s\n", err.msg);
    return NULL;
  }
  nr_net_opts o = {0};
  o.phase = NR_TRAIN;
  o.seed = 1701;
  nr_net *n = NULL;
  if (nr_net_create((Caffe__NetParameter *)m, &o, &n, &err) != NR_OK) {
    fprintf(stderr, "net: %s\n", err.msg);
    n = NULL;
  }
  nr_text_free(m);
  return n;
}

/* Everything a pass leaves: each blob's data and diff, then each parameter's diff. */
typedef struct snapshot {
  float *v;
  int64_t len;
} snapshot;

static snapshot take(const nr_net *n) {
  int64_t len = 0;
  for (int b = 0; b < n->nblobs; b++) len += 2 * n->blobs[b]->count;
  for (int p = 0; p < n->nlearnable; p++) len += n->learnable[p]->count;
  snapshot s = {malloc((size_t)len * sizeof(float)), len};
  float *o = s.v;
  for (int b = 0; b < n->nblobs && o; b++) {
    memcpy(o, n->blobs[b]->data, (size_t)n->blobs[b]->count * sizeof(float));
    o += n->blobs[b]->count;
    memcpy(o, n->blobs[b]->diff, (size_t)n->blobs[b]->count * sizeof(float));
    o += n->blobs[b]->count;
  }
  for (int p = 0; p < n->nlearnable && o; p++) {
    memcpy(o, n->learnable[p]->diff, (size_t)n->learnable[p]->count * sizeof(float));
    o += n->learnable[p]->count;
  }
  return s;
}

/* One training pass on a fresh net of `batch` samples with `threads` threads, the whole
 * net at once or layer by layer. */
static snapshot pass(int batch, int threads, bool by_layer, int64_t *slice_runs) {
  openblas_set_num_threads(threads);
  nr_net *n = build(batch);
  if (!n) return (snapshot){NULL, 0}; /* (the caller's same() fails) */
  nr_blob *data = nr_net_blob(n, "data"), *label = nr_net_blob(n, "label");
  for (int64_t i = 0; i < data->count; i++) data->data[i] = (float)((i * 7919) % 1000) / 500 - 1;
  for (int64_t i = 0; i < label->count; i++) label->data[i] = (float)(i * 3 % 10);
  nr_net_clear_param_diffs(n);
  nr_status st = NR_OK;
  if (!by_layer) {
    st = nr_net_forward(n, NULL, &err);
    if (st == NR_OK) st = nr_net_backward(n, &err);
  } else {
    for (int i = 0; i < n->nlayers && st == NR_OK; i++) st = nr_net_forward_layer(n, i, NULL, &err);
    for (int i = n->nlayers - 1; i >= 0 && st == NR_OK; i--) st = nr_net_backward_layer(n, i, &err);
  }
  if (st != NR_OK) {
    fprintf(stderr, "pass: %s\n", err.msg);
    nr_net_destroy(n);
    return (snapshot){NULL, 0};
  }
  *slice_runs = n->slice_runs;
  snapshot s = take(n);
  nr_net_destroy(n);
  return s;
}

static bool same(snapshot a, snapshot b) {
  return a.v && b.v && a.len == b.len && memcmp(a.v, b.v, (size_t)a.len * sizeof(float)) == 0;
}

/* batch 8 and 12 are cut in two; 5 is not (parts too uneven), and must not differ either */
static void test_same_bits(void) {
  const int batches[] = {8, 12, 5};
  for (size_t k = 0; k < sizeof batches / sizeof batches[0]; k++) {
    const int batch = batches[k];
    int64_t runs1, runs2, runs_layers;
    snapshot one = pass(batch, 1, false, &runs1);
    snapshot two = pass(batch, 2, false, &runs2);
    snapshot layers = pass(batch, 2, true, &runs_layers);
    if (!same(one, two)) fprintf(stderr, "batch %d: 1 and 2 threads differ\n", batch);
    if (!same(two, layers))
      fprintf(stderr, "batch %d: whole net and layer by layer differ\n", batch);
    CHECK(same(one, two));
    CHECK(same(two, layers));
    CHECK_INT_EQ(runs1, 0);
    CHECK_INT_EQ(runs_layers, 0);
    /* forward: conv1 .. ip1 is one run; backward: the same run */
    CHECK_INT_EQ(runs2, batch == 5 ? 0 : 2);
    free(one.v);
    free(two.v);
    free(layers.v);
  }
  openblas_set_num_threads(1);
}

/* The slices write only their own samples: a second pass on the same net, after the input
 * changed in one sample only, changes only that sample's activations. */
static void test_slices_stay_in_their_samples(void) {
  openblas_set_num_threads(2);
  nr_net *n = build(8);
  CHECK(n != NULL);
  if (!n) return;
  nr_blob *data = nr_net_blob(n, "data"), *label = nr_net_blob(n, "label");
  for (int64_t i = 0; i < data->count; i++) data->data[i] = (float)((i * 31) % 200) / 100 - 1;
  for (int64_t i = 0; i < label->count; i++) label->data[i] = (float)(i % 10);
  CHECK_OK(nr_net_forward(n, NULL, &err), &err);
  nr_blob *pool2 = nr_net_blob(n, "pool2");
  const int64_t per = pool2->count / 8;
  float *before = malloc((size_t)pool2->count * sizeof(float));
  memcpy(before, pool2->data, (size_t)pool2->count * sizeof(float));
  const int64_t in_per = data->count / 8;
  for (int64_t i = 5 * in_per; i < 6 * in_per; i++) data->data[i] = -data->data[i];
  CHECK_OK(nr_net_forward(n, NULL, &err), &err);
  int changed_other = 0, changed_five = 0;
  for (int64_t i = 0; i < pool2->count; i++)
    if (pool2->data[i] != before[i]) {
      if (i / per == 5) changed_five++;
      else changed_other++;
    }
  CHECK_INT_EQ(changed_other, 0);
  CHECK(changed_five > 0);
  free(before);
  nr_net_destroy(n);
  openblas_set_num_threads(1);
}

static void test_same_bits_one_conv(void) {
  g_one_conv = true;
  test_same_bits();
  g_one_conv = false;
}

/* Columns a thread kept from an earlier pass are not taken for a later one: a pass whose
 * forward ran on one thread (its helper kept nothing new) after a pass on two must give the
 * gradient of its own data, not of the earlier pass's second half. */
static void test_no_stale_columns(void) {
  g_one_conv = true;
  int64_t runs;
  snapshot want = pass(8, 1, false, &runs); /* the data pass() fills, on one thread */
  openblas_set_num_threads(2);
  nr_net *n = build(8);
  g_one_conv = false;
  CHECK(n != NULL);
  if (!n) return;
  nr_blob *data = nr_net_blob(n, "data"), *label = nr_net_blob(n, "label");
  for (int64_t i = 0; i < data->count; i++) data->data[i] = (float)(i % 13) / 13;
  for (int64_t i = 0; i < label->count; i++) label->data[i] = (float)(i * 3 % 10);
  CHECK_OK(nr_net_forward(n, NULL, &err), &err);
  CHECK_OK(nr_net_backward(n, &err), &err);
  for (int64_t i = 0; i < data->count; i++) data->data[i] = (float)((i * 7919) % 1000) / 500 - 1;
  nr_net_clear_param_diffs(n);
  openblas_set_num_threads(1);
  CHECK_OK(nr_net_forward(n, NULL, &err), &err);
  openblas_set_num_threads(2);
  CHECK_OK(nr_net_backward(n, &err), &err);
  snapshot got = take(n);
  CHECK(same(want, got));
  free(want.v);
  free(got.v);
  nr_net_destroy(n);
  openblas_set_num_threads(1);
}

int main(void) {
  NR_RUN(test_no_stale_columns);
  NR_RUN(test_same_bits);
  NR_RUN(test_same_bits_one_conv);
  NR_RUN(test_slices_stay_in_their_samples);
  return NR_TEST_EXIT();
}
