/* Allocation-failure injection, as SQLite tests it (test/malloc*.test): one scenario that
 * exercises the core end to end — build a net of the layers that keep private buffers or
 * inner layers (SPP, Im2col, MVN, Tile, Reduction, Filter, BatchReindex, Parameter,
 * InfogainLoss, RNN, LSTM) and run a forward and a backward (first: it is cheap, so the
 * runs that fail later pay little for it); parse LeNet from its prototxt, build it, run a
 * forward, serialize it; build a solver over a small train/test net (DummyData, a convolution,
 * Split insertion, two InnerProducts sharing their parameters by name, SoftmaxWithLoss, Accuracy),
 * train a few iterations, snapshot, build a second solver, restore the snapshot, train on,
 * load the weights — is run again and again with the N-th allocation failing, N = 1, 2, ...
 * until a run completes with no failure injected.
 *
 * Every failing run must
 *   - return an error (never crash, never report success after losing an allocation),
 *   - say it was out of memory (NR_ERR_NOMEM, or a message naming "out of memory"),
 *   - leak nothing: the wrapped allocations still live must come back to the count between
 *     runs (caches that persist across runs, such as GEMM packing buffers, are made by the
 *     warm-up runs); under ASan, LeakSanitizer checks at exit (and after every run with
 *     NR_OOM_LSAN=1), and use-after-free or double free on an error path aborts,
 *   - leave no temporary file behind in the snapshot directory.
 *
 * Mechanism: the test is linked with -Wl,--wrap=malloc,... (tests/oom/CMakeLists.txt), so
 * every allocation that nr_core and nr_proto make goes through the __wrap_ functions here.
 * protobuf-c's unpack and free are given an allocator that goes through the same wrappers,
 * so its allocations fail in turn too. Allocations made inside other shared libraries
 * (libc's stdio, OpenBLAS, LMDB) are not wrapped: they never fail here.
 *
 * Usage: test_oom [--all] [--from N] [--only N]. By default every allocation of the net
 * builds is failed in turn and the training phases are sampled (see pick_next; one in eight
 * under ASan), to keep the test well under a minute; --all fails every single allocation.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "im2col.h"
#include "net.h"
#include "solver.h"
#include "textformat.h"

#if defined(__SANITIZE_ADDRESS__)
#define NR_OOM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NR_OOM_ASAN 1
#endif
#endif
#ifdef NR_OOM_ASAN
int __lsan_do_recoverable_leak_check(void);
#endif

/* ---- the wrappers ----
 *
 * Only allocations of the main thread are counted and failed, so N names the same
 * allocation in every run (the GEMM helper threads allocate concurrently). Every wrapped
 * allocation is recorded in a pointer table until it is freed, with its caller and the run
 * that made it: a leak is listed by the address of the code that allocated it
 * (the report prints the addr2line command). protobuf-c's unpack and free_unpacked are wrapped too,
 * to pass an allocator that goes through these same functions. */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void __real_free(void *p);
ProtobufCMessage *__real_protobuf_c_message_unpack(const ProtobufCMessageDescriptor *d,
                                                   ProtobufCAllocator *a, size_t len,
                                                   const uint8_t *data);
void __real_protobuf_c_message_free_unpacked(ProtobufCMessage *m, ProtobufCAllocator *a);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);
int __wrap_posix_memalign(void **p, size_t align, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
void __wrap_free(void *p);
ProtobufCMessage *__wrap_protobuf_c_message_unpack(const ProtobufCMessageDescriptor *d,
                                                   ProtobufCAllocator *a, size_t len,
                                                   const uint8_t *data);
void __wrap_protobuf_c_message_free_unpacked(ProtobufCMessage *m, ProtobufCAllocator *a);

static _Thread_local bool main_thread;
static long n_alloc;           /* main-thread allocations since the run started */
static long fail_at;           /* 0: none fails */
static bool injected;          /* the fail_at-th allocation was refused */
static long run_id;
static const char *exe_path = "test_oom";

static void *injected_caller; /* who got the NULL */

#define fail_now() fail_now_(__builtin_return_address(0))
static bool fail_now_(void *caller) {
  if (!main_thread) return false;
  long k = ++n_alloc;
  if (fail_at && k == fail_at) {
    injected = true;
    injected_caller = caller;
    return true;
  }
  return false;
}

/* Live wrapped allocations: open addressing, linear probing, backward-shift deletion. */
#define LIVE_BITS 18
#define LIVE_MASK ((1u << LIVE_BITS) - 1)
typedef struct {
  void *p;
  void *caller;
  long run;
} live_entry;
static live_entry *live;
static long nlive;
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;

static unsigned live_hash(const void *p) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 29;
  return (unsigned)x & LIVE_MASK;
}

