/* data_bench: netrun's side of bench/data. Builds a net whose only layer is the Python data
 * layer data_layer.AugData (replicas = workers) on a worker pool (or in process for
 * workers 0), pulls WARMUP batches, then times BATCHES forwards: the net does nothing but
 * take batches, so this is the layer's throughput through netrun's prefetch.
 *
 * usage: data_bench VARIANT WORKERS WARMUP BATCHES [PREFETCH]  ->  "batches_per_s X"
 * The end-to-end half of bench/data is fmnist_e2e.c. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net.h"
#include "pool.h"
#include "textformat.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: data_bench VARIANT WORKERS WARMUP BATCHES [PREFETCH]\n");
    return 2;
  }
  const char *variant = argv[1];
  int workers = atoi(argv[2]), warmup = atoi(argv[3]), batches = atoi(argv[4]);
  int prefetch = argc > 5 ? atoi(argv[5]) : 3;
  static nr_error err;
  nr_pool *pool = NULL;
  nr_py_backend *py = NULL;
  const nr_allocator *alloc = NULL;
  if (workers > 0) {
    nr_pool_opts o = {workers, 0, 0, NULL, NULL, prefetch, 0, NULL, NULL};
    if (nr_pool_create(&o, &pool, &err) != NR_OK) goto fail;
    py = nr_pool_backend(pool);
    alloc = nr_pool_allocator(pool);
  } else if (nr_inproc_create(&py, &err) != NR_OK) {
    goto fail;
  }
  char text[1024];
  snprintf(text, sizeof text,
           "name: 'aug'\n"
           "layer { name: 'aug' type: 'Python' top: 'data' top: 'label'\n"
           "  python_param { module: 'data_layer' layer: 'AugData'\n"
           "    param_str: \"{'variant': '%s'}\" replicas: %d } }\n",
           variant, workers > 0 ? workers : 1);
  ProtobufCMessage *m = NULL;
  if (nr_text_parse(text, strlen(text), "aug", &caffe__net_parameter__descriptor, &m, &err))
    goto fail;
  nr_net_opts no = {0};
  no.phase = NR_TRAIN;
  no.alloc = alloc;
  no.py = py;
  no.source_dir = NR_BENCH_DIR;
  nr_net *n = NULL;
  nr_status s = nr_net_create((Caffe__NetParameter *)m, &no, &n, &err);
  nr_text_free(m);
  if (s != NR_OK) goto fail;
  for (int i = 0; i < warmup && s == NR_OK; i++) s = nr_net_forward(n, NULL, &err);
  double t0 = now_s();
  for (int i = 0; i < batches && s == NR_OK; i++) s = nr_net_forward(n, NULL, &err);
  double dt = now_s() - t0;
  nr_blob *d = nr_net_blob(n, "data");
  float check = d && d->count ? d->data[d->count - 1] : 0;
  nr_net_destroy(n);
  nr_pool_destroy(pool);
  if (workers <= 0) nr_inproc_destroy(py);
  if (s != NR_OK) {
    fprintf(stderr, "data_bench: %s\n", err.msg);
    return 1;
  }
  printf("batches_per_s %.4f check=%g\n", batches / dt, check);
  return 0;
fail:
  fprintf(stderr, "data_bench: %s\n", err.msg);
  nr_pool_destroy(pool);
  return 1;
}
