/* runtime.h: the Python-layer runtime a front-end starts for its nets.
 *
 * Concept. A net with `type: "Python"` layers needs a backend that runs them (core/pylayer.h)
 * and, when they run out of process, an allocator that puts every blob in shared memory.
 * nr_runtime picks one from the pool options: nworkers 0 runs Python layers inside this
 * process (nr_inproc_create: libnetrun-pyinproc.so, loaded with dlopen), anything else starts
 * a worker pool (nr_pool_create; workers start lazily, so a net without Python layers costs
 * nothing). Both front-ends (the netrun CLI, the Python package) start their nets this way.
 *
 * Ownership: the runtime owns its pool or in-process backend. Nets built with its backend
 * and allocator must be destroyed before it. Threading: as nr_pool (one driving thread).
 */
#ifndef NR_RUNTIME_H
#define NR_RUNTIME_H

#include "pool.h"

typedef struct nr_runtime nr_runtime;

/* Starts a runtime for o (NULL: the pool's defaults). o->max_blob_bytes must be 0 (the
 * default) or a positive byte count. Errors: NR_ERR_INPUT for a bad option, NR_ERR_IO when
 * netrun-worker or libnetrun-pyinproc.so cannot be found or loaded, NR_ERR_NOMEM. *out is
 * set only on success. */
nr_status nr_runtime_create(const nr_pool_opts *o, nr_runtime **out, nr_error *err);
/* What to put in nr_net_opts.py / nr_solver_opts.py (borrowed; NULL for a NULL runtime). */
nr_py_backend *nr_runtime_backend(nr_runtime *rt);
/* What to put in nr_net_opts.alloc / nr_solver_opts.alloc (borrowed; NULL = the heap, for
 * the in-process backend and a NULL runtime). */
const nr_allocator *nr_runtime_allocator(nr_runtime *rt);
/* The pool, or NULL when Python layers run in process (borrowed; diagnostics). */
nr_pool *nr_runtime_pool(nr_runtime *rt);
/* Ends the workers or unloads nothing (the in-process library stays loaded); NULL is a
 * no-op. */
void nr_runtime_destroy(nr_runtime *rt);

#endif