static void live_add(void *p, void *caller) {
  if (!p || !live) return;
  pthread_mutex_lock(&live_mu);
  if (nlive < (long)LIVE_MASK / 2) {
    unsigned i = live_hash(p);
    while (live[i].p) i = (i + 1) & LIVE_MASK;
    live[i] = (live_entry){p, caller, run_id};
    nlive++;
  }
  pthread_mutex_unlock(&live_mu);
}

static void live_del(void *p) {
  if (!p || !live) return;
  pthread_mutex_lock(&live_mu);
  unsigned i = live_hash(p);
  while (live[i].p && live[i].p != p) i = (i + 1) & LIVE_MASK;
  if (live[i].p) {
    nlive--;
    for (unsigned j = i;;) {
      j = (j + 1) & LIVE_MASK;
      if (!live[j].p) break;
      unsigned k = live_hash(live[j].p);
      /* may the entry at j move to the hole at i? (its home k is not in (i, j]) */
      bool between = i <= j ? (k > i && k <= j) : (k > i || k <= j);
      if (!between) {
        live[i] = live[j];
        i = j;
      }
    }
    live[i].p = NULL;
  }
  pthread_mutex_unlock(&live_mu);
}

#define CALLER __builtin_return_address(0)
void *__wrap_malloc(size_t n) {
  if (fail_now()) return NULL;
  void *p = __real_malloc(n);
  live_add(p, CALLER);
  return p;
}
void *__wrap_calloc(size_t n, size_t size) {
  if (fail_now()) return NULL;
  void *p = __real_calloc(n, size);
  live_add(p, CALLER);
  return p;
}
void *__wrap_realloc(void *p, size_t n) {
  if (fail_now()) return NULL;
  void *q = __real_realloc(p, n);
  if (q || n == 0) live_del(p);
  live_add(q, CALLER);
  return q;
}
void *__wrap_aligned_alloc(size_t align, size_t n) {
  if (fail_now()) return NULL;
  void *p = __real_aligned_alloc(align, n);
  live_add(p, CALLER);
  return p;
}
int __wrap_posix_memalign(void **p, size_t align, size_t n) {
  if (fail_now()) return 12; /* ENOMEM */
  int r = __real_posix_memalign(p, align, n);
  if (r == 0) live_add(*p, CALLER);
  return r;
}
char *__wrap_strdup(const char *s) {
  if (fail_now()) return NULL;
  char *p = __real_strdup(s);
  live_add(p, CALLER);
  return p;
}
char *__wrap_strndup(const char *s, size_t n) {
  if (fail_now()) return NULL;
  char *p = __real_strndup(s, n);
  live_add(p, CALLER);
  return p;
}
void __wrap_free(void *p) {
  live_del(p);
  __real_free(p);
}

static void *pc_alloc(void *d, size_t n) {
  if (fail_now()) return NULL;
  void *p = __real_malloc(n);
  live_add(p, __builtin_return_address(0));
  return p;
}
static void pc_free(void *d, void *p) { __wrap_free(p); }
static ProtobufCAllocator pc_allocator = {pc_alloc, pc_free, NULL};

ProtobufCMessage *__wrap_protobuf_c_message_unpack(const ProtobufCMessageDescriptor *d,
                                                   ProtobufCAllocator *a, size_t len,
                                                   const uint8_t *data) {
  return __real_protobuf_c_message_unpack(d, a ? a : &pc_allocator, len, data);
}
void __wrap_protobuf_c_message_free_unpacked(ProtobufCMessage *m, ProtobufCAllocator *a) {
  __real_protobuf_c_message_free_unpacked(m, a ? a : &pc_allocator);
}

static void print_site(const char *what, const void *caller) {
  Dl_info di;
  uintptr_t off = (uintptr_t)caller;
  if (dladdr(caller, &di) && di.dli_fbase) off -= (uintptr_t)di.dli_fbase;
  fprintf(stderr, "  %s %#lx (addr2line -f -e %s %#lx)\n", what, (unsigned long)off, exe_path,
          (unsigned long)off);
}

