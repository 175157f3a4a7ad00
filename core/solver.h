/* solver.h: training, as Caffe's Solver / SGDSolver family.
 *
 * A solver owns one train net and zero or more test nets, built from a SolverParameter
 * (net / net_param / train_net / train_net_param for training; test_net / test_net_param,
 * or the generic net again, for testing). Test nets use the train net's parameter memory
 * (nr_net_share_trained, once at creation: the blobs alias the same buffers, so every
 * update and every weight load is seen by the test nets at once).
 *
 * One iteration (nr_solver_step) is Caffe's: clear the parameter diffs; test if due; run
 * iter_size forward/backward passes (diffs accumulate); smooth the loss over average_loss
 * iterations; log on display steps; apply the update (learning rate from lr_policy, global
 * gradient clipping, 1/iter_size normalization, L2/L1 weight decay, the type's update rule
 * into the diffs, then data -= diff); iter += 1; snapshot if due or asked for. `iter` always
 * counts completed updates, so a snapshot named _iter_N holds the weights after N updates.
 *
 * The pieces that do arithmetic (learning-rate policies, the per-parameter update rules)
 * are plain functions over arrays, declared at the end of this header, so they are tested
 * without a net.
 *
 * Log lines go to opts->log, one fflush()ed line each, with the text Caffe prints after
 * its glog prefix (the CLI adds its own prefix), so parse_log.py-style parsers keep
 * working. See docs/solvers.md.
 *
 * Ownership: the solver copies what it needs from the SolverParameter and the options
 * (the log FILE, allocator, Python backend and flags stay borrowed and must outlive it).
 * It owns its nets and history buffers. Not thread safe; the stop/snapshot flags may be
 * set from a signal handler.
 */
#ifndef NR_SOLVER_H
#define NR_SOLVER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "caffe.pb-c.h"
#include "net.h"
#include "nr_status.h"

typedef struct nr_solver nr_solver;

typedef struct nr_solver_opts {
  const nr_allocator *alloc;   /* (optional) blob memory of every net; NULL = heap */
  struct nr_py_backend *py;    /* (optional) runs Python layers */
  FILE *log;                   /* (optional) Caffe-style log lines; NULL = stderr */
  /* CLI --level / --stage: merged into train_state as Caffe's tool does (a level of 0
   * leaves the solver's train_state level alone; stages are appended). Borrowed. */
  int level;
  const char *const *stages;
  int nstages;
  /* (optional) Set by the CLI's signal handlers, polled once per iteration and between
   * test batches. *snapshot_flag: write a snapshot, reset the flag to 0, go on.
   * *stop_flag: stop after the current iteration (the flag is left set so the caller can
   * tell); nr_solver_solve then still writes its final snapshot when snapshot_after_train
   * is true, as Caffe does. */
  volatile sig_atomic_t *stop_flag;
  volatile sig_atomic_t *snapshot_flag;
  /* Draw one live status line on stderr (iteration, rate, ETA), redrawn with \r at most
   * a few times a second and erased before each log line. Only for terminals. */
  bool live_line;
  /* Without a live line (a log to a file or a pipe): after each display, a log line with
   * the iteration, the share of the run done, the rate and the time left. */
  bool progress_lines;
  /* Hold an exclusive lock on snapshot_prefix for the solver's life (core/snapshot_prefix.h):
   * creating a second solver with the same prefix, in another process or this one, fails
   * with a message naming the holder. The CLI sets it; a program that runs several solvers
   * on one prefix on purpose leaves it false. */
  bool exclusive_prefix;
  /* (optional) Polled by the nets between layers: non-zero stops the running pass with
   * NR_ERR_INTERRUPT (Ctrl-C in a Python caller). */
  volatile sig_atomic_t *interrupt;
  /* Seed when the solver's random_seed is unset (< 0); 0 = from the clock. */
  uint64_t default_seed;
  /* (optional) Data-parallel training over several processes (core/dist.h), borrowed:
   * rank 0 alone loads --weights / --snapshot files and writes snapshots, its state is
   * broadcast when training starts, gradients are averaged over the ranks after each
   * backward, test batches are dealt round-robin. The caller gives ranks other than 0 a
   * log that drops the Caffe lines. NULL or size 1: a single process, as always. */
  const struct nr_dist *dist;
  /* With dist: compare a checksum of the weights across ranks every N iterations and fail
   * on a difference (0 = never). */
  int check_replicas;
  /* With dist: gradient bucket size in bytes (0 = 4 MiB), and whether reductions start
   * during backward (false: all after it, to measure what overlap hides). */
  size_t bucket_bytes;
  bool no_overlap;
} nr_solver_opts;

