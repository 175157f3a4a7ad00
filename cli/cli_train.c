/* cli_train.c: `netrun train`: Caffe's `caffe train`.
 *
 * Signals, as Caffe's tool: --sigint_effect (default stop) and --sighup_effect (default
 * snapshot) take stop, snapshot or none. Decision: a stop also writes a snapshot (Caffe does
 * so through snapshot_after_train; we do it whatever that setting, so Ctrl-C never loses
 * progress). A second Ctrl-C while stopping exits at once.
 *
 * Under mpirun (cli_mpi.c, docs/distributed.md) every rank runs this same command: rank 0
 * writes the log and the snapshots, the others keep quiet unless they fail; a failure on
 * any rank is printed once, by that rank with its number, and ends the whole job.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "dist.h"
#include "load.h"
#include "pylayer.h"
#include "solver.h"

static volatile sig_atomic_t stop_flag, snapshot_flag;
static int sigint_action, sighup_action; /* 0 none, 1 stop, 2 snapshot */

static void on_signal(int sig) {
  /* Under mpirun, Ctrl-C reaches mpirun, which sends every rank SIGTERM (then SIGKILL a
   * moment later): a rank of several takes SIGTERM as Ctrl-C. */
  int action = sig == SIGHUP ? sighup_action : sigint_action;
  if (action == 1) {
    if (stop_flag && sig != SIGHUP) _exit(130);
    stop_flag = 1;
    snapshot_flag = 1;
  } else if (action == 2) {
    snapshot_flag = 1;
  }
}

static int parse_effect(const char *name, const char *v, int *out) {
  if (!v) return 0;
  if (!strcmp(v, "stop")) *out = 1;
  else if (!strcmp(v, "snapshot")) *out = 2;
  else if (!strcmp(v, "none")) *out = 0;
  else {
    nr_cli_error("train: --%s must be stop, snapshot or none, not '%s'", name, v);
    return 2;
  }
  return 0;
}

static int train(const char *solver_path, const char *weights, const char *snapshot,
                 int level, const char *stage, const nr_dist *dist, int check_replicas,
                 size_t bucket_bytes, bool no_overlap, nr_error *errp);

int nr_cmd_train(int argc, char **argv) {
  const char *solver_path = NULL, *weights = NULL, *snapshot = NULL, *stage = NULL;
  const char *sigint_effect = "stop", *sighup_effect = "snapshot";
  int level = 0, check_replicas = 0;
  double bucket_mib = 4;
  bool overlap = true;
  const nr_flag flags[] = {
      {"solver", NR_FLAG_STR, &solver_path, "the solver prototxt (required)"},
      {"weights", NR_FLAG_STR, &weights,
       "comma-separated .caffemodel files to start from (fine-tuning)"},
      {"snapshot", NR_FLAG_STR, &snapshot, "a .solverstate to resume training from"},
      {"level", NR_FLAG_INT, &level, "net state level"},
      {"stage", NR_FLAG_STR, &stage, "comma-separated net state stages"},
      {"sigint_effect", NR_FLAG_STR, &sigint_effect,
       "what Ctrl-C does: stop (after a snapshot), snapshot, none (default stop)"},
      {"sighup_effect", NR_FLAG_STR, &sighup_effect,
       "what SIGHUP does: stop, snapshot, none (default snapshot)"},
      {"check-replicas", NR_FLAG_INT, &check_replicas,
       "under mpirun: compare the ranks' weights every N iterations, fail on a difference "
       "(default 0, off)"},
      {"allreduce-bucket-mib", NR_FLAG_DOUBLE, &bucket_mib,
       "under mpirun: gradient bucket size in MiB (default 4)"},
      {"allreduce-overlap", NR_FLAG_BOOL, &overlap,
       "under mpirun: reduce gradients during backward (default true; false: after it)"},
      {NULL, 0, NULL, NULL}};
  const char *pos[1];
  int npos;
  int r = nr_cli_parse(
      "train",
      "netrun train --solver SOLVER.prototxt [--weights W[,W2] | --snapshot S.solverstate] "
      "[--level N] [--stage S[,S2]] [--sigint_effect E] [--sighup_effect E] "
      "[--check-replicas N]",
      flags, argc, argv, pos, &npos, 0);
  if (r) return r;
  if (!solver_path) {
    nr_cli_error("train: --solver is required (see netrun train --help)");
    return 2;
  }
  if (weights && snapshot) {
    nr_cli_error("train: give --snapshot to resume training or --weights to fine-tune, not "
                 "both");
    return 2;
  }
  if ((r = parse_effect("sigint_effect", sigint_effect, &sigint_action)) ||
      (r = parse_effect("sighup_effect", sighup_effect, &sighup_action)))
    return r;
  if (check_replicas < 0 || !(bucket_mib > 0 && bucket_mib <= 4096)) {
    nr_cli_error("train: --check-replicas must be >= 0 and --allreduce-bucket-mib in (0, 4096]");
    return 2;
  }
  static nr_error err;
  nr_dist dist;
  if (nr_cli_dist_start(&dist, &err) != NR_OK) {
    nr_cli_error("train: %s", err.msg);
    return 1;
  }
  r = train(solver_path, weights, snapshot, level, stage, &dist, check_replicas,
            (size_t)(bucket_mib * (1 << 20)), !overlap, &err);
  if (r != 0 && dist.size > 1) {
    /* The message is out, this rank's workers are ended: take every rank down with it
     * (the others may be waiting in a collective for this one). */
    nr_cli_dist_abort(r);
  }
  nr_cli_dist_end();
  return r;
}