/* Prints the allocations made by run r that are still live; returns how many. */
static long report_live_from(long r) {
  long k = 0;
  pthread_mutex_lock(&live_mu);
  for (unsigned i = 0; i <= LIVE_MASK; i++)
    if (live[i].p && live[i].run == r) {
      if (k < 10) print_site("still live, allocated at", live[i].caller);
      k++;
    }
  pthread_mutex_unlock(&live_mu);
  return k;
}

/* ---- the scenario ---- */

static char tmpdir[64];
static char lenet_path[1024];
static FILE *devnull;

static const char *train_net =
    "name: 'OomTrain'\n"
    "layer { name: 'data' type: 'DummyData' top: 'data' top: 'label'\n"
    "  dummy_data_param { shape { dim: 4 dim: 1 dim: 8 dim: 8 } shape { dim: 4 }\n"
    "    data_filler { type: 'gaussian' std: 1 } data_filler { type: 'constant' value: 1 } } }\n"
    "layer { name: 'conv' type: 'Convolution' bottom: 'data' top: 'conv'\n"
    "  convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'relu' type: 'ReLU' bottom: 'conv' top: 'conv' }\n"
    "layer { name: 'pool' type: 'Pooling' bottom: 'conv' top: 'pool'\n"
    "  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n"
    "layer { name: 'ip1' type: 'InnerProduct' bottom: 'pool' top: 'ip1'\n"
    "  param { name: 'shared_w' } param { name: 'shared_b' lr_mult: 2 }\n"
    "  inner_product_param { num_output: 5 weight_filler { type: 'gaussian' std: 0.1 } } }\n"
    "layer { name: 'ip2' type: 'InnerProduct' bottom: 'pool' top: 'ip2'\n"
    "  param { name: 'shared_w' } param { name: 'shared_b' lr_mult: 2 }\n"
    "  inner_product_param { num_output: 5 } }\n"
    "layer { name: 'sum' type: 'Eltwise' bottom: 'ip1' bottom: 'ip2' top: 'sum' }\n"
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'sum' bottom: 'label' top: 'loss' }\n"
    "layer { name: 'acc' type: 'Accuracy' bottom: 'sum' bottom: 'label' top: 'acc'\n"
    "  include { phase: TEST } }\n";

static const char *layers_net =
    "name: 'OomLayers' force_backward: true\n"
    "layer { name: 'data' type: 'DummyData' top: 'x' top: 'label' top: 'H' top: 'seq'\n"
    "  top: 'cont' top: 'sel'\n"
    "  dummy_data_param { shape { dim: 2 dim: 2 dim: 6 dim: 6 } shape { dim: 3 }\n"
    "    shape { dim: 3 dim: 3 } shape { dim: 3 dim: 2 dim: 4 } shape { dim: 3 dim: 2 }\n"
    "    shape { dim: 2 }\n"
    "    data_filler { type: 'gaussian' std: 1 } data_filler { type: 'constant' value: 1 }\n"
    "    data_filler { type: 'constant' value: 1 } data_filler { type: 'gaussian' std: 1 }\n"
    "    data_filler { type: 'constant' value: 1 } data_filler { type: 'constant' value: 1 } } }\n"
    "layer { name: 'spp' type: 'SPP' bottom: 'x' top: 'spp' spp_param { pyramid_height: 3 } }\n"
    "layer { name: 'cols' type: 'Im2col' bottom: 'x' top: 'cols'\n"
    "  convolution_param { kernel_size: 3 } }\n"
    "layer { name: 'mvn' type: 'MVN' bottom: 'cols' top: 'mvn' }\n"
    "layer { name: 'tile' type: 'Tile' bottom: 'mvn' top: 'tile' tile_param { tiles: 2 } }\n"
    "layer { name: 'red' type: 'Reduction' bottom: 'tile' top: 'red' loss_weight: 1 }\n"
    "layer { name: 'filt' type: 'Filter' bottom: 'spp' bottom: 'sel' top: 'filt' }\n"
    "layer { name: 'p' type: 'Parameter' top: 'idx' param { lr_mult: 0 }\n"
    "  parameter_param { shape { dim: 3 } } }\n"
    "layer { name: 'reidx' type: 'BatchReindex' bottom: 'filt' bottom: 'idx' top: 'reidx' }\n"
    "layer { name: 'ip' type: 'InnerProduct' bottom: 'reidx' top: 'ip'\n"
    "  inner_product_param { num_output: 3 } }\n"
    "layer { name: 'info' type: 'InfogainLoss' bottom: 'ip' bottom: 'label' bottom: 'H'\n"
    "  top: 'info' }\n"
    "layer { name: 'rnn' type: 'RNN' bottom: 'seq' bottom: 'cont' top: 'rnn'\n"
    "  recurrent_param { num_output: 3 } }\n"
    "layer { name: 'lstm' type: 'LSTM' bottom: 'seq' bottom: 'cont' top: 'lstm'\n"
    "  recurrent_param { num_output: 3 } }\n"
    "layer { name: 'rsum' type: 'Reduction' bottom: 'rnn' top: 'rsum' loss_weight: 1 }\n"
    "layer { name: 'lsum' type: 'Reduction' bottom: 'lstm' top: 'lsum' loss_weight: 1 }\n";

