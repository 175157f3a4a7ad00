/* fmnist_e2e: Fashion-MNIST LeNet training iterations (forward, backward, SGD) with two
 * feeds, interleaved in one process:
 *   py   examples/fashion_mnist/lenet_train_test.prototxt as is: the Python data layer
 *        (replicas: 2) on a pool of WORKERS workers, prefetch 3 — what the example runs;
 *   mem  lenet_mem.prototxt: the same layers after an Input layer that this program fills
 *        before each iteration with the next 64 training images (uint8 -> float / 256, the
 *        labels as floats) from arrays loaded once: the net fed from memory, the data
 *        path's cost reduced to one conversion copy in the core.
 * Both solvers: SGD as the example (lr 0.01, momentum 0.9, weight decay 5e-4, inv), no
 * test net. Blocks of ITERS iterations alternate py/mem, mem/py, ...
 *
 * usage: fmnist_e2e WORKERS WARMUP ITERS BLOCKS -> per block "py MS_PER_ITER" / "mem ..."
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "idx.h"
#include "pool.h"
#include "solver.h"
#include "textformat.h"

#define FM_DIR "/usr/share/datasets/fashion-mnist"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static nr_status make_solver(const char *net, nr_pool *pool, nr_solver **out, nr_error *err) {
  char text[2048];
  snprintf(text, sizeof text,
           "net: \"%s\"\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\n"
           "lr_policy: \"inv\"\ngamma: 0.0001\npower: 0.75\ndisplay: 0\nmax_iter: 1000000\n"
           "random_seed: 1701\n", net);
  ProtobufCMessage *m = NULL;
  NR_TRY(nr_text_parse(text, strlen(text), "solver", &caffe__solver_parameter__descriptor, &m,
                       err));
  nr_solver_opts o = {0};
  o.alloc = pool ? nr_pool_allocator(pool) : NULL;
  o.py = pool ? nr_pool_backend(pool) : NULL;
  FILE *devnull = fopen("/dev/null", "w");
  o.log = devnull;
  nr_status s = nr_solver_create((Caffe__SolverParameter *)m, &o, out, err);
  nr_text_free(m);
  return s; /* devnull stays open: the solver borrows it */
}

typedef struct mem_feed {
  nr_idx *img, *lab;
  nr_blob *data, *label;
  int64_t k;
} mem_feed;

static void fill(mem_feed *f) {
  int64_t n = f->img->dims[0];
  for (int i = 0; i < 64; i++) {
    int64_t s = (f->k * 64 + i) % n;
    const uint8_t *p = f->img->data + s * 784;
    float *d = f->data->data + i * 784;
    for (int j = 0; j < 784; j++) d[j] = p[j] * 0.00390625f;
    f->label->data[i] = f->lab->data[s];
  }
  f->k++;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: fmnist_e2e WORKERS WARMUP ITERS BLOCKS\n");
    return 2;
  }
  int workers = atoi(argv[1]), warmup = atoi(argv[2]), iters = atoi(argv[3]),
      blocks = atoi(argv[4]);
  static nr_error err;
  nr_pool *pool = NULL;
  nr_solver *py = NULL, *mem = NULL;
  mem_feed f = {0};
  nr_pool_opts o = {workers, 0, 0, NULL, NULL, 3, 0, NULL, "fmnist=2"}; /* as the example runs */
  if (nr_pool_create(&o, &pool, &err) != NR_OK ||
      make_solver(NR_REPO_DIR "/examples/fashion_mnist/lenet_train_test.prototxt", pool, &py,
                  &err) != NR_OK ||
      make_solver(NR_BENCH_DIR "/lenet_mem.prototxt", NULL, &mem, &err) != NR_OK ||
      nr_idx_read(FM_DIR "/train-images-idx3-ubyte.gz", &f.img, &err) != NR_OK ||
      nr_idx_read(FM_DIR "/train-labels-idx1-ubyte.gz", &f.lab, &err) != NR_OK)
    goto fail;
  f.data = nr_net_blob(nr_solver_net(mem), "data");
  f.label = nr_net_blob(nr_solver_net(mem), "label");
  for (int i = 0; i < warmup; i++) {
    if (nr_solver_step(py, 1, &err) != NR_OK) goto fail;
    fill(&f);
    if (nr_solver_step(mem, 1, &err) != NR_OK) goto fail;
  }
  for (int b = 0; b < blocks; b++) {
    for (int side = 0; side < 2; side++) {
      bool is_py = (side == 0) == (b % 2 == 0);
      double t0 = now_ms();
      for (int i = 0; i < iters; i++) {
        if (!is_py) fill(&f);
        if (nr_solver_step(is_py ? py : mem, 1, &err) != NR_OK) goto fail;
      }
      printf("%s %.4f\n", is_py ? "py" : "mem", (now_ms() - t0) / iters);
      fflush(stdout);
    }
  }
  printf("loss py %.4f mem %.4f waits %lld\n", nr_solver_smoothed_loss(py),
         nr_solver_smoothed_loss(mem), (long long)nr_pool_data_waits(pool, NULL));
  nr_solver_destroy(py);
  nr_solver_destroy(mem);
  nr_pool_destroy(pool);
  nr_idx_free(f.img);
  nr_idx_free(f.lab);
  return 0;
fail:
  fprintf(stderr, "fmnist_e2e: %s\n", err.msg);
  nr_solver_destroy(py);
  nr_solver_destroy(mem);
  nr_pool_destroy(pool);
  nr_idx_free(f.img);
  nr_idx_free(f.lab);
  return 1;
}
