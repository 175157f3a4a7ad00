/* net.h: a network built from a NetParameter, as Caffe's Net.
 *
 * Building a net (nr_net_create) filters layers by NetState rules, inserts Split layers for
 * blobs with several consumers, creates every blob (with the allocator of the options, so a
 * worker pool can put them in shared memory), sets every layer up in order, records loss
 * weights, collects learnable parameters (sharing by ParamSpec name) and works out which
 * layers need backward. Then forward/backward run the layers in order.
 *
 * Ownership: the net owns its copy of the NetParameter (after filtering and splits), its
 * layers and blobs. Pointers handed out (nr_net_blob, ->outputs, ->learnable) are borrowed
 * and live as long as the net. Not thread safe.
 */
#ifndef NR_NET_H
#define NR_NET_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "blob.h"
#include "caffe.pb-c.h"
#include "layer.h"
#include "rng.h"

typedef struct nr_net_opts {
  int phase;                   /* NR_TRAIN or NR_TEST; overrides param->state->phase */
  int level;
  const char *const *stages;   /* (optional) borrowed */
  int nstages;
  const nr_allocator *alloc;   /* (optional) blob memory; NULL = heap */
  struct nr_py_backend *py;    /* (optional) runs Python layers */
  uint64_t seed;               /* fillers, Dropout */
  const int64_t *iter;         /* (optional) solver iteration for messages */
  const char *source_dir;      /* (optional) directory of the prototxt; the net keeps a copy */
  FILE *log;                   /* (optional) Caffe-style build log ("Creating Layer conv1") */
  /* (optional) Polled before each layer's forward and backward: non-zero stops the pass
   * with NR_ERR_INTERRUPT ("interrupted") and is reset to 0 (the error reports it). Set
   * from a signal handler (Ctrl-C). */
  volatile sig_atomic_t *interrupt;
  /* (optional) Data-parallel training: copied into the layers' context (nr_layer_ctx). */
  int solver_rank, solver_count;
} nr_net_opts;

typedef struct nr_net nr_net;
struct nr_net {
  char *name;
  int phase;
  Caffe__NetParameter *param;  /* owned: filtered, split-inserted */
  nr_layer **layers;
  int nlayers;
  bool *layer_need_backward;   /* per layer */
  nr_blob **blobs;             /* every blob in creation order, owned */
  int nblobs;
  float *blob_loss_weight;     /* per blob (index as in blobs) */
  int **top_blob;              /* per layer, per top: its index in blobs */
  bool *blob_need_backward;
  nr_blob **inputs;            /* tops of Input layers, borrowed */
  int ninputs;
  nr_blob **outputs;           /* blobs nobody consumes, alphabetical, borrowed */
  int noutputs;
  /* Parameters: every layer blob, in layer order. */
  nr_blob **params;
  int nparams;
  int *param_owner;            /* index into params of the owner, or -1 when it owns itself */
  int *param_layer;            /* layer index of each param */
  /* Learnable parameters: owners only, what a solver updates. */
  nr_blob **learnable;
  int nlearnable;
  float *lr_mult;
  float *decay_mult;
  bool *has_lr_mult, *has_decay_mult;
  nr_rng rng;
  nr_layer_ctx ctx;
  char *source_dir;            /* owned copy of opts->source_dir (ctx.source_dir points here):
                                  a Python layer set up again after a worker restart needs it
                                  long after the caller freed its string */
  double last_forward_loss;
  volatile sig_atomic_t *interrupt; /* borrowed from the options */
  /* nr_net_share_trained: the net whose values each Python layer's parameters take before
   * that layer's forward (borrowed; must outlive this net), and per layer the index of its
   * layer there (-1: none). */
  const nr_net *trained_from;
  int *trained_layer;
  /* How many runs of layers went through sample slices (net.c), forward and backward: for
   * tests and benchmarks. */
  int64_t slice_runs;
};

/* Builds a net. param is borrowed (copied). Errors name the net and the layer:
 * "net 'LeNet': layer 1 'conv1' (Convolution): ...". */
nr_status nr_net_create(const Caffe__NetParameter *param, const nr_net_opts *opts,
                        nr_net **out, nr_error *err);
void nr_net_destroy(nr_net *n);

/* Forward over all layers (reshape then forward each); *loss (may be NULL) gets the sum of
 * the weighted losses. */