/* Allocation counts at the end of each phase of the clean run (for sampling). */
enum { PH_LAYERS, PH_LENET, PH_SOLVER, PH_TRAIN, PH_SNAPSHOT, PH_RESTORE, PH_N };
static const char *const phase_name[PH_N] = {"layers", "lenet", "solver-create", "train",
                                             "snapshot", "restore"};
static long phase_end[PH_N];

static nr_status lenet(nr_error *err) {
  char *text = NULL;
  size_t len = 0;
  ProtobufCMessage *m = NULL;
  nr_net *net = NULL;
  Caffe__NetParameter *out = NULL;
  nr_status st = nr_proto_read_file(lenet_path, &text, &len, err);
  if (st == NR_OK)
    st = nr_text_parse(text, len, lenet_path, &caffe__net_parameter__descriptor, &m, err);
  if (st == NR_OK) {
    nr_net_opts o = {.phase = NR_TEST, .seed = 1, .log = devnull};
    st = nr_net_create((Caffe__NetParameter *)m, &o, &net, err);
  }
  float loss = 0;
  if (st == NR_OK) st = nr_net_forward(net, &loss, err);
  if (st == NR_OK) st = nr_net_to_proto(net, false, &out, err);
  if (out) protobuf_c_message_free_unpacked(&out->base, NULL);
  nr_net_destroy(net);
  nr_text_free(m);
  free(text);
  return st;
}

static nr_status layers(nr_error *err) {
  ProtobufCMessage *m = NULL;
  nr_net *net = NULL;
  nr_status st = nr_text_parse(layers_net, strlen(layers_net), "<oom layers>",
                               &caffe__net_parameter__descriptor, &m, err);
  if (st == NR_OK) {
    nr_net_opts o = {.phase = NR_TRAIN, .seed = 1, .log = devnull};
    st = nr_net_create((Caffe__NetParameter *)m, &o, &net, err);
  }
  float loss = 0;
  if (st == NR_OK) st = nr_net_forward(net, &loss, err);
  if (st == NR_OK) st = nr_net_backward(net, err);
  nr_net_destroy(net);
  nr_text_free(m);
  return st;
}

static nr_status make_solver(nr_solver **out, nr_error *err) {
  char extra[512];
  snprintf(extra, sizeof extra,
           "test_iter: 1 test_interval: 2 base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005\n"
           "lr_policy: 'step' gamma: 0.5 stepsize: 2 max_iter: 10 display: 1\n"
           "random_seed: 1 snapshot_prefix: '%s/oom'\n", tmpdir);
  size_t len = strlen(train_net) + strlen(extra) + 64;
  char *text = malloc(len);
  if (!text) return nr_err_set(err, NR_ERR_NOMEM, "out of memory (test text)");
  snprintf(text, len, "net_param {\n%s}\n%s", train_net, extra);
  ProtobufCMessage *m = NULL;
  nr_status st = nr_text_parse(text, strlen(text), "<oom solver>",
                               &caffe__solver_parameter__descriptor, &m, err);
  free(text);
  if (st != NR_OK) return st;
  nr_solver_opts o;
  memset(&o, 0, sizeof o);
  o.log = devnull;
  st = nr_solver_create((Caffe__SolverParameter *)m, &o, out, err);
  nr_text_free(m);
  return st;
}

static void mark(int phase) {
  if (!fail_at) phase_end[phase] = n_alloc;
}

