/* layer.h: the layer contract (Caffe's setup / reshape / forward / backward).
 *
 * A layer type is one `const nr_layer_type` in one file under core/layers/, listed once in
 * core/layers/layer_list.h. The net creates an nr_layer per LayerParameter, points it at its
 * bottom and top blobs, and calls:
 *   setup    once, when the net is built, after the bottoms are shaped: read the layer's
 *            parameters, check bottoms, create learnable blobs (nr_layer_add_param) and
 *            private state (priv).
 *   reshape  right after setup, and before every forward: shape the tops (and buffers) from
 *            the bottoms. Must be cheap when nothing changed.
 *   forward  compute tops from bottoms.
 *   backward (optional) compute bottom diffs where prop_down[i] (overwrite them) and
 *            accumulate (+=) parameter diffs. NULL = the layer has no gradient.
 *   destroy  (optional) free priv. The net frees bottoms/tops/blobs itself.
 *
 * Ownership: the layer owns `blobs` (its learnable parameters; a blob shared by ParamSpec
 * name is still one object per layer, sharing a buffer) and `priv`; bottoms and tops are
 * borrowed from the net; `param` is borrowed from the net's NetParameter.
 * Errors: each function writes the innermost message ("bottom has 3 axes, expected 4"); the
 * net prefixes it with the layer's name and type.
 */
#ifndef NR_LAYER_H
#define NR_LAYER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "blob.h"
#include "caffe.pb-c.h"
#include "nr_status.h"
#include "rng.h"

typedef struct nr_layer nr_layer;
struct nr_py_backend;

enum { NR_TRAIN = 0, NR_TEST = 1 };

/* What a layer may need from the net that runs it. The gradient checker and unit tests
 * fill one by hand. */
typedef struct nr_layer_ctx {
  nr_rng *rng;                  /* fillers, Dropout, DummyData */
  const nr_allocator *alloc;    /* blob memory (shared memory when a worker pool runs) */
  struct nr_py_backend *py;     /* (optional) runs Python layers; NULL = none available */
  const int64_t *iter;          /* (optional) current solver iteration, for messages */
  const char *net_name;         /* (optional) for messages */
  const char *source_dir;       /* (optional) directory of the prototxt (Python imports) */
  FILE *log;                    /* (optional) the net's log (nr_net_opts.log); NULL = none */
  /* Data-parallel training (core/dist.h): this process's rank of solver_count. Native data
   * layers read item i only when i % solver_count == solver_rank (Caffe's DataLayer::Skip).
   * solver_count <= 1: one process, every item. */
  int solver_rank, solver_count;
} nr_layer_ctx;

typedef struct nr_layer_type {
  const char *name; /* the prototxt type string */
  /* Bottom/top counts accepted; -1 = no limit. Checked by the net before setup. */
  int min_bottoms, max_bottoms, min_tops, max_tops;
  /* Loss layers default to loss_weight 1 on top 0 (Caffe's C++ loss layers). */
  bool is_loss;
  /* Bit i set: force_backward never sends a gradient to bottom i (labels of loss layers). */
  uint32_t no_force_backward;
  nr_status (*setup)(nr_layer *l, nr_error *err);
  nr_status (*reshape)(nr_layer *l, nr_error *err);
  nr_status (*forward)(nr_layer *l, nr_error *err);
  nr_status (*backward)(nr_layer *l, nr_error *err); /* (optional) */
  void (*destroy)(nr_layer *l);                      /* (optional) */
  /* (optional) Layers that compute each sample of axis 0 on its own (convolution, pooling,
   * ReLU): the same work cut by samples, so that the net can run a run of such layers on
   * each thread's share of the batch (net.c, "sample slices"). All three, or none:
   *   forward_samples   the forward for samples [n0, n1) of every bottom and top;
   *   backward_samples  the bottom diffs (where prop_down) for samples [n0, n1), and no
   *                     parameter diffs;
   *   backward_params   the parameter diffs for the whole batch, the only backward work
   *                     across samples (NULL when the layer has no parameters).
   * Called after reshape, from any thread, perhaps at the same time for disjoint sample
   * ranges; each must give the bits forward / backward give. can_slice (optional) says
   * whether the layer can be cut now (true when NULL).
   *   params_samples    (optional, with backward_params) the share of the parameter diffs'
   *                     work that samples [n0, n1) alone allow, done in the slice where
   *                     they are in cache (a convolution's weight-gradient chunks), kept by
   *                     the layer for the backward_params that follows. Called before
   *                     backward_samples of the same range, for every range of one cut of
   *                     the batch or for none; backward_params gives the same bits
   *                     either way. */
  nr_status (*forward_samples)(nr_layer *l, int64_t n0, int64_t n1, nr_error *err);
  nr_status (*backward_samples)(nr_layer *l, int64_t n0, int64_t n1, nr_error *err);
  nr_status (*backward_params)(nr_layer *l, nr_error *err);
  nr_status (*params_samples)(nr_layer *l, int64_t n0, int64_t n1, nr_error *err);
  bool (*can_slice)(const nr_layer *l);
} nr_layer_type;

struct nr_layer {
  const nr_layer_type *type;
  const Caffe__LayerParameter *param; /* borrowed */
  const char *name;                   /* borrowed from param */
  int index;                          /* position in the net */
  int phase;                          /* NR_TRAIN or NR_TEST */
  nr_blob **bottom;                   /* borrowed blobs, array owned by the layer */
  int nbottom;
  nr_blob **top;
  int ntop;
  bool *prop_down;                    /* one per bottom, set by the net before backward */
  nr_blob **blobs;                    /* learnable parameters, owned */
  int nblobs;
  void *priv;                         /* type-specific state, freed by type->destroy */
  const nr_layer_ctx *ctx;            /* borrowed */
};

/* The table of every layer type (NULL-terminated) and a lookup by type string. */
extern const nr_layer_type *const nr_layer_types[];
const nr_layer_type *nr_layer_type_find(const char *name);
/* "AbsVal, Accuracy, ..." of all known types, into buf. */
void nr_layer_type_list(char *buf, size_t len);

/* Appends a new zero-filled learnable blob of the given shape (allocated with ctx->alloc),
 * returns it borrowed in *out (may be NULL). */
nr_status nr_layer_add_param(nr_layer *l, int naxes, const int64_t *dims, nr_blob **out,
                             nr_error *err);

/* Creates a standalone layer for tests and tools: the param, bottoms and tops are borrowed;
 * runs no setup. Free with nr_layer_destroy (which calls type->destroy and frees blobs). */
nr_status nr_layer_create(const Caffe__LayerParameter *param, const nr_layer_ctx *ctx,
                          nr_blob **bottom, int nbottom, nr_blob **top, int ntop,
                          nr_layer **out, nr_error *err);
void nr_layer_destroy(nr_layer *l);

/* Checks bottom/top counts against the type, then runs setup and reshape. */
nr_status nr_layer_setup(nr_layer *l, nr_error *err);

/* Seeds a layer's own generator (the data layers' crops, mirrors and shuffles) from the
 * net's without advancing it, so adding a data layer does not change the weights'
 * initialisation; the layer's index keeps two data layers apart. */
void nr_layer_seed_own_rng(const nr_layer *l, nr_rng *rng);

/* Shapes a data layer's tops: top 0 n x c x h x w, and top 1 (the label, if the layer has
 * it) n. */
nr_status nr_layer_reshape_data_tops(nr_layer *l, int64_t n, int64_t c, int64_t h, int64_t w,
                                     nr_error *err);

#endif