/* Builds the solver: validates the parameters (exactly one train net source; one
 * test_iter per test net; test_interval > 0 when there are test nets; snapshot_prefix when
 * snapshot > 0; a known type, lr_policy and regularization_type; per-type constraints such
 * as AdaGrad without momentum), seeds (random_seed >= 0: deterministic, else from the
 * clock), builds the nets (paths relative to the current directory) with train_state /
 * test_state merged over each net's own state, shares the train net's weights with the
 * test nets, loads the solver's `weights` files, and allocates the history. When snapshots
 * will be written it checks the prefix's directory is writable, removes temp files that
 * killed runs left there and, with opts->exclusive_prefix, locks the prefix.
 * param is borrowed. *out is new (nr_solver_destroy). Errors: NR_ERR_INPUT with the field
 * at fault ("solver: ..."), net build errors prefixed with the net's role, NR_ERR_NOMEM. */
nr_status nr_solver_create(const Caffe__SolverParameter *param, const nr_solver_opts *opts,
                           nr_solver **out, nr_error *err);

/* --weights: loads comma-separated .caffemodel files, in order, by layer name into the
 * train net and every test net (layers only a test net has get their weights too). A
 * caller that honours Caffe's "the flag overrides the solver's `weights`" clears
 * param->weights before nr_solver_create. */
nr_status nr_solver_load_weights(nr_solver *s, const char *comma_paths, nr_error *err);

/* --snapshot: loads a .solverstate (iter, current_step, history) and the .caffemodel it
 * names in learned_net (as written; if that path does not open, the file of the same name
 * next to the .solverstate). The history must match this solver's type and parameters
 * (count and shapes). HDF5 states (.h5) are refused with a clear error. */
nr_status nr_solver_restore(nr_solver *s, const char *solverstate_path, nr_error *err);

/* Caffe's Solve(): "Solving <net>", "Learning Rate Policy: <p>", steps up to max_iter
 * (testing, displaying and snapshotting on their intervals), the final snapshot unless
 * snapshot_after_train is false or one was just written, the final loss / test lines
 * and "Optimization Done." ("Optimization stopped early." after a stop request; still
 * NR_OK). On an error mid-training (a layer failed, a Python worker died), a snapshot is
 * written first when any update has been made since the last one, and logged, so no
 * progress is lost; then the error is returned with the iteration (and the snapshot's
 * path) prefixed. */
nr_status nr_solver_solve(nr_solver *s, nr_error *err);

/* Runs `iters` iterations (fewer if a stop is requested). Errors as nr_solver_solve,
 * without the rescue snapshot. */
nr_status nr_solver_step(nr_solver *s, int iters, nr_error *err);

/* Writes <prefix>_iter_<iter>.caffemodel and <prefix>_iter_<iter>.solverstate (each
 * atomically) and logs "Snapshotting to binary proto file X" / "Snapshotting solver state
 * to binary proto file Y". (snapshot_format HDF5 is not implemented: a warning at creation,
 * then binary files.) An empty snapshot_prefix gives "_iter_N..." in the current
 * directory, as Caffe 1.0 (the CLI's solver loader fills in Caffe's default prefix).
 * NR_ERR_IO, NR_ERR_NOMEM. */
nr_status nr_solver_snapshot(nr_solver *s, nr_error *err);

/* Runs test net `test_net_id` for its test_iter batches and logs the mean of every output
 * element ("    Test net output #i: name = v (* w = l loss)"). */
nr_status nr_solver_test(nr_solver *s, int test_net_id, nr_error *err);

/* One update from the current parameter diffs, as at the end of an iteration (learning
 * rate, clipping, decay, the type's rule, data -= diff), without counting an iteration
 * (pycaffe's apply_update). */
void nr_solver_apply_update(nr_solver *s);