static nr_status scenario(nr_error *err) {
  nr_solver *s = NULL, *s2 = NULL;
  char path[256];
  nr_status st = layers(err);
  if (st != NR_OK) {
    nr_err_prefix(err, "layers");
    goto out;
  }
  mark(PH_LAYERS);
  if ((st = lenet(err)) != NR_OK) {
    nr_err_prefix(err, "lenet");
    goto out;
  }
  mark(PH_LENET);
  if ((st = make_solver(&s, err)) != NR_OK) goto out;
  mark(PH_SOLVER);
  if ((st = nr_solver_step(s, 3, err)) != NR_OK) goto out;
  mark(PH_TRAIN);
  if ((st = nr_solver_snapshot(s, err)) != NR_OK) goto out;
  mark(PH_SNAPSHOT);
  if ((st = make_solver(&s2, err)) != NR_OK) goto out;
  snprintf(path, sizeof path, "%s/oom_iter_3.solverstate", tmpdir);
  if ((st = nr_solver_restore(s2, path, err)) != NR_OK) goto out;
  if ((st = nr_solver_step(s2, 1, err)) != NR_OK) goto out;
  snprintf(path, sizeof path, "%s/oom_iter_3.caffemodel", tmpdir);
  if ((st = nr_solver_load_weights(s2, path, err)) != NR_OK) goto out;
  if (nr_solver_iter(s2) != 4) {
    st = nr_err_set(err, NR_ERR_INTERNAL, "restored solver at iteration %d, expected 4",
                    nr_solver_iter(s2));
    goto out;
  }
  mark(PH_RESTORE);
out:
  nr_solver_destroy(s2);
  nr_solver_destroy(s);
  nr__conv_workspace_release();
  return st;
}

/* ---- the driver ---- */

/* Removes the snapshot files; returns how many other files (left-over temporaries) there
 * were, printing their names. */
static int clean_tmpdir(void) {
  int stray = 0;
  DIR *d = opendir(tmpdir);
  if (!d) return 0;
  struct dirent *e;
  char p[512];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (strcmp(e->d_name, "oom_iter_3.caffemodel") && strcmp(e->d_name, "oom_iter_3.solverstate")) {
      fprintf(stderr, "  left-over file %s\n", e->d_name);
      stray++;
    }
    snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
    unlink(p);
  }
  closedir(d);
  return stray;
}

static nr_error err; /* 16 KiB: not on the stack of every run */

typedef struct {
  nr_status st;
  bool injected;
  long allocs;
  bool leaked;
  int stray;
} outcome;

static long baseline = -1; /* live allocations between runs, once warmed up */

static outcome run(long n) {
  outcome o = {0};
  err.msg[0] = '\0';
  err.status = NR_OK;
  run_id++;
  pthread_mutex_lock(&live_mu);
  long before = nlive;
  pthread_mutex_unlock(&live_mu);
  n_alloc = 0;
  injected = false;
  fail_at = n;
  o.st = scenario(&err);
  fail_at = 0;
  o.allocs = n_alloc;
  o.injected = injected;
  o.stray = clean_tmpdir();
#ifdef NR_OOM_ASAN
  /* The live table below already sees every wrapped allocation; a full LeakSanitizer scan
   * per run (NR_OOM_LSAN=1) also covers the unwrapped ones, at ~10x the time. LSan still
   * checks everything once at exit. */
  if (getenv("NR_OOM_LSAN")) o.leaked = __lsan_do_recoverable_leak_check() != 0;
#endif
  /* A cache kept between runs (a GEMM packing buffer) may be dropped by a failing run and
   * made again by the next: fewer live allocations than the baseline is fine, more is a
   * leak. */
  pthread_mutex_lock(&live_mu);
  long now = nlive;
  pthread_mutex_unlock(&live_mu);
  if (baseline >= 0 && now > baseline && now > before) {
    fprintf(stderr, "  %ld allocations live after the run, %ld before\n", now, before);
    report_live_from(run_id);
    o.leaked = true;
  }
  return o;
}

/* Which N to try after n: every allocation of the net builds (lenet, solver creation,
 * restore), one in `stride` of the repetitive training iterations. Under ASan a run costs
 * ~5x more: there one allocation in `every` is tried (N = 1, 9, 17, ...), which keeps the
 * sanitizer CI run short; the plain build tries them all. */
