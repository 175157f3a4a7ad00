/* prefetch.h: a ring of batches computed ahead of the net by one thread, for the native
 * data layers (Data, ImageData).
 *
 * The thread fills the ring's slots in order with `fill` (one batch: data and, if the
 * layer has one, label floats); the layer's forward takes the oldest filled batch
 * (nr_prefetch_take copies it out and hands the slot back). When no batch is ready the
 * forward waits and the log says "Waiting for data" (the first time and every 1000th time
 * after, like Caffe's LOG_EVERY_N). An error of `fill` ends the thread; it is returned by
 * the take that would have used the failed batch (the batches filled before it are still
 * handed out). The thread starts with every signal but the faults blocked: SIGINT and the
 * worker pool's signals stay with the main thread.
 *
 * Batches come out in the order they were filled, whatever the timing, so a fill that
 * draws from its own rng in order keeps runs reproducible.
 */
#ifndef NR_PREFETCH_H
#define NR_PREFETCH_H

#include <stddef.h>
#include <stdio.h>

#include "nr_status.h"

typedef struct nr_prefetch nr_prefetch;

/* Fills one batch: data_floats floats at data, label_floats at label (NULL when 0). Runs on
 * the prefetch thread, one call at a time, with ctx to itself. */
typedef nr_status (*nr_prefetch_fill)(void *ctx, float *data, float *label, nr_error *err);

/* Allocates nslots batches and starts the thread. log gets the wait lines. NR_ERR_NOMEM. */
nr_status nr_prefetch_start(int nslots, size_t data_floats, size_t label_floats,
                            nr_prefetch_fill fill, void *ctx, FILE *log, nr_prefetch **out,
                            nr_error *err);
/* Copies the oldest filled batch to data (and label, if the ring has labels), waiting for
 * one if none is ready; the fill's error once the good batches are used up. */
nr_status nr_prefetch_take(nr_prefetch *p, float *data, float *label, nr_error *err);
/* Stops and joins the thread, frees the ring. NULL is fine. */
void nr_prefetch_stop(nr_prefetch *p);

#endif
