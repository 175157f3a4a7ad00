/* pylayer.h: the hook through which the net runs `type: "Python"` layers.
 *
 * The core never embeds Python itself. The Python layer type (core/layers/python.c) turns
 * each of setup / reshape / forward / backward into one call on an nr_py_backend, which the
 * worker pool (ipc/) implements by signalling a worker process, or an in-process embedding
 * implements for --py-workers 0. Without a backend, building a net with a Python layer is an
 * error that says how to get one.
 *
 * The backend keeps its per-layer state in the layer's priv. It may reshape the layer's tops
 * and add learnable blobs (self.blobs.add_blob) while serving a call; it must use
 * layer->ctx->alloc for any blob memory so the solver and weight files see it.
 */
#ifndef NR_PYLAYER_H
#define NR_PYLAYER_H

#include "layer.h"

typedef enum nr_py_method {
  NR_PY_SETUP = 0,
  NR_PY_RESHAPE,
  NR_PY_FORWARD,
  NR_PY_BACKWARD
} nr_py_method;

/* "setup", "reshape", "forward", "backward"; "?" for any other value. Inline: the
 * in-process library (which does not link the engine) names methods with it too. */
static inline const char *nr_py_method_name(nr_py_method m) {
  switch (m) {
    case NR_PY_SETUP: return "setup";
    case NR_PY_RESHAPE: return "reshape";
    case NR_PY_FORWARD: return "forward";
    case NR_PY_BACKWARD: return "backward";
  }
  return "?";
}

typedef struct nr_py_backend {
  void *ctx;
  /* Runs one method of layer l's Python object. NR_PY_SETUP creates the object first
   * (import module, instantiate class, set param_str and phase). */
  nr_status (*call)(void *ctx, nr_layer *l, nr_py_method m, nr_error *err);
  /* (optional) Forget layer l (the net is being destroyed). */
  void (*release)(void *ctx, nr_layer *l);
} nr_py_backend;

#endif