static long stride = 1;
#ifdef NR_OOM_ASAN
static long every = 8;
#else
static long every = 1;
#endif
static long pick_next(long n, bool all) {
  if (all) return n + 1;
  if (n >= phase_end[PH_SOLVER] && n < phase_end[PH_TRAIN]) {
    long next = n + (stride > every ? stride : every);
    return next < phase_end[PH_TRAIN] ? next : phase_end[PH_TRAIN];
  }
  return n + every;
}

static int phase_of(long n) {
  for (int i = 0; i < PH_N; i++)
    if (n <= phase_end[i]) return i;
  return PH_N - 1;
}

int main(int argc, char **argv) {
  bool all = false;
  long from = 1, only = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--all")) all = true;
    else if (!strcmp(argv[i], "--from") && i + 1 < argc) from = atol(argv[++i]);
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = atol(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--all] [--from N] [--only N]\n", argv[0]);
      return 2;
    }
  }
  main_thread = true;
  exe_path = argv[0];
  live = __real_calloc((size_t)LIVE_MASK + 1, sizeof *live);
  if (!live) return 1;
  const char *caffe = getenv("NR_CAFFE_DATA");
  snprintf(lenet_path, sizeof lenet_path, "%s/mnist-lenet.prototxt",
           caffe ? caffe : NR_OOM_CAFFE_DATA);
  snprintf(tmpdir, sizeof tmpdir, "/tmp/nr_oom_XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  devnull = fopen("/dev/null", "w");
  if (!devnull) return 1;

  /* Warm-up: the clean run counts the allocations of each phase; a second one makes sure
   * whatever the libraries cache on first use (OpenBLAS buffers, stdio) is in place before
   * the heap is measured. */
  outcome clean = run(0);
  if (clean.st != NR_OK) {
    fprintf(stderr, "FAIL the scenario fails without injection: %s\n", err.msg);
    return 1;
  }
  for (int i = 0; i < 2; i++) clean = run(0);
  pthread_mutex_lock(&live_mu);
  baseline = nlive;
  pthread_mutex_unlock(&live_mu);
  clean = run(0);
  if (clean.st != NR_OK || clean.leaked || clean.stray) {
    fprintf(stderr, "FAIL clean run: status %d, leaked %d, stray files %d: %s\n", (int)clean.st,
            clean.leaked, clean.stray, err.msg);
    return 1;
  }
  fprintf(stderr, "clean run: %ld allocations;", clean.allocs);
  for (int i = 0; i < PH_N; i++) fprintf(stderr, " %s ends at %ld", phase_name[i], phase_end[i]);
  fputc('\n', stderr);
  long train_allocs = phase_end[PH_TRAIN] - phase_end[PH_SOLVER];
  stride = all ? 1 : train_allocs / 150 + 1;

  int failures = 0, tried = 0, survived = 0;
  double t0 = (double)clock() / CLOCKS_PER_SEC;
  for (long n = only ? only : from;; n = pick_next(n, all)) {
    outcome o = run(n);
    tried++;
    if (!o.injected) {
      if (o.st != NR_OK) {
        fprintf(stderr, "FAIL N=%ld: nothing injected but the run failed: %s\n", n, err.msg);
        failures++;
      }
      break;
    }
    const char *why = NULL;
    if (o.st == NR_OK) {
      /* Success after a refused allocation means a NULL went unchecked or an error was
       * dropped on the way up. (A deliberate fallback would need an exception here.) */
      why = "allocation refused, yet the run reported success";
      survived++;
    } else if (o.st != NR_ERR_NOMEM && !strstr(err.msg, "out of memory")) {
      why = "error does not say out of memory";
    }
    if (!why && o.leaked) why = "leak";
    if (!why && o.stray) why = "left-over temporary file";
    if (why) {
      fprintf(stderr, "FAIL N=%ld (%s): %s: status %d: %s\n", n, phase_name[phase_of(n)], why,
              (int)o.st, err.msg);
      print_site("refused at", injected_caller);
      failures++;
    }
    if (only) break;
  }
  double t1 = (double)clock() / CLOCKS_PER_SEC;
  fprintf(stderr, "%d runs with one allocation failing (1 in %ld, training 1 in %ld), %.1f s CPU; "
          "%d succeeded anyway, %d failures\n", tried, all ? 1 : every,
          all ? 1 : (stride > every ? stride : every), t1 - t0, survived, failures);
  clean_tmpdir();
  rmdir(tmpdir);
  fclose(devnull);
  return failures ? 1 : 0;
}