nr_status nr_net_forward(nr_net *n, float *loss, nr_error *err);
/* Backward over the layers that need it, in reverse. */
nr_status nr_net_backward(nr_net *n, nr_error *err);
/* Reshape every layer in order (after an input changed shape). */
nr_status nr_net_reshape(nr_net *n, nr_error *err);
/* Per-layer forward/backward, for `netrun time`. */
nr_status nr_net_forward_layer(nr_net *n, int i, float *loss, nr_error *err);
nr_status nr_net_backward_layer(nr_net *n, int i, nr_error *err);
/* As nr_net_backward_layer, but a layer with parameters runs its backward even where the
 * net needs none (a deploy net has no loss): its parameters' gradients are computed, its
 * bottoms get gradients only where the net needs them. Caffe's `caffe time` times a deploy
 * net's backward this way; `netrun time` does too. */
nr_status nr_net_backward_layer_all(nr_net *n, int i, nr_error *err);

void nr_net_clear_param_diffs(nr_net *n);
/* data -= diff for every learnable parameter. */
void nr_net_update(nr_net *n);

/* Blob or layer by name; NULL if absent. Borrowed. */
nr_blob *nr_net_blob(const nr_net *n, const char *name);
int nr_net_layer_index(const nr_net *n, const char *name);

/* Hands arrays to the net's MemoryData layer `layer` (NULL: the first layer, which must be
 * MemoryData, as pycaffe's set_input_arrays requires): n items of data (n x C x H x W floats,
 * the layer's C, H, W) and labels (n floats), borrowed until the next call or the net's end;
 * each forward takes the next batch_size items, wrapping around. Errors (NR_ERR_INPUT): no
 * such MemoryData layer, n not a positive multiple of batch_size. */
nr_status nr_net_set_input_arrays(nr_net *n, const char *layer, const float *data,
                                  const float *labels, int64_t count, nr_error *err);
/* The batch_size, channels, height and width of MemoryData layer `layer` (NULL: the first
 * layer); NR_ERR_INPUT when there is no such layer. */
nr_status nr_net_memory_data_dims(const nr_net *n, const char *layer, int64_t dims[4],
                                  nr_error *err);

/* Makes dst's parameters use src's data by layer name (Caffe's ShareTrainedLayersWith):
 * same blob count and shapes required. As in Caffe only the data is shared: each parameter
 * of dst keeps a diff of its own, so a backward of dst (pycaffe) or a layer writing its
 * gradients there leaves src's untouched. A Python layer's parameters (which its worker maps
 * as one buffer of data and diff) stay dst's own and take src's values before each forward
 * of that layer instead. src must outlive dst. */
nr_status nr_net_share_trained(nr_net *dst, const nr_net *src, nr_error *err);
/* Copies parameters by layer name from a NetParameter carrying blobs (Caffe's
 * CopyTrainedLayersFrom): layers absent from it keep their values; a shape mismatch is an
 * error naming the layer and both shapes. With a log (may be NULL) it logs Caffe's
 * "Copying source layer X" / "Ignoring source layer X" and, when source (the file's name;
 * may be NULL) is given and nothing was copied, a warning saying why. */
nr_status nr_net_copy_from(nr_net *n, const Caffe__NetParameter *weights, const char *source,
                           FILE *log, nr_error *err);
/* Loads one or more comma-separated .caffemodel files (nr_net_copy_from each). */
nr_status nr_net_load_weights(nr_net *n, const char *paths, FILE *log, nr_error *err);
/* Serializes the net's layers with their parameter blobs (diffs too if write_diff).
 * *out is new; free with protobuf_c_message_free_unpacked(..., NULL). */
nr_status nr_net_to_proto(const nr_net *n, bool write_diff, Caffe__NetParameter **out,
                          nr_error *err);

/* Test scores: the sum, over batches, of every element of every output blob (Caffe's test
 * loop in the tool and the solver), sized from the outputs' shapes at the first batch.
 * Start from a zeroed struct; nr_net_scores_add after each forward; sum[k] / batches is
 * the k-th element's mean, in output order. An output whose element count changed since the
 * first batch is an NR_ERR_INPUT naming it and both counts (averages over elements that
 * come and go mean nothing, and the sums must never be read past their end). */
typedef struct nr_net_scores {
  double *sum;      /* owned; one per element of every output at the first batch */
  int64_t *counts;  /* owned; element count of each output at the first batch */
  int64_t n;        /* total elements */
  int batches;
} nr_net_scores;

nr_status nr_net_scores_add(nr_net_scores *s, const nr_net *n, nr_error *err);
void nr_net_scores_free(nr_net_scores *s);
/* The loss weight of output j (0 for a plain output). */
float nr_net_output_loss_weight(const nr_net *n, int j);

/* Does the layer pass its NetState rules? (Caffe's StateMeetsRule over include/exclude.) */
bool nr_net_state_includes(const Caffe__NetState *state, const Caffe__LayerParameter *layer);

#endif
