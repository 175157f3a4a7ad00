/* cli_train.c: `netrun train`: Caffe's `caffe train`.
 *
 * Signals, as Caffe's tool: --sigint_effect (default stop) and --sighup_effect (default
 * snapshot) take stop, snapshot or none. Decision: a stop also writes a snapshot (Caffe does
 * so through snapshot_after_train; we do it whatever that setting, so Ctrl-C never loses
 * progress). A second Ctrl-C while stopping exits at once.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "load.h"
#include "pylayer.h"
#include "solver.h"

static volatile sig_atomic_t stop_flag, snapshot_flag;
static int sigint_action, sighup_action; /* 0 none, 1 stop, 2 snapshot */

static void on_signal(int sig) {
  int action = sig == SIGINT ? sigint_action : sighup_action;
  if (action == 1) {
    if (stop_flag && sig == SIGINT) _exit(130);
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

int nr_cmd_train(int argc, char **argv) {
  const char *solver_path = NULL, *weights = NULL, *snapshot = NULL, *stage = NULL;
  const char *sigint_effect = "stop", *sighup_effect = "snapshot";
  int level = 0;
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
      {NULL, 0, NULL, NULL}};
  const char *pos[1];
  int npos;
  int r = nr_cli_parse(
      "train",
      "netrun train --solver SOLVER.prototxt [--weights W[,W2] | --snapshot S.solverstate] "
      "[--level N] [--stage S[,S2]] [--sigint_effect E] [--sighup_effect E]",
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
  FILE *log = nr_cli_log();

  static nr_error err;
  Caffe__SolverParameter *sp = NULL;
  if (nr_proto_load_solver_text(solver_path, &sp, &err) != NR_OK) {
    nr_cli_error("%s", err.msg);
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
  nr_status st = nr_cli_py_start(&py, &err);
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
    so.live_line = isatty(2);
    so.progress_lines = !so.live_line;
    so.exclusive_prefix = true; /* two runs on one snapshot_prefix: the second fails */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    fprintf(log, "Starting Optimization\n");
    st = nr_solver_create(sp, &so, &s, &err);
    if (st == NR_OK && weights) st = nr_solver_load_weights(s, weights, &err);
    if (st == NR_OK && snapshot) st = nr_solver_restore(s, snapshot, &err);
    if (st == NR_OK) st = nr_solver_solve(s, &err);
  }
  if (st != NR_OK) nr_cli_error("%s", err.msg);
  nr_solver_destroy(s);
  nr_runtime_destroy(py);
  nr_cli_free_split(stages);
  protobuf_c_message_free_unpacked(&sp->base, NULL);
  return st == NR_OK ? 0 : 1;
}
