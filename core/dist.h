/* dist.h: data-parallel training across processes, behind a small table of hooks.
 *
 * The engine knows nothing of MPI. A front-end that runs several copies of one training job
 * (ranks 0 .. size-1; `mpirun -np K netrun train`, cli/cli_mpi.c) hands the solver an
 * nr_dist: its rank, the number of ranks, and four collectives over the ranks. The solver
 * then follows Caffe's multi-GPU semantics (docs/distributed.md):
 *
 *  - at the start, rank 0's parameters (filled, or loaded from --weights / --snapshot) and
 *    its solver state (iteration, step, history) are broadcast, so every rank starts equal;
 *  - after backward the parameter gradients are summed across ranks and scaled by 1/size
 *    (Caffe's NCCL::on_gradients_ready); every rank applies the same update, so the replicas
 *    stay bit-identical;
 *  - the reduction overlaps backward: the learnable parameters are grouped into buckets of
 *    about `bucket_bytes` in the order backward finishes them (nr_dist_reducer), and a
 *    bucket's non-blocking allreduce starts as soon as the layer that completes it is done;
 *  - test batches are dealt round-robin to the ranks and the scores summed; only rank 0
 *    logs and writes snapshots.
 *
 * Ownership: an nr_dist is borrowed by whoever uses it; its ctx belongs to the front-end.
 * The hooks are called from the solver's thread only. A hook's failure is an nr_status
 * with a message; after one, the collectives are out of step and the job must end (the
 * front-end aborts every rank).
 */
#ifndef NR_DIST_H
#define NR_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "nr_status.h"

typedef enum nr_dist_op { NR_DIST_SUM = 0, NR_DIST_MAX, NR_DIST_MIN } nr_dist_op;

typedef struct nr_dist {
  int rank, size; /* 0 <= rank < size; size 1 means "not distributed" */
  void *ctx;      /* the front-end's; passed to every hook */
  /* Starts summing buf[0..n) in place across ranks without waiting; *req is the handle
   * (the front-end's) for test / wait. The buffer must stay untouched until then. */
  nr_status (*iallreduce)(void *ctx, float *buf, int64_t n, void **req, nr_error *err);
  /* Lets started reductions progress; *done = 1 when req has completed (req is then
   * released). Cheap: called between layers of backward. */
  nr_status (*test)(void *ctx, void *req, int *done, nr_error *err);
  /* Waits for req and releases it. */
  nr_status (*wait)(void *ctx, void *req, nr_error *err);
  /* Blocking: combines n doubles in place (sum / max / min) across ranks. */
  nr_status (*allreduce_f64)(void *ctx, double *buf, int64_t n, nr_dist_op op, nr_error *err);
  /* Blocking: rank 0's bytes into every rank's buf. */
  nr_status (*bcast)(void *ctx, void *buf, int64_t bytes, nr_error *err);
} nr_dist;

/* True when d describes more than one rank. */
static inline int nr_dist_on(const nr_dist *d) { return d && d->size > 1; }

/* ---- the gradient reducer --------------------------------------------------------------- */

typedef struct nr_dist_reducer nr_dist_reducer;

/* Plans the buckets for net's learnable parameters: a parameter is final when the first
 * layer (in net order) that uses it has run backward; parameters are taken in the order
 * backward finishes them and cut into buckets of at least bucket_bytes (the last may be
 * smaller). A bucket of one parameter is reduced in the parameter's own diff; a bucket of
 * several is packed into a buffer of its own. overlap = false starts every bucket only at
 * nr_dist_reducer_finish (to measure what overlap hides). net and d are borrowed.
 * NR_ERR_NOMEM. */
nr_status nr_dist_reducer_create(const nr_dist *d, const nr_net *net, size_t bucket_bytes,
                                 int overlap, nr_dist_reducer **out, nr_error *err);
void nr_dist_reducer_destroy(nr_dist_reducer *r);

/* Call after layer `layer`'s backward (layers in reverse order, each once per pass):
 * starts the buckets that layer completes and lets started ones progress. */
nr_status nr_dist_reducer_layer_done(nr_dist_reducer *r, int layer, nr_error *err);
/* After the whole backward: starts what is left, waits for every bucket, and leaves in
 * each learnable diff the sum over ranks times 1/size. */
nr_status nr_dist_reducer_finish(nr_dist_reducer *r, nr_error *err);

typedef struct nr_dist_stats {
  int buckets;            /* per iteration */
  int64_t bytes;          /* gradient bytes each rank contributes per iteration */
  int64_t passes;         /* finished reductions so far */
  double wait_sec;        /* total time blocked in finish (communication not hidden) */
  double backward_sec;    /* total time from the first layer_done to finish's start */
} nr_dist_stats;
void nr_dist_reducer_stats(const nr_dist_reducer *r, nr_dist_stats *out);

/* ---- whole-state helpers ------------------------------------------------------------------ */

/* Every parameter of net that owns its memory (data, not diff), rank 0's to all ranks. */
nr_status nr_dist_bcast_params(const nr_dist *d, nr_net *net, nr_error *err);
/* A checksum of the bits of every learnable parameter's data (FNV-1a, 64 bits), compared
 * across ranks: NR_ERR_INTERNAL naming this rank when any two differ. */
nr_status nr_dist_check_replicas(const nr_dist *d, const nr_net *net, int iter, nr_error *err);

#endif
