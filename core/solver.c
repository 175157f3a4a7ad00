/* solver.c: Caffe's Solver / SGDSolver: nets, the training loop, testing, snapshots.
 *
 * The arithmetic lives in lr_policy.c and sgd_updates.c; this file drives it: building the
 * nets from the SolverParameter, the iteration loop with its log lines, test passes, and
 * snapshot / restore in Caffe's binary formats (history laid out as Caffe's, so states
 * written by Caffe resume here and the other way round).
 */
#include "solver.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "binary.h"
#include "dist.h"
#include "load.h"
#include "nr_math.h"
#include "snapshot_prefix.h"
#include "textformat.h"
#include "upgrade.h"
#include "weights.h"

struct nr_solver {
  Caffe__SolverParameter *param; /* owned copy */
  nr_solver_opts opts;
  FILE *log;
  nr_solver_kind kind;
  nr_lr_policy lr; /* stepvalue borrowed from param */
  nr_update_params up;
  bool l1;
  uint64_t seed;

  nr_net *net;
  nr_net **test_nets;
  int ntest;

  /* History: nhist_sets sets of net->nlearnable arrays, set-major as Caffe's history_. */
  float **hist;
  int nhist;

  int iter;       /* completed updates */
  int64_t iter64; /* the same, for the nets' error messages */
  int current_step;

  /* Smoothed loss over the last average_loss iterations (Caffe's losses_ ring). */
  double *losses;
  int nlosses;
  double smoothed_loss;

  int last_snapshot_iter; /* -1: none written by this solver yet */
  char *last_snapshot_state;
  bool snapshot_failed;
  bool requested_early_exit;
  int prefix_lock; /* fd holding the snapshot_prefix lock, -1 = none */

  /* Data-parallel training (core/dist.h); dist is NULL in one process. */
  const nr_dist *dist;
  nr_dist_reducer *reducer;
  bool synced; /* rank 0's state broadcast */

  /* Display timing. */
  double timer_start;
  int iterations_last;

