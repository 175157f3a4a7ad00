/* runtime.c: the worker pool or the in-process backend, by the pool options (runtime.h). */
#include <stdlib.h>

#include "runtime.h"

struct nr_runtime {
  nr_pool *pool;          /* out of process; or */
  nr_py_backend *inproc;  /* --py-workers 0 */
};

nr_status nr_runtime_create(const nr_pool_opts *o, nr_runtime **out, nr_error *err) {
  if (o && !(o->timeout_sec >= 0))
    return nr_err_set(err, NR_ERR_INPUT, "Python call timeout: %g is not a number of seconds "
                      "(0 = no limit)", o->timeout_sec);
  nr_pool_opts fixed;
  if (o && o->timeout_sec >= 1e9) { /* inf and beyond 31 years: no limit, never an overflow */
    fixed = *o;
    fixed.timeout_sec = 0;
    o = &fixed;
  }
  if (o && o->max_blob_bytes < 0)
    return nr_err_set(err, NR_ERR_INPUT, "largest blob: %lld is not a byte count (0 = the "
                      "default, 4 GiB)", o->max_blob_bytes);
  nr_runtime *rt = calloc(1, sizeof *rt);
  if (!rt) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  nr_status s = o && o->nworkers == 0 ? nr_inproc_create(&rt->inproc, err)
                                      : nr_pool_create(o, &rt->pool, err);
  if (s != NR_OK) {
    free(rt);
    return s;
  }
  *out = rt;
  return NR_OK;
}

nr_py_backend *nr_runtime_backend(nr_runtime *rt) {
  if (!rt) return NULL;
  return rt->pool ? nr_pool_backend(rt->pool) : rt->inproc;
}

const nr_allocator *nr_runtime_allocator(nr_runtime *rt) {
  return rt && rt->pool ? nr_pool_allocator(rt->pool) : NULL;
}

nr_pool *nr_runtime_pool(nr_runtime *rt) { return rt ? rt->pool : NULL; }

void nr_runtime_destroy(nr_runtime *rt) {
  if (!rt) return;
  nr_pool_destroy(rt->pool);
  if (rt->inproc) nr_inproc_destroy(rt->inproc);
  free(rt);
}