/* The run itself; returns the exit code, having printed any error (with the rank when
 * several run). */
static int train(const char *solver_path, const char *weights, const char *snapshot,
                 int level, const char *stage, const nr_dist *dist, int check_replicas,
                 size_t bucket_bytes, bool no_overlap, nr_error *err) {
  FILE *log = nr_cli_log();
  FILE *quiet = NULL;
  if (dist->size > 1) {
    char v[16];
    snprintf(v, sizeof v, "%d", dist->size);
    setenv("NETRUN_SOLVER_COUNT", v, 1); /* caffe.solver_count() in the Python layers */
    snprintf(v, sizeof v, "%d", dist->rank);
    setenv("NETRUN_SOLVER_RANK", v, 1);
    if (dist->rank != 0) { /* only rank 0 writes the Caffe log */
      if (!(quiet = fopen("/dev/null", "w"))) {
        nr_cli_error("rank %d: cannot open /dev/null", dist->rank);
        return 1;
      }
      log = quiet;
    }
  }
  Caffe__SolverParameter *sp = NULL;
  if (nr_proto_load_solver_text(solver_path, &sp, err) != NR_OK) {
    nr_cli_error("%s", err->msg);
    if (quiet) fclose(quiet);
    return 1;
  }
  if (weights) {
    /* --weights replaces the solver file's `weights` list, as in Caffe's tool. */
    for (size_t i = 0; i < sp->n_weights; i++) free(sp->weights[i]);
    free(sp->weights);
    sp->weights = NULL;
    sp->n_weights = 0;
  }
  int nst = 0;
  char **stages = nr_cli_split(stage, &nst);
  nr_runtime *py = NULL;
  nr_solver *s = NULL;
  nr_status st = nr_cli_py_start_log(log, &py, err);
  if (st == NR_OK) {
    nr_solver_opts so = {0};
    so.alloc = nr_runtime_allocator(py);
    so.py = nr_runtime_backend(py);
    so.log = log;
    so.level = level;
    so.stages = (const char *const *)stages;
    so.nstages = nst;
    so.stop_flag = &stop_flag;
    so.snapshot_flag = &snapshot_flag;
    so.live_line = isatty(2) && !quiet;
    so.progress_lines = !so.live_line && !quiet;
    so.dist = dist;
    so.check_replicas = check_replicas;
    so.bucket_bytes = bucket_bytes;
    so.no_overlap = no_overlap;
    so.exclusive_prefix = true; /* two runs on one snapshot_prefix: the second fails */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (dist->size > 1) sigaction(SIGTERM, &sa, NULL);
    fprintf(log, "Starting Optimization\n");
    st = nr_solver_create(sp, &so, &s, err);
    if (st == NR_OK && weights) st = nr_solver_load_weights(s, weights, err);
    if (st == NR_OK && snapshot) st = nr_solver_restore(s, snapshot, err);
    if (st == NR_OK) st = nr_solver_solve(s, err);
  }
  if (st != NR_OK && dist->size > 1)
    nr_cli_error("rank %d of %d: %s", dist->rank, dist->size, err->msg);
  else if (st != NR_OK)
    nr_cli_error("%s", err->msg);
  nr_solver_destroy(s);
  nr_runtime_destroy(py);
  nr_cli_free_split(stages);
  protobuf_c_message_free_unpacked(&sp->base, NULL);
  if (quiet) fclose(quiet);
  return st == NR_OK ? 0 : 1;
}
