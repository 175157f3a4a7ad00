/* descendants.h: nothing a Python layer starts outlives the run.
 *
 * A layer may start processes (os.fork, subprocess, a double fork, setsid). The process the
 * layer runs in (a netrun-worker, or netrun itself with --py-workers 0) makes itself their
 * subreaper (PR_SET_CHILD_SUBREAPER), so orphaned grandchildren come back to it instead of
 * init, and as it ends it kills and reaps every child it has, round after round, until none
 * is left. A worker killed outright cannot do this: the core then kills the worker's process
 * group (each worker leads its own), which holds what its layers started unless they
 * called setsid. */
#ifndef NR_DESCENDANTS_H
#define NR_DESCENDANTS_H

/* Make this process the subreaper of its descendants. */
void nr_adopt_descendants(void);
/* SIGKILL and reap every child of this process (orphans included), until none is left
 * (at most about 2 s). Call only as the process ends: it takes every child's exit status. */
void nr_end_descendants(void);

#endif