/* The train net (borrowed), and the number of completed updates. */
nr_net *nr_solver_net(nr_solver *s);
int nr_solver_iter(const nr_solver *s);
/* Test nets (borrowed; NULL when out of range), and how many. */
int nr_solver_num_test_nets(const nr_solver *s);
nr_net *nr_solver_test_net(nr_solver *s, int i);
/* The smoothed training loss of the last iteration (what the display line prints). */
double nr_solver_smoothed_loss(const nr_solver *s);

void nr_solver_destroy(nr_solver *s);

/* ---- The arithmetic, on its own (core/lr_policy.c, core/sgd_updates.c) ------------------ */

typedef enum nr_solver_kind {
  NR_SOLVER_SGD = 0,
  NR_SOLVER_NESTEROV,
  NR_SOLVER_ADAGRAD,
  NR_SOLVER_RMSPROP,
  NR_SOLVER_ADADELTA,
  NR_SOLVER_ADAM
} nr_solver_kind;

/* "SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam" (Caffe's type strings;
 * matched ignoring case). NR_ERR_INPUT listing the known types otherwise. */
nr_status nr_solver_kind_parse(const char *name, nr_solver_kind *out, nr_error *err);
const char *nr_solver_kind_name(nr_solver_kind k);
/* History arrays per learnable parameter: 2 for AdaDelta and Adam, 1 otherwise. In a
 * .solverstate the first set comes first (one per parameter, in learnable order), then the
 * second set, as Caffe lays them out. */
int nr_solver_kind_histories(nr_solver_kind k);

typedef enum nr_lr_policy_kind {
  NR_LR_FIXED = 0,
  NR_LR_STEP,
  NR_LR_EXP,
  NR_LR_INV,
  NR_LR_MULTISTEP,
  NR_LR_POLY,
  NR_LR_SIGMOID
} nr_lr_policy_kind;

typedef struct nr_lr_policy {
  nr_lr_policy_kind kind;
  float base_lr, gamma, power;
  int stepsize;
  int max_iter;
  const int32_t *stepvalue; /* borrowed */
  int nstepvalue;
} nr_lr_policy;

/* Reads lr_policy and its fields from a SolverParameter (stepvalue stays borrowed).
 * NR_ERR_INPUT: unknown or missing policy, step without a positive stepsize, poly without
 * a positive max_iter, multistep without stepvalue. */
nr_status nr_lr_policy_from_param(const Caffe__SolverParameter *p, nr_lr_policy *out,
                                  nr_error *err);

/* The learning rate after `iter` completed updates, as Caffe's GetLearningRate computes it
 * (double arithmetic, rounded to float). *current_step carries the step / multistep state:
 * step sets it to iter / stepsize; multistep advances it by at most one per call when
 * iter has reached the next stepvalue (Caffe's behaviour, which a .solverstate stores). */
float nr_lr_policy_rate(const nr_lr_policy *p, int iter, int *current_step);

typedef struct nr_update_params {
  nr_solver_kind kind;
  float momentum;   /* SGD/Nesterov momentum; AdaDelta's decay; Adam's beta1 */
  float momentum2;  /* Adam's beta2 */
  float delta;      /* AdaGrad/RMSProp/AdaDelta/Adam epsilon */
  float rms_decay;  /* RMSProp */
  int t;            /* Adam's step, iter + 1 */
} nr_update_params;

/* Weight decay into the gradient: g += decay * w (L2) or g += decay * sign(w) (L1). */
void nr_solver_regularize(int64_t n, const float *w, float *g, float decay, bool l1);

/* Turns the processed gradient g into the value to subtract from the weights (in place),
 * updating the history: h1 (and h2 for AdaDelta/Adam) of n floats each. local_rate is
 * the learning rate times the parameter's lr_mult. The formulas are Caffe's, in float,
 * in the order its CPU code evaluates them (docs/solvers.md). */
void nr_solver_compute_update(const nr_update_params *u, float local_rate, int64_t n,
                              float *g, float *h1, float *h2);

/* Plain SGD with L2 weight decay, applied: regularize + compute_update + w -= g in one
 * pass over the n parameters, bit for bit the same results (g left holding the update, h
 * the new history). The three passes cost three trips through memory. */
void nr_solver_sgd_step(int64_t n, float *w, float *g, float *h, float decay,
                        float local_rate, float momentum);

/* Sum of squares of n floats, accumulated in double. */
double nr_solver_sumsq(int64_t n, const float *x);

#endif
