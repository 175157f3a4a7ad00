/* snapshot_prefix.h: what a training run does to its snapshot_prefix besides writing
 * snapshots into it.
 *
 * Snapshots are written atomically: <prefix>_iter_N.caffemodel is first written to
 * <prefix>_iter_N.caffemodel.tmp.<pid> and renamed (proto/binary.c). A run killed mid-write
 * leaves that temp file behind; the next run with the same prefix removes it. Two runs with
 * the same prefix would overwrite each other's snapshots without a word: a run may hold an
 * exclusive lock on the prefix (<prefix>.lock, flock(2): the kernel drops it when the holder
 * dies, so a killed run never blocks the next one) and a second run then fails at start.
 */
#ifndef NR_SNAPSHOT_PREFIX_H
#define NR_SNAPSHOT_PREFIX_H

#include <stdio.h>

#include "nr_status.h"

/* Takes the lock on prefix: *fd (new; nr_snapshot_unlock) holds it. Errors: NR_ERR_INPUT
 * naming the prefix and the holder's pid when another process holds it; NR_ERR_IO when the
 * lock file cannot be created (its directory must exist: the caller checks that first). */
nr_status nr_snapshot_lock(const char *prefix, int *fd, nr_error *err);
/* Drops the lock and removes the lock file; fd < 0 is a no-op. */
void nr_snapshot_unlock(const char *prefix, int fd);
/* Removes the temp files of snapshots of prefix left by processes that no longer run,
 * logging each on log (may be NULL). A directory that cannot be listed has nothing to
 * remove; only NR_ERR_NOMEM is an error. */
nr_status nr_snapshot_remove_stale(const char *prefix, FILE *log, nr_error *err);

#endif