  /* Live status line. */
  bool live_drawn;
  double live_last_draw, live_t0;
  int live_iter0, live_target;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void live_clear(nr_solver *s) {
  if (!s->live_drawn) return;
  fputs("\r\033[K", stderr);
  fflush(stderr);
  s->live_drawn = false;
}

/* One Caffe log line (the text after glog's prefix), flushed at once so a crash or a kill
 * loses nothing and the live line can be redrawn under it. */
static void slog(nr_solver *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void slog(nr_solver *s, const char *fmt, ...) {
  live_clear(s);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(s->log, fmt, ap);
  va_end(ap);
  fputc('\n', s->log);
  fflush(s->log);
}

static void live_draw(nr_solver *s, bool force) {
  if (!s->opts.live_line) return;
  double t = now_sec();
  if (!force && t - s->live_last_draw < 0.25) return;
  s->live_last_draw = t;
  double el = t - s->live_t0;
  int done = s->iter - s->live_iter0;
  double rate = el > 0 && done > 0 ? done / el : 0;
  char eta[32] = "--:--:--";
  int left = s->live_target - s->iter;
  if (rate > 0 && left >= 0) {
    long sec = (long)(left / rate + 0.5);
    snprintf(eta, sizeof eta, "%ld:%02ld:%02ld", sec / 3600, (sec / 60) % 60, sec % 60);
  }
  fprintf(stderr, "\r\033[Kiter %d/%d  loss %.4g  %.3g iter/s  ETA %s", s->iter, s->live_target,
          s->smoothed_loss, rate, eta);
  fflush(stderr);
  s->live_drawn = true;
}

static char *xstrdup(const char *p) { return strdup(p ? p : ""); }

/* Directory part of a path ("." when there is none); new string or NULL. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return strdup(".");
  if (slash == path) return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

static bool string_set(const char *p) { return p && *p; }

static char *snapshot_name(const nr_solver *s, int iter, const char *ext) {
  const char *prefix = s->param->snapshot_prefix ? s->param->snapshot_prefix : "";
  size_t len = strlen(prefix) + strlen(ext) + 32;
  char *out = malloc(len);
  if (out) snprintf(out, len, "%s_iter_%d%s", prefix, iter, ext);
  return out;
}

/* Deep copy through the wire format (protobuf-c has no copy). */
static ProtobufCMessage *copy_message(const ProtobufCMessage *m) {
  size_t len = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) return NULL;
  protobuf_c_message_pack(m, buf);
  ProtobufCMessage *out = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
  free(buf);
  return out;
}

/* ---- creation ----------------------------------------------------------------------------- */

/* The NetState a net is built with, as Caffe's InitTrainNet / InitTestNets: the phase,
 * then the net's own state merged in, then the solver's train_state / test_state (level
 * replaces when set; stages append). Strings are borrowed; *stages_out is new. */
static nr_status merge_state(const Caffe__NetState *net_state, const Caffe__NetState *solver_state,
                             int phase, Caffe__NetState *out, char ***stages_out, nr_error *err) {
  caffe__net_state__init(out);
  out->has_phase = 1;
  out->phase = (Caffe__Phase)phase;
  size_t n = (net_state ? net_state->n_stage : 0) + (solver_state ? solver_state->n_stage : 0);
  char **st = calloc(n + 1, sizeof *st);
  if (!st) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  size_t k = 0;
  const Caffe__NetState *srcs[2] = {net_state, solver_state};
  for (int i = 0; i < 2; i++) {
    if (!srcs[i]) continue;
    if (srcs[i]->has_level) {
      out->has_level = 1;
      out->level = srcs[i]->level;
    }
    for (size_t j = 0; j < srcs[i]->n_stage; j++) st[k++] = srcs[i]->stage[j];
  }
  out->n_stage = k;
  out->stage = st;
  *stages_out = st;
  return NR_OK;
}

/* Builds one net from an inline NetParameter (np) or a prototxt path. `role` names it in
 * errors ("train net", "test net #0"). cli: apply the CLI's --level / --stage (train only,
 * as Caffe's tool). */
static nr_status build_net(nr_solver *s, const Caffe__NetParameter *np, const char *path,
                           int phase, const Caffe__NetState *solver_state, bool cli,
                           uint64_t seed, const char *role, nr_net **out, nr_error *err) {
  nr_status st = NR_OK;
  Caffe__NetParameter *owned = NULL;
  char **stages = NULL;
  char *dir = NULL;
  if (path) {
    if ((st = nr_proto_load_net_text(path, &owned, err)) != NR_OK) goto fail;
    np = owned;
    if (!(dir = dir_of(path))) {
      st = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
      goto fail;
    }
  }
  Caffe__NetState state;
  if ((st = merge_state(np->state, solver_state, phase, &state, &stages, err)) != NR_OK)
    goto fail;
  Caffe__NetParameter view = *np; /* shallow: nr_net_create copies what it keeps */
  view.state = &state;
  nr_net_opts no;
  memset(&no, 0, sizeof no);
  no.phase = phase;
  if (cli) {
    no.level = s->opts.level;
    no.stages = s->opts.stages;
    no.nstages = s->opts.nstages;
  }
  no.alloc = s->opts.alloc;
  no.py = s->opts.py;
  no.seed = seed;
  no.iter = &s->iter64;
  no.interrupt = s->opts.interrupt;
  no.source_dir = dir;
  no.log = s->log;
  if (s->dist) {
    no.solver_rank = s->dist->rank;
    no.solver_count = s->dist->size;
  }
  live_clear(s);
  st = nr_net_create(&view, &no, out, err);
fail:
  if (st != NR_OK) nr_err_prefix(err, "%s", role);
  free(stages);
  free(dir);
  if (owned) protobuf_c_message_free_unpacked(&owned->base, NULL);
  return st;
}

/* Checks the fields Caffe CHECKs in Solver::Init / SGDSolver::PreSolve and friends, and
 * fills the solver's type, policy, and update parameters. */
static nr_status validate(nr_solver *s, nr_error *err) {
  Caffe__SolverParameter *p = s->param;
  /* type, upgrading the deprecated enum as Caffe's UpgradeSolverType */
  const char *type = p->type;
  bool type_given = type && type != caffe__solver_parameter__type__default_value;
  if (p->has_solver_type) {
    static const char *const enum_names[] = {"SGD",     "Nesterov", "AdaGrad",
                                             "RMSProp", "AdaDelta", "Adam"};
    if ((unsigned)p->solver_type >= 6)
      return nr_err_set(err, NR_ERR_INPUT, "unknown solver_type %d", (int)p->solver_type);
    const char *from_enum = enum_names[p->solver_type];
    if (type_given && strcasecmp(type, from_enum) != 0)
      return nr_err_set(err, NR_ERR_INPUT,
                        "both solver_type (%s, deprecated) and type (\"%s\") are given; keep "
                        "only type",
                        from_enum, type);
    type = from_enum;
  }
  NR_TRY(nr_solver_kind_parse(type, &s->kind, err));

  if (p->has_iter_size && p->iter_size < 1)
    return nr_err_set(err, NR_ERR_INPUT, "iter_size must be >= 1 (iter_size: %d)", p->iter_size);
  if (p->average_loss < 1)
    return nr_err_set(err, NR_ERR_INPUT, "average_loss must be >= 1 (average_loss: %d)",
                      p->average_loss);
  if (p->display < 0)
    return nr_err_set(err, NR_ERR_INPUT, "display must be >= 0 (display: %d)", p->display);
  if (p->max_iter < 0)
    return nr_err_set(err, NR_ERR_INPUT, "max_iter must be >= 0 (max_iter: %d)", p->max_iter);
  if (p->snapshot < 0)
    return nr_err_set(err, NR_ERR_INPUT, "snapshot must be >= 0 (snapshot: %d)", p->snapshot);
  if (p->snapshot > 0 && !string_set(p->snapshot_prefix))
    return nr_err_set(err, NR_ERR_INPUT,
                      "snapshot_prefix is required when snapshot > 0 (snapshot: %d); snapshots "
                      "are written to <snapshot_prefix>_iter_<N>.caffemodel",
                      p->snapshot);

  const char *reg = p->regularization_type ? p->regularization_type : "L2";
  if (strcmp(reg, "L2") == 0)
    s->l1 = false;
  else if (strcmp(reg, "L1") == 0)
    s->l1 = true;
  else
    return nr_err_set(err, NR_ERR_INPUT, "unknown regularization_type \"%s\" (L1 or L2)", reg);

  NR_TRY(nr_lr_policy_from_param(p, &s->lr, err));

  s->up.kind = s->kind;
  s->up.momentum = p->momentum;
  s->up.momentum2 = p->momentum2;
  s->up.delta = p->delta;
  s->up.rms_decay = p->rms_decay;
  if ((s->kind == NR_SOLVER_ADAGRAD || s->kind == NR_SOLVER_RMSPROP) && p->momentum != 0.0f)
    return nr_err_set(err, NR_ERR_INPUT, "momentum cannot be used with %s (momentum: %g)",
                      nr_solver_kind_name(s->kind), (double)p->momentum);
  if (s->kind == NR_SOLVER_RMSPROP && !(p->rms_decay >= 0.0f && p->rms_decay < 1.0f))
    return nr_err_set(err, NR_ERR_INPUT, "RMSProp needs 0 <= rms_decay < 1 (rms_decay: %g)",
                      (double)p->rms_decay);
  return NR_OK;
}

/* Caffe's CheckSnapshotWritePermissions: fail now, not after hours of training. */
static nr_status probe_snapshot_dir(nr_solver *s, nr_error *err) {
  char *probe = snapshot_name(s, s->iter, ".tempfile");
  if (!probe) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  FILE *f = fopen(probe, "w");
  if (!f) {
    int e = errno;
    nr_status st = nr_err_set(err, NR_ERR_IO,
                              "cannot write snapshots with snapshot_prefix \"%s\": %s: %s (make "
                              "sure the directory exists and is writable)",
                              s->param->snapshot_prefix ? s->param->snapshot_prefix : "", probe,
                              strerror(e));
    free(probe);
    return st;
  }
  fclose(f);
  remove(probe);
  free(probe);
  return NR_OK;
}

static uint64_t clock_seed(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
         ((uint64_t)getpid() << 40);
}

static nr_status create_nets(nr_solver *s, nr_error *err) {
  Caffe__SolverParameter *p = s->param;
  nr_status st;
  /* train net: exactly one source */
  int ntrain = string_set(p->net) + (p->net_param != NULL) + string_set(p->train_net) +
               (p->train_net_param != NULL);
  if (ntrain != 1)
    return nr_err_set(err, NR_ERR_INPUT,
                      ntrain == 0 ? "no train net: give exactly one of net, net_param, "
                                    "train_net, train_net_param"
                                  : "%d train nets given: give exactly one of net, net_param, "
                                    "train_net, train_net_param",
                      ntrain);

  /* test nets, counted as Caffe's InitTestNets */
  int ngeneric = string_set(p->net) + (p->net_param != NULL);
  int nspecific = (int)p->n_test_net_param + (int)p->n_test_net;
  int ntest_iter = (int)p->n_test_iter;
  if (ngeneric ? ntest_iter < nspecific : ntest_iter != nspecific)
    return nr_err_set(err, NR_ERR_INPUT,
                      "test_iter must be given once per test net (%d test_iter for %d test "
                      "net%s)",
                      ntest_iter, nspecific, nspecific == 1 ? "" : "s");
  int ntest = ngeneric ? ntest_iter : nspecific;
  if (p->n_test_state && (int)p->n_test_state != ntest)
    return nr_err_set(err, NR_ERR_INPUT,
                      "test_state must be left out or given once per test net (%zu test_state "
                      "for %d test nets)",
                      p->n_test_state, ntest);
  if (ntest > 0 && p->test_interval <= 0)
    return nr_err_set(err, NR_ERR_INPUT,
                      "test_interval must be > 0 when there are test nets (%d test net%s, "
                      "test_interval: %d)",
                      ntest, ntest == 1 ? "" : "s", p->test_interval);
  for (int k = 0; k < ntest; k++)
    if (p->test_iter[k] <= 0)
      return nr_err_set(err, NR_ERR_INPUT, "test_iter for test net #%d must be > 0 (it is %d)",
                        k, p->test_iter[k]);

  if (p->train_net_param) {
    slog(s, "Creating training net specified in train_net_param.");
    st = build_net(s, p->train_net_param, NULL, NR_TRAIN, p->train_state, true, s->seed,
                   "train net (train_net_param)", &s->net, err);
  } else if (string_set(p->train_net)) {
    slog(s, "Creating training net from train_net file: %s", p->train_net);
    st = build_net(s, NULL, p->train_net, NR_TRAIN, p->train_state, true, s->seed,
                   "train net", &s->net, err);
  } else if (p->net_param) {
    slog(s, "Creating training net specified in net_param.");
    st = build_net(s, p->net_param, NULL, NR_TRAIN, p->train_state, true, s->seed,
                   "train net (net_param)", &s->net, err);
  } else {
    slog(s, "Creating training net from net file: %s", p->net);
    st = build_net(s, NULL, p->net, NR_TRAIN, p->train_state, true, s->seed, "train net",
                   &s->net, err);
  }
  if (st != NR_OK) return st;

  if (ntest == 0) return NR_OK;
  s->test_nets = calloc((size_t)ntest, sizeof *s->test_nets);
  if (!s->test_nets) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  for (int k = 0; k < ntest; k++) {
    const Caffe__NetParameter *np = NULL;
    const char *path = NULL;
    char source[64 + 4096];
    if (k < (int)p->n_test_net_param) {
      np = p->test_net_param[k];
      snprintf(source, sizeof source, "test_net_param");
    } else if (k < nspecific) {
      path = p->test_net[k - (int)p->n_test_net_param];
      snprintf(source, sizeof source, "test_net file: %s", path);
    } else if (p->net_param) {
      np = p->net_param;
      snprintf(source, sizeof source, "net_param");
    } else {
      path = p->net;
      snprintf(source, sizeof source, "net file: %s", path);
    }
    slog(s, "Creating test net (#%d) specified by %s", k, source);
    char role[64];
    snprintf(role, sizeof role, "test net #%d", k);
    const Caffe__NetState *ts = p->n_test_state ? p->test_state[k] : NULL;
    /* Each net its own stream: a test net's DummyData does not shift the train net's. */
    st = build_net(s, np, path, NR_TEST, ts, false, s->seed + 1 + (uint64_t)k, role,
                   &s->test_nets[k], err);
    if (st != NR_OK) return st;
    s->ntest = k + 1;
    if ((st = nr_net_share_trained(s->test_nets[k], s->net, err)) != NR_OK)
      return nr_err_prefix(err, "%s", role);
  }
  return NR_OK;
}

nr_status nr_solver_create(const Caffe__SolverParameter *param, const nr_solver_opts *opts,
                           nr_solver **out, nr_error *err) {
  nr_status st = NR_OK;
  nr_solver *s = calloc(1, sizeof *s);
  if (!s) return nr_err_set(err, NR_ERR_NOMEM, "solver: out of memory");
  if (opts) s->opts = *opts;
  s->log = s->opts.log ? s->opts.log : stderr;
  s->dist = nr_dist_on(s->opts.dist) ? s->opts.dist : NULL;
  s->last_snapshot_iter = -1;
  s->prefix_lock = -1;
  s->param = (Caffe__SolverParameter *)copy_message(&param->base);
  if (!s->param) {
    st = nr_err_set(err, NR_ERR_NOMEM, "out of memory copying the solver parameters");
    goto fail;
  }
  {
    int changed = 0;
    if ((st = nr_upgrade_solver(s->param, &changed, err)) != NR_OK) goto fail;
  }
  if ((st = validate(s, err)) != NR_OK) goto fail;

  slog(s, "Initializing solver from parameters: ");
  live_clear(s);
  /* The log is best effort (a full disk does not stop training), but out of memory here
   * is out of memory: the next allocation would fail anyway. */
  if (nr_text_print(&s->param->base, s->log) == NR_ERR_NOMEM) {
    st = nr_err_set(err, NR_ERR_NOMEM, "out of memory printing the solver parameters");
    goto fail;
  }
  fflush(s->log);
  if (s->param->snapshot_format == CAFFE__SOLVER_PARAMETER__SNAPSHOT_FORMAT__HDF5)
    slog(s, "snapshot_format HDF5 is not supported: snapshots are written as BINARYPROTO "
            "(.caffemodel / .solverstate)");

  if ((s->param->snapshot > 0 || s->param->snapshot_after_train) &&
      (!s->dist || s->dist->rank == 0)) { /* rank 0 alone writes snapshots */
    if ((st = probe_snapshot_dir(s, err)) != NR_OK) goto fail;
    if (string_set(s->param->snapshot_prefix)) {
      if (s->opts.exclusive_prefix &&
          (st = nr_snapshot_lock(s->param->snapshot_prefix, &s->prefix_lock, err)) != NR_OK)
        goto fail;
      if ((st = nr_snapshot_remove_stale(s->param->snapshot_prefix, s->log, err)) != NR_OK)
        goto fail;
      fflush(s->log);
    }
  }

  s->seed = s->param->random_seed >= 0 ? (uint64_t)s->param->random_seed
            : s->opts.default_seed ? s->opts.default_seed
                                   : clock_seed();
  if (s->dist) {
    /* One seed for all ranks: shuffles and fillers agree (the weights are broadcast
     * anyway; a shuffled HDF5 list must be the same list on every rank to be sharded). */
    if ((st = s->dist->bcast(s->dist->ctx, &s->seed, sizeof s->seed, err)) != NR_OK) goto fail;
  }
  if ((st = create_nets(s, err)) != NR_OK) goto fail;
  if (s->dist &&
      (st = nr_dist_reducer_create(s->dist, s->net,
                                   s->opts.bucket_bytes ? s->opts.bucket_bytes : 4u << 20,
                                   !s->opts.no_overlap, &s->reducer, err)) != NR_OK)
    goto fail;

  {
    const int nl = s->net->nlearnable, sets = nr_solver_kind_histories(s->kind);
    s->nhist = nl * sets;
    s->hist = calloc((size_t)s->nhist + 1, sizeof *s->hist);
    if (!s->hist) goto nomem;
    for (int i = 0; i < s->nhist; i++) {
      int64_t n = s->net->learnable[i % nl]->count;
      if (!(s->hist[i] = calloc((size_t)(n ? n : 1), sizeof(float)))) goto nomem;
    }
  }
  s->losses = calloc((size_t)s->param->average_loss, sizeof *s->losses);
  if (!s->losses) goto nomem;

  for (size_t i = 0; i < s->param->n_weights; i++)
    if ((st = nr_solver_load_weights(s, s->param->weights[i], err)) != NR_OK) goto fail;

  slog(s, "Solver scaffolding done.");
  *out = s;
  return NR_OK;
nomem:
  st = nr_err_set(err, NR_ERR_NOMEM, "out of memory allocating the solver history");
fail:
  nr_err_prefix(err, "solver");
  nr_solver_destroy(s);
  return st;
}

void nr_solver_destroy(nr_solver *s) {
  if (!s) return;
  live_clear(s);
  nr_dist_reducer_destroy(s->reducer);
  for (int k = 0; k < s->ntest; k++) nr_net_destroy(s->test_nets[k]);
  free(s->test_nets);
  nr_net_destroy(s->net);
  if (s->hist)
    for (int i = 0; i < s->nhist; i++) free(s->hist[i]);
  free(s->hist);
  free(s->losses);
  free(s->last_snapshot_state);
  if (s->param) nr_snapshot_unlock(s->param->snapshot_prefix, s->prefix_lock);
  if (s->param) protobuf_c_message_free_unpacked(&s->param->base, NULL);
  free(s);
}

nr_net *nr_solver_net(nr_solver *s) { return s->net; }
int nr_solver_iter(const nr_solver *s) { return s->iter; }
int nr_solver_num_test_nets(const nr_solver *s) { return s->ntest; }
nr_net *nr_solver_test_net(nr_solver *s, int i) {
  return i >= 0 && i < s->ntest ? s->test_nets[i] : NULL;
}
double nr_solver_smoothed_loss(const nr_solver *s) { return s->smoothed_loss; }

/* ---- weights, snapshot, restore ----------------------------------------------------------- */

nr_status nr_solver_load_weights(nr_solver *s, const char *comma_paths, nr_error *err) {
  if (s->dist && s->dist->rank != 0) return NR_OK; /* rank 0 loads, then broadcasts */
  char *copy = xstrdup(comma_paths);
  if (!copy) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  nr_status st = NR_OK;
  char *save = NULL;
  for (char *p = strtok_r(copy, ",", &save); p && st == NR_OK; p = strtok_r(NULL, ",", &save)) {
    Caffe__NetParameter *w = NULL;
    if ((st = nr_weights_load(p, &w, err)) != NR_OK) break;
    st = nr_net_copy_from(s->net, w, p, s->log, err);
    for (int k = 0; k < s->ntest && st == NR_OK; k++)
      st = nr_net_copy_from(s->test_nets[k], w, NULL, s->log, err);
    fflush(s->log);
    protobuf_c_message_free_unpacked(&w->base, NULL);
    if (st != NR_OK) nr_err_prefix(err, "loading weights from %s", p);
  }
  free(copy);
  return st;
}

nr_status nr_solver_snapshot(nr_solver *s, nr_error *err) {
  nr_status st = NR_OK;
  char *model = snapshot_name(s, s->iter, ".caffemodel");
  char *state_path = snapshot_name(s, s->iter, ".solverstate");
  Caffe__NetParameter *np = NULL;
  Caffe__BlobProto *bp = NULL, **bpp = NULL;
  Caffe__BlobShape *shapes = NULL;
  if (s->dist && s->dist->rank != 0) { /* rank 0 writes the (identical) replicas' state */
    s->last_snapshot_iter = s->iter;
    goto out;
  }
  if (!model || !state_path) goto nomem;

  slog(s, "Snapshotting to binary proto file %s", model);
  if ((st = nr_net_to_proto(s->net, s->param->snapshot_diff, &np, err)) != NR_OK) goto fail;
  if ((st = nr_proto_save_binary(model, &np->base, err)) != NR_OK) goto fail;

  /* SolverState over views of the history arrays, shaped as their parameters. */
  const int nl = s->net->nlearnable;
  bp = calloc((size_t)s->nhist + 1, sizeof *bp);
  bpp = calloc((size_t)s->nhist + 1, sizeof *bpp);
  shapes = calloc((size_t)s->nhist + 1, sizeof *shapes);
  if (!bp || !bpp || !shapes) goto nomem;
  for (int i = 0; i < s->nhist; i++) {
    const nr_blob *b = s->net->learnable[i % nl];
    caffe__blob_shape__init(&shapes[i]);
    shapes[i].n_dim = (size_t)b->num_axes;
    shapes[i].dim = (int64_t *)b->shape;
    caffe__blob_proto__init(&bp[i]);
    bp[i].shape = &shapes[i];
    bp[i].n_data = (size_t)b->count;
    bp[i].data = s->hist[i];
    bpp[i] = &bp[i];
  }
  Caffe__SolverState ss = CAFFE__SOLVER_STATE__INIT;
  ss.has_iter = 1;
  ss.iter = s->iter;
  ss.learned_net = model;
  ss.has_current_step = 1;
  ss.current_step = s->current_step;
  ss.n_history = (size_t)s->nhist;
  ss.history = bpp;
  slog(s, "Snapshotting solver state to binary proto file %s", state_path);
  if ((st = nr_proto_save_binary(state_path, &ss.base, err)) != NR_OK) goto fail;
  s->last_snapshot_iter = s->iter;
  free(s->last_snapshot_state);
  s->last_snapshot_state = state_path;
  state_path = NULL;
  goto out;
nomem:
  st = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
fail:
  s->snapshot_failed = true;
  nr_err_prefix(err, "snapshot at iteration %d", s->iter);
out:
  if (np) protobuf_c_message_free_unpacked(&np->base, NULL);
  free(bp);
  free(bpp);
  free(shapes);
  free(model);
  free(state_path);
  return st;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* learned_net as stored (relative to the directory training ran in), or, when that does
 * not open, the file of that name next to the .solverstate (the snapshot was moved). */
static char *resolve_learned_net(const char *learned, const char *state_path) {
  if (access(learned, R_OK) == 0) return strdup(learned);
  const char *base = strrchr(learned, '/');
  base = base ? base + 1 : learned;
  char *dir = dir_of(state_path);
  if (!dir) return NULL;
  size_t len = strlen(dir) + strlen(base) + 2;
  char *alt = malloc(len);
  if (alt) snprintf(alt, len, "%s/%s", dir, base);
  free(dir);
  if (alt && access(alt, R_OK) == 0) return alt;
  free(alt);
  return strdup(learned); /* the load reports the path as stored */
}

nr_status nr_solver_restore(nr_solver *s, const char *path, nr_error *err) {
  nr_status st = NR_OK;
  Caffe__SolverState *ss = NULL;
  Caffe__NetParameter *w = NULL;
  float **tmp = NULL;
  char *learned = NULL;
  const int nl = s->net->nlearnable;
  if (s->dist && s->dist->rank != 0) return NR_OK; /* rank 0 restores, then broadcasts */
  if (ends_with(path, ".h5")) {
    st = nr_err_set(err, NR_ERR_INPUT,
                    "HDF5 solver states are not supported (write BINARYPROTO snapshots with "
                    "snapshot_format: BINARYPROTO)");
    goto fail;
  }
  slog(s, "Restoring previous solver status from %s", path);
  if ((st = nr_proto_load_solverstate(path, &ss, err)) != NR_OK) goto fail;
  if ((int)ss->n_history != s->nhist) {
    st = nr_err_set(err, NR_ERR_INPUT,
                    "it has %zu history blobs, but a %s solver over this net's %d learnable "
                    "parameters keeps %d (written by another solver type, or for another "
                    "net?)",
                    ss->n_history, nr_solver_kind_name(s->kind), nl, s->nhist);
    goto fail;
  }
  if (ss->has_iter && ss->iter < 0) {
    st = nr_err_set(err, NR_ERR_INPUT, "negative iter %d", ss->iter);
    goto fail;
  }
  /* History first into scratch arrays, so a bad file changes nothing. */
  tmp = calloc((size_t)s->nhist + 1, sizeof *tmp);
  if (!tmp) goto nomem;
  for (int i = 0; i < s->nhist; i++) {
    const nr_blob *b = s->net->learnable[i % nl];
    const Caffe__BlobProto *h = ss->history[i];
    if (!nr_blobproto_shape_compatible(h, b->shape, b->num_axes)) {
      int64_t dims[NR_BLOB_MAX_AXES];
      int naxes = 0;
      char have[256], want[256];
      size_t o = 0;
      have[0] = 0;
      if (nr_blobproto_shape(h, dims, &naxes, NULL) == NR_OK)
        for (int a = 0; a < naxes && o < sizeof have; a++)
          o += (size_t)snprintf(have + o, sizeof have - o, "%s%lld", a ? " " : "",
                                (long long)dims[a]);
      st = nr_err_set(err, NR_ERR_INPUT,
                      "history blob %d has shape %s, but learnable parameter %d of the net "
                      "has %s",
                      i, have, i % nl, nr_blob_shape_str(b, want, sizeof want));
      goto fail;
    }
    if (!(tmp[i] = calloc((size_t)(b->count ? b->count : 1), sizeof(float)))) goto nomem;
    if ((st = nr_blobproto_get_floats(h, 0, tmp[i], (size_t)b->count, err)) != NR_OK) {
      nr_err_prefix(err, "history blob %d", i);
      goto fail;
    }
  }
  if (string_set(ss->learned_net)) {
    if (!(learned = resolve_learned_net(ss->learned_net, path))) goto nomem;
    if ((st = nr_weights_load(learned, &w, err)) != NR_OK ||
        (st = nr_net_copy_from(s->net, w, learned, s->log, err)) != NR_OK) {
      nr_err_prefix(err, "learned_net %s", learned);
      goto fail;
    }
  }
  s->iter = ss->iter;
  s->iter64 = s->iter;
  s->current_step = ss->current_step;
  for (int i = 0; i < s->nhist; i++) {
    free(s->hist[i]);
    s->hist[i] = tmp[i];
    tmp[i] = NULL;
  }
  slog(s, "SGDSolver: restoring history");
  if (s->dist)
    slog(s, "Resuming on %d ranks: the effective batch is now %d x the train net's batch "
            "(the state does not record how many ranks wrote it)",
         s->dist->size, s->dist->size);
  goto out;
nomem:
  st = nr_err_set(err, NR_ERR_NOMEM, "out of memory");
fail:
  nr_err_prefix(err, "restoring %s", path);
out:
  if (tmp)
    for (int i = 0; i < s->nhist; i++) free(tmp[i]);
  free(tmp);
  free(learned);
  if (w) protobuf_c_message_free_unpacked(&w->base, NULL);
  if (ss) protobuf_c_message_free_unpacked(&ss->base, NULL);
  return st;
}

static void apply_update(nr_solver *s);

/* ---- the loop ----------------------------------------------------------------------------- */

/* "    <Train|Test> net output #i: name = v (* w = l loss)" */
static void log_output(nr_solver *s, const char *which, int index, const char *name, double v,
                       float w) {
  if (w != 0.0f)
    slog(s, "    %s net output #%d: %s = %g (* %g = %g loss)", which, index, name, v, (double)w,
         (double)w * v);
  else
    slog(s, "    %s net output #%d: %s = %g", which, index, name, v);
}

/* Caffe's GetRequestedAction, for both flags: a snapshot request is consumed (the flag
 * reset), a stop request is left set for the caller to see. */
static void poll_flags(nr_solver *s, bool *snapshot, bool *stop) {
  *snapshot = false;
  *stop = false;
  if (s->opts.snapshot_flag && *s->opts.snapshot_flag) {
    *s->opts.snapshot_flag = 0;
    *snapshot = true;
  }
  if (s->opts.stop_flag && *s->opts.stop_flag) *stop = true;
}

/* Sums the ranks' test scores and losses into every rank's (rank 0's batch 0 sizes them;
 * a rank that had no batch adds zeros). */
static nr_status sum_scores(nr_solver *s, nr_net_scores *sc, double *loss, nr_error *err) {
  const nr_dist *d = s->dist;
  double n = (double)sc->n;
  NR_TRY(d->allreduce_f64(d->ctx, &n, 1, NR_DIST_MAX, err));
  if (sc->n != (int64_t)n) {
    if (sc->n != 0)
      return nr_err_set(err, NR_ERR_INPUT, "rank %d's test outputs have %lld values, another "
                        "rank's %lld", d->rank, (long long)sc->n, (long long)n);
    if (!(sc->sum = calloc((size_t)n + 1, sizeof *sc->sum)))
      return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    sc->n = (int64_t)n;
  }
  NR_TRY(d->allreduce_f64(d->ctx, sc->sum, sc->n, NR_DIST_SUM, err));
  return d->allreduce_f64(d->ctx, loss, 1, NR_DIST_SUM, err);
}

nr_status nr_solver_test(nr_solver *s, int id, nr_error *err) {
  if (id < 0 || id >= s->ntest)
    return nr_err_set(err, NR_ERR_INPUT, "no test net #%d (the solver has %d)", id, s->ntest);
  nr_net *tn = s->test_nets[id];
  const int iters = s->param->test_iter[id];
  slog(s, "Iteration %d, Testing net (#%d)", s->iter, id);
  nr_net_scores sc = {0};
  double loss = 0;
  nr_status st = NR_OK;
  /* Several ranks: batch i is rank i % size's; the flags are agreed on per iteration
   * (step_impl), never here, so every rank runs the same collectives. */
  const int rank = s->dist ? s->dist->rank : 0, stride = s->dist ? s->dist->size : 1;
  for (int i = rank; i < iters; i += stride) {
    bool snap = false, stop = false;
    if (!s->dist) poll_flags(s, &snap, &stop);
    if (snap && (st = nr_solver_snapshot(s, err)) != NR_OK) goto out;
    if (stop) s->requested_early_exit = true;
    if (s->requested_early_exit) break;
    float l = 0;
    if ((st = nr_net_forward(tn, &l, err)) != NR_OK ||
        (st = nr_net_scores_add(&sc, tn, err)) != NR_OK) {
      nr_err_prefix(err, "iteration %d, testing net #%d, batch %d", s->iter, id, i);
      goto out;
    }
    loss += l;
  }
  if (s->requested_early_exit) {
    slog(s, "Test interrupted.");
    goto out;
  }
  if (s->dist && (st = sum_scores(s, &sc, &loss, err)) != NR_OK) {
    nr_err_prefix(err, "iteration %d, testing net #%d: summing the ranks' scores", s->iter, id);
    goto out;
  }
  if (s->param->test_compute_loss) slog(s, "Test loss: %g", loss / iters);
  {
    int64_t k = 0;
    for (int j = 0; sc.counts && j < tn->noutputs; j++) {
      const nr_blob *b = tn->outputs[j];
      float w = nr_net_output_loss_weight(tn, j);
      for (int64_t e = 0; e < sc.counts[j]; e++, k++)
        log_output(s, "Test", (int)k, b->name ? b->name : "?", sc.sum[k] / iters, w);
    }
  }
out:
  nr_net_scores_free(&sc);
  return st;
}

static nr_status test_all(nr_solver *s, nr_error *err) {
  for (int k = 0; k < s->ntest && !s->requested_early_exit; k++)
    NR_TRY(nr_solver_test(s, k, err));
  return NR_OK;
}

static void update_smoothed_loss(nr_solver *s, double loss, int start_iter) {
  const int avg = s->param->average_loss;
  if (s->nlosses < avg) {
    s->losses[s->nlosses++] = loss;
    s->smoothed_loss = (s->smoothed_loss * (s->nlosses - 1) + loss) / s->nlosses;
  } else {
    int idx = (s->iter - start_iter) % avg;
    s->smoothed_loss += (loss - s->losses[idx]) / avg;
    s->losses[idx] = loss;
  }
}

/* SGDSolver::ApplyUpdate: rate, clip, then per parameter normalize / regularize / compute
 * the update value into the diff, then data -= diff. */
void nr_solver_apply_update(nr_solver *s) { apply_update(s); }

static void apply_update(nr_solver *s) {
  const Caffe__SolverParameter *p = s->param;
  nr_net *n = s->net;
  int step_before = s->current_step;
  float rate = nr_lr_policy_rate(&s->lr, s->iter, &s->current_step);
  if (s->lr.kind == NR_LR_MULTISTEP && s->current_step != step_before)
    slog(s, "MultiStep Status: Iteration %d, step = %d", s->iter, s->current_step);
  if (p->display && s->iter % p->display == 0)
    slog(s, "Iteration %d, lr = %g", s->iter, (double)rate);

  if (p->clip_gradients >= 0) {
    double sumsq = 0;
    for (int i = 0; i < n->nlearnable; i++)
      sumsq += nr_solver_sumsq(n->learnable[i]->count, n->learnable[i]->diff);
    const float norm = (float)sqrt(sumsq);
    if (norm > p->clip_gradients) {
      const float scale = p->clip_gradients / norm;
      slog(s,
           "Gradient clipping: scaling down gradients (L2 norm %g > %g) by scale factor %g",
           (double)norm, (double)p->clip_gradients, (double)scale);
      for (int i = 0; i < n->nlearnable; i++)
        nr_scal(n->learnable[i]->count, scale, n->learnable[i]->diff);
    }
  }

  nr_update_params up = s->up;
  up.t = s->iter + 1;
  const int nl = n->nlearnable;
  const bool two = nr_solver_kind_histories(s->kind) == 2;
  /* Plain SGD with L2 decay fuses the three passes (nr_solver_sgd_step, same bits). */
  const bool fused = s->kind == NR_SOLVER_SGD && !s->l1;
  for (int i = 0; i < nl; i++) {
    nr_blob *b = n->learnable[i];
    if (p->iter_size > 1) nr_scal(b->count, 1.0f / (float)p->iter_size, b->diff);
    if (fused) {
      nr_solver_sgd_step(b->count, b->data, b->diff, s->hist[i],
                         p->weight_decay * n->decay_mult[i], rate * n->lr_mult[i], up.momentum);
      continue;
    }
    nr_solver_regularize(b->count, b->data, b->diff, p->weight_decay * n->decay_mult[i], s->l1);
    nr_solver_compute_update(&up, rate * n->lr_mult[i], b->count, b->diff, s->hist[i],
                             two ? s->hist[nl + i] : NULL);
  }
  if (!fused) nr_net_update(n);
}

static void log_display(nr_solver *s) {
  double t = now_sec();
  float lapse = (float)(t - s->timer_start);
  float per_s = (float)(s->iter - s->iterations_last) / (lapse != 0.0f ? lapse : 1.0f);
  slog(s, "Iteration %d (%g iter/s, %gs/%d iters), loss = %g", s->iter, (double)per_s,
       (double)lapse, s->param->display, s->smoothed_loss);
  s->timer_start = t;
  s->iterations_last = s->iter;
  nr_net *n = s->net;
  int index = 0;
  for (int j = 0; j < n->noutputs; j++) {
    const nr_blob *b = n->outputs[j];
    float w = nr_net_output_loss_weight(n, j);
    for (int64_t e = 0; e < b->count; e++)
      log_output(s, "Train", index++, b->name ? b->name : "?", b->data[e], w);
  }
  if (s->opts.progress_lines && s->iter > s->live_iter0) {
    /* Off a terminal (no live line), the log says how far the run is and when it ends. */
    const double rate = (s->iter - s->live_iter0) / fmax(t - s->live_t0, 1e-9);
    const int left = s->live_target - s->iter;
    const long eta = (long)(left / fmax(rate, 1e-9) + 0.5);
    slog(s, "Progress: iteration %d of %d (%.1f%%), %.3g iter/s, ETA %ldh%02ldm%02lds", s->iter,
         s->live_target, 100.0 * s->iter / (s->live_target ? s->live_target : 1), rate,
         eta / 3600, eta / 60 % 60, eta % 60);
  }
}

/* Backward with the gradient reduction riding along: each layer done may start a bucket
 * (core/dist.c); then the averaged gradients are waited for. */
static nr_status backward_reduce(nr_solver *s, nr_error *err) {
  nr_net *n = s->net;
  for (int i = n->nlayers - 1; i >= 0; i--) {
    if (nr_net_backward_layer(n, i, err) != NR_OK)
      return nr_err_prefix(err, "net '%s'", n->name);
    NR_TRY(nr_dist_reducer_layer_done(s->reducer, i, err));
  }
  return nr_dist_reducer_finish(s->reducer, err);
}

/* A signal reaches one rank (mpirun hands Ctrl-C to rank 0): every rank acts on it at the
 * same iteration, or the collectives would fall out of step. */
static nr_status agree_flags(nr_solver *s, bool *snap, bool *stop, nr_error *err) {
  double f[2] = {*snap, *stop};
  NR_TRY(s->dist->allreduce_f64(s->dist->ctx, f, 2, NR_DIST_MAX, err));
  *snap = f[0] != 0;
  *stop = f[1] != 0;
  return NR_OK;
}

/* Rank 0's state to every rank, once before the first iteration: the parameters (filled,
 * or loaded from --weights / --snapshot on rank 0 only), the iteration, the step and the
 * history. */
static nr_status sync_ranks(nr_solver *s, nr_error *err) {
  const nr_dist *d = s->dist;
  int32_t counters[2] = {s->iter, s->current_step};
  NR_TRY(d->bcast(d->ctx, counters, sizeof counters, err));
  s->iter = counters[0];
  s->iter64 = s->iter;
  s->current_step = counters[1];
  NR_TRY(nr_dist_bcast_params(d, s->net, err));
  for (int i = 0; i < s->nhist; i++) {
    const nr_blob *b = s->net->learnable[i % s->net->nlearnable];
    NR_TRY(d->bcast(d->ctx, s->hist[i], b->count * (int64_t)sizeof(float), err));
  }
  int64_t batch = s->net->ninputs > 0 ? s->net->inputs[0]->shape[0] : 0;
  if (s->net->nlayers > 0 && s->net->layers[0]->ntop > 0 && s->net->layers[0]->top[0]->num_axes)
    batch = s->net->layers[0]->top[0]->shape[0];
  slog(s, "Data-parallel training on %d ranks: gradients averaged over the ranks, effective "
          "batch %d x %lld", d->size, d->size, (long long)batch);
  s->synced = true;
  return NR_OK;
}

static nr_status step_impl(nr_solver *s, int iters, nr_error *err) {
  const Caffe__SolverParameter *p = s->param;
  const int start_iter = s->iter, stop_iter = s->iter + iters;
  s->nlosses = 0;
  s->smoothed_loss = 0;
  s->timer_start = now_sec();
  s->iterations_last = s->iter;
  while (s->iter < stop_iter) {
    s->iter64 = s->iter;
    nr_net_clear_param_diffs(s->net);
    if (p->test_interval > 0 && s->iter % p->test_interval == 0 &&
        (s->iter > 0 || p->test_initialization)) {
      NR_TRY(test_all(s, err));
      if (s->requested_early_exit) break;
    }
    const bool display = p->display && s->iter % p->display == 0;
    double loss = 0;
    for (int i = 0; i < p->iter_size; i++) {
      float l = 0;
      nr_status st = nr_net_forward(s->net, &l, err);
      if (st == NR_OK) st = s->dist && i == p->iter_size - 1 ? backward_reduce(s, err)
                                                             : nr_net_backward(s->net, err);
      if (st != NR_OK) return nr_err_prefix(err, "iteration %d", s->iter);
      loss += l;
    }
    loss /= p->iter_size;
    update_smoothed_loss(s, loss, start_iter);
    if (display) log_display(s);
    apply_update(s);
    s->iter++;
    s->iter64 = s->iter;
    live_draw(s, false);

    bool snap, stop;
    poll_flags(s, &snap, &stop);
    if (s->dist) NR_TRY(agree_flags(s, &snap, &stop, err));
    if (s->dist && s->opts.check_replicas > 0 && s->iter % s->opts.check_replicas == 0)
      NR_TRY(nr_dist_check_replicas(s->dist, s->net, s->iter, err));
    if ((p->snapshot > 0 && s->iter % p->snapshot == 0) || snap)
      NR_TRY(nr_solver_snapshot(s, err));
    if (stop) {
      s->requested_early_exit = true;
      break;
    }
  }
  return NR_OK;
}

nr_status nr_solver_step(nr_solver *s, int iters, nr_error *err) {
  if (s->dist && !s->synced) NR_TRY(sync_ranks(s, err));
  s->requested_early_exit = false;
  s->live_t0 = now_sec();
  s->live_iter0 = s->iter;
  s->live_target = s->iter + iters;
  nr_status st = step_impl(s, iters, err);
  live_clear(s);
  return st;
}

/* What the gradient reduction cost: bytes per iteration and how much of its time was
 * left after backward (not hidden). */
static void log_dist_stats(nr_solver *s) {
  if (!s->reducer) return;
  nr_dist_stats ds;
  nr_dist_reducer_stats(s->reducer, &ds);
  if (ds.passes == 0) return;
  slog(s, "Allreduce: %d bucket%s, %.3f MiB of gradients per rank per iteration, %s; waited "
          "%.3f ms per iteration after backward (backward %.3f ms)",
       ds.buckets, ds.buckets == 1 ? "" : "s", (double)ds.bytes / (1 << 20),
       s->opts.no_overlap ? "started after backward" : "overlapping backward",
       1e3 * ds.wait_sec / (double)ds.passes, 1e3 * ds.backward_sec / (double)ds.passes);
}

nr_status nr_solver_solve(nr_solver *s, nr_error *err) {
  const Caffe__SolverParameter *p = s->param;
  slog(s, "Solving %s", s->net->name ? s->net->name : "");
  slog(s, "Learning Rate Policy: %s", p->lr_policy ? p->lr_policy : "");
  s->requested_early_exit = false;
  s->snapshot_failed = false;
  /* Before anything counts iterations: the other ranks learn rank 0's (resumed) iter. */
  if (s->dist && !s->synced) NR_TRY(sync_ranks(s, err));
  const int start_iter = s->iter;
  s->live_t0 = now_sec();
  s->live_iter0 = s->iter;
  s->live_target = p->max_iter;
  nr_status st = step_impl(s, p->max_iter - s->iter, err);
  live_clear(s);
  if (st != NR_OK) {
    /* Keep the progress: weights and history are consistent at s->iter (the failed
     * iteration never reached its update). */
    if (s->iter > 0 && s->iter != s->last_snapshot_iter && !s->snapshot_failed) {
      slog(s, "Error at iteration %d: writing a snapshot so no progress is lost", s->iter);
      nr_error e2;
      if (nr_solver_snapshot(s, &e2) != NR_OK)
        slog(s, "Could not write the snapshot: %s", e2.msg);
    }
    if (s->last_snapshot_state && s->last_snapshot_iter == s->iter)
      nr_err_prefix(err, "training state at iteration %d saved in %s (resume with --snapshot)",
                    s->iter, s->last_snapshot_state);
    return st;
  }
  if (p->snapshot_after_train && s->iter != s->last_snapshot_iter)
    NR_TRY(nr_solver_snapshot(s, err));
  if (s->requested_early_exit) {
    slog(s, "Optimization stopped early.");
    return NR_OK;
  }
  if (p->display && s->iter % p->display == 0) {
    float loss = 0;
    s->iter64 = s->iter;
    if ((st = nr_net_forward(s->net, &loss, err)) != NR_OK)
      return nr_err_prefix(err, "iteration %d (final loss pass)", s->iter);
    update_smoothed_loss(s, loss, start_iter);
    slog(s, "Iteration %d, loss = %g", s->iter, s->smoothed_loss);
  }
  if (p->test_interval > 0 && s->iter % p->test_interval == 0) NR_TRY(test_all(s, err));
  log_dist_stats(s);
  slog(s, "Optimization Done.");
  return NR_OK;
}
