/* train_lenet.c: a user's program on the installed engine library (tests/install).
 *
 * Builds Caffe's LeNet from its deploy prototxt (argv[1]), turned into a training net in
 * code: the Input layer gets a second top, "label", and the final Softmax becomes a
 * SoftmaxWithLoss. Each iteration it fills the inputs with a learnable task (the image of
 * class k has a bright band at rows 2k..2k+1, plus noise) and takes one SGD step through
 * nr_solver_step. Prints the loss of the first and last iteration; the test checks it fell.
 * Only the installed <netrun/netrun.h> and `pkg-config netrun` are used. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netrun/netrun.h>

static char *xstrdup(const char *s) {
  char *d = malloc(strlen(s) + 1);
  if (d) strcpy(d, s);
  return d;
}

/* Input: add a "label" top of shape (N); the last Softmax becomes SoftmaxWithLoss. */
static int make_trainable(Caffe__NetParameter *np) {
  Caffe__LayerParameter *in = np->layer[0], *last = np->layer[np->n_layer - 1];
  if (strcmp(in->type, "Input") || strcmp(last->type, "Softmax")) return -1;
  Caffe__InputParameter *ip = in->input_param;
  in->top = realloc(in->top, 2 * sizeof *in->top);
  in->top[in->n_top++] = xstrdup("label");
  ip->shape = realloc(ip->shape, 2 * sizeof *ip->shape);
  Caffe__BlobShape *ls = malloc(sizeof *ls);
  caffe__blob_shape__init(ls);
  ls->n_dim = 1;
  ls->dim = malloc(sizeof *ls->dim);
  ls->dim[0] = ip->shape[0]->dim[0];
  ip->shape[ip->n_shape++] = ls;
  free(last->type);
  last->type = xstrdup("SoftmaxWithLoss");
  last->bottom = realloc(last->bottom, 2 * sizeof *last->bottom);
  last->bottom[last->n_bottom++] = xstrdup("label");
  free(last->top[0]);
  last->top[0] = xstrdup("loss");
  return 0;
}

static unsigned next(unsigned *seed) { /* a small LCG: the same batches everywhere */
  *seed = *seed * 1103515245u + 12345u;
  return (*seed >> 8) & 0xffffu;
}

static void fill(nr_net *net, unsigned *seed) {
  nr_blob *data = nr_net_blob(net, "data"), *label = nr_net_blob(net, "label");
  const int64_t n = data->shape[0], hw = data->shape[2] * data->shape[3], w = data->shape[3];
  for (int64_t i = 0; i < n; i++) {
    int k = (int)(next(seed) % 10);
    label->data[i] = (float)k;
    for (int64_t p = 0; p < hw; p++) {
      int row = (int)(p / w);
      float noise = (float)next(seed) / 65535.0f * 0.2f;
      data->data[i * hw + p] = (row / 2 == k ? 1.0f : 0.0f) + noise;
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: train_lenet LENET_DEPLOY.prototxt ITERATIONS\n");
    return 2;
  }
  const int iters = atoi(argv[2]);
  static nr_error err;
  Caffe__NetParameter *np = NULL;
  Caffe__SolverParameter sp;
  caffe__solver_parameter__init(&sp);
  nr_runtime *rt = NULL;
  nr_solver *s = NULL;
  int rc = 1;
  if (nr_proto_load_net_text(argv[1], &np, &err) != NR_OK) goto fail;
  if (make_trainable(np) != 0) {
    fprintf(stderr, "%s: expected an Input layer first and a Softmax last\n", argv[1]);
    goto out;
  }
  sp.net_param = np;
  sp.base_lr = 0.01f, sp.has_base_lr = 1;
  sp.momentum = 0.9f, sp.has_momentum = 1;
  sp.lr_policy = xstrdup("fixed");
  sp.max_iter = iters, sp.has_max_iter = 1;
  sp.display = 0, sp.has_display = 1;
  sp.random_seed = 1, sp.has_random_seed = 1;
  /* The runtime would run Python layers in workers; LeNet has none, so none start. */
  if (nr_runtime_create(NULL, &rt, &err) != NR_OK) goto fail;
  nr_solver_opts so = {0};
  so.py = nr_runtime_backend(rt);
  so.alloc = nr_runtime_allocator(rt);
  so.log = stderr;
  if (nr_solver_create(&sp, &so, &s, &err) != NR_OK) goto fail;
  unsigned seed = 42;
  double first = 0, last = 0;
  for (int i = 0; i < iters; i++) {
    fill(nr_solver_net(s), &seed);
    if (nr_solver_step(s, 1, &err) != NR_OK) goto fail;
    float loss;
    /* the loss of this batch under the updated weights */
    if (nr_net_forward(nr_solver_net(s), &loss, &err) != NR_OK) goto fail;
    if (i == 0) first = loss;
    last = loss;
  }
  printf("iterations %d, first loss %.4f, last loss %.4f\n", nr_solver_iter(s), first, last);
  rc = 0;
  goto out;
fail:
  fprintf(stderr, "train_lenet: %s\n", err.msg);
out:
  nr_solver_destroy(s);
  nr_runtime_destroy(rt);
  sp.net_param = NULL;
  free(sp.lr_policy);
  if (np) protobuf_c_message_free_unpacked(&np->base, NULL);
  return rc;
}
