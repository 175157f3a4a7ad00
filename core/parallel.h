/* parallel.h: netrun's helper threads, one pool per process that splits a loop between
 * the calling thread and the helpers. nr_gemm's products (gemm.c), im2col / col2im and the
 * bias loops (im2col.c), pooling, the element-wise layers, the SGD step and the net's
 * sample slices (net.c) run on it.
 *
 * Concept. A job is `parts` calls fn(ctx, part, parts), part = 0 .. parts-1. The caller
 * and the helpers it wakes claim parts one at a time, each first from its own block of
 * the parts (so consecutive jobs cut the same way give a thread the same data), then
 * whatever is left, so the caller never waits for a helper that has not been scheduled yet
 * (on a busy, shared machine it may run every part itself); it waits only for parts a
 * helper has started. A part must
 * write memory no other part writes and compute the same bits whichever thread runs it,
 * so that results do not depend on the thread count. nr__parallel_for is the common case:
 * contiguous ranges of [0, n).
 *
 * Threads. As many in total (caller included) as OpenBLAS is configured for
 * (openblas_get_num_threads(), at most NR_PARALLEL_MAX_THREADS), so OPENBLAS_NUM_THREADS
 * keeps governing netrun's math. Helpers are started on first need, detached and with
 * every signal blocked (signals such as the CLI's SIGINT go to the program's own
 * threads); they sleep on a condition variable between jobs and live as long as the
 * process. Nothing is owned by the caller and nothing needs freeing.
 *
 * Who may call, thread safety. Any thread, at any time, also from inside a part. The pool
 * serves one job at a time: a caller that finds it busy (another thread's job, or a call
 * from inside a part) runs all its parts itself, in order, on its own thread.
 */
#ifndef NR_PARALLEL_H
#define NR_PARALLEL_H

#include <stdbool.h>
#include <stdint.h>

/* Most threads a job runs on, caller included. */
#define NR_PARALLEL_MAX_THREADS 16
/* Most parts a job may have (nr__parallel_run). */
#define NR_PARALLEL_MAX_PARTS 32
/* Parts per thread a job is cut into: more than one, so that a caller whose helper is
 * descheduled (the machine is shared) takes over most of the work instead of waiting. */
#define NR_PARALLEL_PARTS_PER_THREAD 4

/* One part of a job: does part `part` of `parts`; false if it failed (out of memory). */
typedef bool (*nr_parallel_part_fn)(void *ctx, int part, int parts);

/* How many threads a job may use now: openblas_get_num_threads() clamped to
 * [1, NR_PARALLEL_MAX_THREADS]. */
int nr__parallel_threads(void);

/* Helpers poll for the next job for a while after each job, and the caller for the last
 * parts of its job, before they sleep (waking a sleeping thread costs tens of microseconds
 * in a virtual machine, about what a small layer's job takes). While other processes of
 * this program need the CPUs between jobs (a Python layer's worker running its call),
 * polling only delays them: nr__parallel_hush(+1) stops it, nr__parallel_hush(-1) undoes
 * that (a count, so several threads may hush at once). The worker pool hushes for each
 * wait on a worker's reply. */
void nr__parallel_hush(int delta);

/* The grain a parameter blob is split by for the SGD step (sgd_updates.c) and for clearing
 * its diff (net.c): the same ranges, so that a thread clears the part it then updates. */
#define NR_PARALLEL_PARAM_GRAIN 32768

/* Runs fn(ctx, p, parts) for every p < parts (at most NR_PARALLEL_MAX_PARTS) on the
 * caller and up to nr__parallel_threads() - 1 helpers, and returns when all are done. A
 * part that fails on a helper is run again on the caller. True if every part finally
 * returned true. ctx is borrowed for the call. */
bool nr__parallel_run(nr_parallel_part_fn fn, void *ctx, int parts);

/* The grain for nr__parallel_for over units of per_unit elements each: parts of at least
 * ~64 K elements (below that a helper's hand-over costs more than the part); no split
 * when a unit is empty. */
static inline int64_t nr__parallel_grain(int64_t per_unit) {
  if (per_unit <= 0) return INT64_MAX;
  return per_unit >= 65536 ? 1 : 65536 / per_unit;
}

/* Calls fn(ctx, lo, hi) over a partition of [0, n) into contiguous ranges, each at least
 * `grain` long (grain <= 0: 1) and at most NR_PARALLEL_PARTS_PER_THREAD per thread, run as
 * the parts of one job (nr__parallel_run), and returns when all are done. With one
 * thread, or a single range, fn(ctx, 0, n) runs on the caller. For loops whose iterations
 * write disjoint memory. */
void nr__parallel_for(int64_t n, int64_t grain, void (*fn)(void *ctx, int64_t lo, int64_t hi),
                      void *ctx);

#endif
