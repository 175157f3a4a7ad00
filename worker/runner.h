/* runner.h: runs Python layer objects inside an embedded CPython — the code shared by the
 * netrun-worker executable (out of process) and libnetrun-pyinproc.so (--py-workers 0).
 *
 * The runner knows Python, NumPy and the `caffe` package; it does not know where blob
 * memory comes from. Its host (worker/server.c or worker/inproc.c) hands it "mappings"
 * (nr_rt_mapping_new: a Python object owning or borrowing a memory range) and serves the
 * two requests a layer can make while it runs: grow a blob (Blob.reshape past capacity)
 * and add a parameter blob (self.blobs.add_blob). NumPy views keep their mapping alive
 * through the array's base object.
 *
 * Threading: call everything with the GIL held (the worker holds it except while waiting
 * for a request; the in-process backend takes it per call).
 */
#ifndef NR_RUNNER_H
#define NR_RUNNER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>

/* Error of a failed Python call: exception type name, str(exc), formatted traceback.
 * Strings are malloc'd (any may be NULL); free with nr_rt_err_clear. */
typedef struct nr_rt_err {
  char *type;
  char *msg;
  char *tb;
} nr_rt_err;
void nr_rt_err_clear(nr_rt_err *e);
/* Fills e from a type/message pair (no traceback). */
void nr_rt_err_set(nr_rt_err *e, const char *type, const char *msg);

typedef struct nr_rt_host {
  void *ctx;
  /* Grow blob (kind, idx) of the layer whose host handle is hl to dims (count > current
   * capacity). On success: *map = new reference to a mapping, *cap = new capacity in
   * floats, return 0. On refusal: message in msg, return -1 (kind of error in *exc:
   * 0 ValueError, 1 MemoryError, 2 RuntimeError). */
  int (*grow)(void *ctx, void *hl, int kind, int idx, int nd, const int64_t *dims,
              PyObject **map, int64_t *cap, char *msg, size_t msglen, int *exc);
  /* Append a zero-filled parameter blob of dims (or bind the existing one with that
   * index on a restart). Same conventions. */
  int (*add_param)(void *ctx, void *hl, int nd, const int64_t *dims, PyObject **map,
                   int64_t *cap, char *msg, size_t msglen, int *exc);
} nr_rt_host;

/* The directory of the caffe package nr_rt_init is to put first on sys.path, into out:
 * NETRUN_PYTHON_DIR if it holds the package, else the copy installed beside the code that
 * runs (bin/../lib/netrun/python for netrun-worker, lib/netrun/python for the in-process
 * library: an installed tree uses its own copy wherever it was moved), the source tree's (a
 * build tree), the install prefix's; none there: the install prefix's all the same (the
 * import then fails naming it). */
void nr_rt_pkg_dir(char *out, size_t len);

/* Initializes CPython (Debian's interpreter; install_signal_handlers off, so SIGINT stays
 * with the host), NumPy and the caffe package from pkg_dir. layer_types (may be NULL) is
 * what caffe.layer_type_list() reports. Returns 0, or -1 with e filled. */
int nr_rt_init(const nr_rt_host *host, const char *pkg_dir, const char *layer_types,
               nr_rt_err *e);
/* The same for an interpreter that already runs, the caller holding the GIL (the user's
 * own Python, with the caffe package imported: pycaffe's in-process layers). Registers
 * _netrun in sys.modules and hands it to caffe._blob; sys.path and the caffe package are the
 * caller's, left as they are. 0, or -1 with *e set. */
int nr_rt_attach(const nr_rt_host *host, const char *layer_types, nr_rt_err *e);
/* Finalizes nothing (CPython + NumPy do not finalize cleanly); drops runner state. */
void nr_rt_shutdown(void);

/* A mapping object over [ptr, ptr+size). owned: munmap(ptr, size) when the last reference
 * (the runner's segment table, any NumPy view) goes. New reference, NULL on error. */
PyObject *nr_rt_mapping_new(void *ptr, size_t size, bool owned);
/* Bytes of a mapping (borrowed; one nr_rt_mapping_new made). */
size_t nr_rt_mapping_size(PyObject *map);

typedef struct nr_rt_layer nr_rt_layer;

typedef struct nr_rt_layer_info {
  const char *name, *module, *cls, *param_str, *source_dir;
  int phase, nbottom, ntop;
  const int *aliases; /* per top: index of the bottom it is (in-place), or -1 */
  /* A prefetched data layer (ipc/pool_prefetch.c): replica index, replica count (>= 1) and the
   * global index of the first batch this replica produces. nreplicas 0 = none, and
   * caffe.get_worker_info() returns None while this layer runs. */
  int replica, nreplicas;
  long long first_batch;
} nr_rt_layer_info;

/* Imports the module, instantiates the class, sets param_str and phase, builds the Blob
 * lists. hl is the host's handle for this layer (passed back to grow/add_param). */
nr_rt_layer *nr_rt_layer_create(const nr_rt_layer_info *info, void *hl, nr_rt_err *e);
void nr_rt_layer_destroy(nr_rt_layer *L);

/* The core says slot (kind, idx) now has this memory and shape. map borrowed (NULL for a
 * blob without memory). Param slots past the end are appended. 0 or -1 with e. */
int nr_rt_set_blob(nr_rt_layer *L, int kind, int idx, PyObject *map, int64_t cap,
                   bool shaped, int nd, const int64_t *dims, nr_rt_err *e);

/* Runs method m (0 setup, 1 reshape, 2 forward, 3 backward). prop: nprop bytes of
 * propagate_down for backward. 0, or -1 with e filled (exception type, str, traceback). */
int nr_rt_call(nr_rt_layer *L, int m, int nprop, const uint8_t *prop, nr_rt_err *e);

/* Reports blobs whose shape Python changed during the last call (Blob.reshape), then
 * forgets them. Returns the number reported. */
typedef void (*nr_rt_dirty_fn)(void *arg, int kind, int idx, int nd, const int64_t *dims);
int nr_rt_take_dirty(nr_rt_layer *L, nr_rt_dirty_fn fn, void *arg);

#endif
