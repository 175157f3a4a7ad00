/* pybind.h: what a backend for Python layers keeps about one layer's Python object, the
 * same for the worker pool (ipc/pool_call.c) and the in-process library (worker/inproc.c):
 *
 * - the slot cache: for each bottom, top and parameter of the layer, the blob and the
 *   generation the Python side last saw, so a call sends (or rebinds) only what changed;
 * - which tops are one of the bottoms (in-place layers), told to the object at creation;
 * - the add_blob rule: self.blobs.add_blob binds the next parameter the layer already has
 *   (a re-setup after a restart, weights loaded before setup) or appends a new one;
 * - a reshape Python reported, applied to the layer's blob;
 * - the text that names a layer call in errors, "pyloss.EuclideanLoss.forward (layer 'loss',
 *   phase TRAIN, iteration 12)", and the message of a Python exception raised in it.
 *
 * pybind.c is compiled into nr_ipc and into libnetrun-pyinproc.so, which does not link the
 * engine: nothing here calls an engine function; the few it needs come from the caller in
 * an nr_pybind_engine (the engine's own functions, or the in-process host table).
 *
 * Ownership: a binding borrows its layer and the layer's blobs, and owns its slot arrays
 * (nr__pybind_free). Not thread safe: one thread at a time uses a binding.
 */
#ifndef NR_PYBIND_H
#define NR_PYBIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blob.h"
#include "layer.h"
#include "pylayer.h"
#include "wire.h" /* NR_SLOT_* */

/* The engine functions a binding needs (all required). */
typedef struct nr_pybind_engine {
  nr_status (*blob_reshape)(nr_blob *b, int naxes, const int64_t *dims, nr_error *err);
  nr_status (*layer_add_param)(nr_layer *l, int naxes, const int64_t *dims, nr_blob **out,
                               nr_error *err);
  char *(*blob_shape_str)(const nr_blob *b, char *buf, size_t len);
} nr_pybind_engine;

/* What the Python side last saw in one slot: blob b at generation gen (valid). */
typedef struct nr_pybind_slot {
  nr_blob *b;
  uint64_t gen;
  bool valid;
} nr_pybind_slot;

typedef struct nr_pybind {
  nr_layer *l;         /* borrowed: the layer whose blobs these are */
  nr_pybind_slot *bot; /* owned: l->nbottom slots */
  nr_pybind_slot *top; /* owned: l->ntop slots */
  nr_pybind_slot *par; /* owned: npar_cap slots (at least l->nblobs) */
  int npar_cap;
  int npre;            /* parameters the layer had before its object's first setup */
  int bound;           /* parameters the object's self.blobs holds */
} nr_pybind;

/* Starts a binding of l with empty slots. NR_ERR_NOMEM. */
nr_status nr__pybind_init(nr_pybind *s, nr_layer *l, nr_error *err);
/* Frees the slot arrays; the layer is untouched. A zeroed binding is fine. */
void nr__pybind_free(nr_pybind *s);

/* The layer's Python object was (re)created: it has seen no blob yet, and its self.blobs
 * holds the parameters the layer had before the object's first setup (first: this is that
 * first setup, so count them now). NR_ERR_NOMEM. */
nr_status nr__pybind_fresh(nr_pybind *s, bool first, nr_error *err);

/* The layer's blob in slot (kind NR_SLOT_*, idx), or NULL if it has no such slot. */
static inline nr_blob *nr__pybind_blob(const nr_pybind *s, int kind, int idx) {
  const nr_layer *l = s->l;
  if (kind == NR_SLOT_BOTTOM) return idx >= 0 && idx < l->nbottom ? l->bottom[idx] : NULL;
  if (kind == NR_SLOT_TOP) return idx >= 0 && idx < l->ntop ? l->top[idx] : NULL;
  return idx >= 0 && idx < l->nblobs ? l->blobs[idx] : NULL;
}

/* Parameters the Python side knows of: those its self.blobs holds. */
static inline int nr__pybind_npar(const nr_pybind *s) {
  return s->bound < s->l->nblobs ? s->bound : s->l->nblobs;
}

/* Slots whose blob the Python side has not seen as it is now (bottoms, tops, then its
 * nr__pybind_npar parameters). 0 in steady state: a call then sends nothing. */
int nr__pybind_nstale(const nr_pybind *s);

/* Calls fn for each of those slots, in that order, with the layer's blob there, and
 * marks the slot seen when fn succeeds. Stops at fn's first failure and returns it (fn
 * fills err as it likes). */
typedef nr_status (*nr_pybind_visit)(void *arg, int kind, int idx, nr_blob *b, nr_error *err);
nr_status nr__pybind_sync(nr_pybind *s, nr_pybind_visit fn, void *arg, nr_error *err);

/* The Python side has just been given blob b as it is now: every slot holding it is seen
 * (a blob can sit in several: an in-place top is also a bottom). */
void nr__pybind_mark(nr_pybind *s, nr_blob *b);

/* Python reshaped slot (kind, idx) (within its capacity: the memory it sees is the blob's
 * own): reshape the layer's blob the same way, with the engine's validation. When the
 * blob kept its memory, the Python side sees it as it is. A slot the layer does not have
 * is skipped (the pool refuses such a reply before it applies any of it). The engine's
 * errors. */
nr_status nr__pybind_apply_shape(nr_pybind *s, const nr_pybind_engine *eng, int kind, int idx,
                                 int nd, const int64_t *dims, nr_error *err);

/* self.blobs.add_blob(*dims): binds the next parameter the layer already has (its shape
 * must be dims: NR_ERR_INPUT otherwise) or appends a new one (engine's layer_add_param),
 * and counts it as held by the object. *out (borrowed) is that parameter. The caller marks
 * it seen once the Python side has it. Errors: NR_ERR_INPUT, NR_ERR_NOMEM, the engine's. */
nr_status nr__pybind_add_param(nr_pybind *s, const nr_pybind_engine *eng, int nd,
                               const int64_t *dims, nr_blob **out, nr_error *err);

/* For each top of l, the index of the bottom it is (in place), or -1: ntop entries. */
void nr__pybind_aliases(const nr_layer *l, int *out);

/* "module.Class.method (layer 'name', phase TRAIN, iteration 12)" into buf: how every error
 * of a Python layer call starts, whichever backend ran it. */
void nr__pybind_describe(const nr_layer *l, nr_py_method m, char *buf, size_t len);

/* The error of method m of l raising a Python exception: NR_ERR_PYTHON with "<describe>
 * raised Type: message" and the traceback's last 12000 bytes. type NULL or empty:
 * "Exception"; msg and tb may be NULL. */
nr_status nr__pybind_py_error(const nr_layer *l, nr_py_method m, const char *type,
                              const char *msg, const char *tb, nr_error *err);

#endif
