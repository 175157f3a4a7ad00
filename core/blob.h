/* blob.h: N-D float32 tensors with a data and a diff buffer, as Caffe's Blob.
 *
 * A blob has a shape (0 to NR_MAX_AXES axes; a 0-axis blob is a scalar with count 1; a
 * never-shaped blob has count 0 and no memory) and one buffer holding `capacity` floats of
 * data followed by `capacity` floats of diff. Reshaping allocates only when the count grows
 * past the capacity; fresh memory is zero-filled and old contents are not kept.
 *
 * Memory comes from an nr_allocator, so the worker pool can place every blob in shared
 * memory without any layer knowing. Buffers are reference counted: nr_blob_share() makes
 * two blobs use one buffer (parameter sharing, test nets sharing trained weights). Each time
 * a blob's buffer changes, `generation` grows, so a reader that caches a mapping (a worker's
 * NumPy view) knows to rebuild it.
 *
 * Ownership: the net owns its blobs; layers borrow bottoms and tops. Not thread safe.
 */
#ifndef NR_BLOB_H
#define NR_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nr_status.h"

#define NR_MAX_AXES 32
/* Refuse any single blob larger than this many floats (absurd shapes end in an error,
 * not in an OOM kill). 2^33 floats = 32 GiB. */
#define NR_MAX_BLOB_COUNT ((int64_t)1 << 33)

/* Where blob memory comes from. alloc returns zero-filled memory of `bytes` bytes aligned
 * to 64 and an opaque handle passed back to free. (Optional) `ctx` is the allocator's own
 * state. Implementations: nr_allocator_malloc() here, the shared-memory arena in ipc/. */
typedef struct nr_allocator {
  void *ctx;
  nr_status (*alloc)(void *ctx, size_t bytes, void **ptr, void **handle, nr_error *err);
  void (*free)(void *ctx, void *ptr, void *handle);
} nr_allocator;

/* The process-wide heap allocator (borrowed, static). */
const nr_allocator *nr_allocator_malloc(void);

/* One allocation: `capacity` floats of data then `capacity` floats of diff. */
/* A buffer (data and diff of `capacity` floats each) shared by the blobs that alias it and
 * by anyone else who retained it (a front-end's array views): freed with the allocator
 * that made it when the last reference goes. The count is atomic: references may be
 * dropped from another thread than the one running the net. */
typedef struct nr_buf {
  int refs;
  int64_t capacity;
  float *base;
  void *handle;              /* the allocator's handle (e.g. an shm segment) */
  const nr_allocator *alloc; /* borrowed */
} nr_buf;

typedef struct nr_blob {
  char *name;          /* owned; may be NULL for anonymous blobs */
  int num_axes;
  int64_t shape[NR_MAX_AXES];
  int64_t count;       /* product of shape; 1 for 0 axes; 0 before the first reshape */
  bool shaped;         /* false until the first reshape */
  float *data;         /* NULL while capacity is 0 */
  float *diff;
  nr_buf *buf;         /* owned reference */
  nr_buf *diff_buf;    /* owned reference or NULL: when set, diff lives here and not in buf
                          (a parameter sharing only its data: nr_blob_share_data) */
  const nr_allocator *alloc; /* borrowed */
  uint64_t generation; /* grows whenever data/diff move or shape changes */
  void *user;          /* (optional) owner-defined tag, e.g. the ipc layer's id */
} nr_blob;

/* New unshaped blob. name is copied (may be NULL); alloc NULL = malloc allocator. */
nr_buf *nr_buf_retain(nr_buf *buf);  /* +1 reference; returns buf (NULL is a no-op) */
void nr_buf_release(nr_buf *buf);      /* -1 reference; frees at 0 (NULL is a no-op) */

nr_status nr_blob_create(const char *name, const nr_allocator *alloc, nr_blob **out,
                         nr_error *err);
void nr_blob_destroy(nr_blob *b);

/* Reshape to `naxes` dims. Errors: negative dim, more than NR_MAX_AXES axes, count over
 * NR_MAX_BLOB_COUNT, out of memory. On error the blob is unchanged. */
nr_status nr_blob_reshape(nr_blob *b, int naxes, const int64_t *dims, nr_error *err);
/* Same shape as `other`. */
nr_status nr_blob_reshape_like(nr_blob *b, const nr_blob *other, nr_error *err);
/* Convenience for 4-D (num, channels, height, width). */
nr_status nr_blob_reshape4(nr_blob *b, int64_t n, int64_t c, int64_t h, int64_t w,
                           nr_error *err);

/* Make dst use src's buffer (data and diff) and shape. src must be shaped. */
void nr_blob_share(nr_blob *dst, nr_blob *src);
/* Make dst use src's data and shape, with a diff of its own (zero; Caffe's ShareData: a test
 * net's parameters see the trained values, their gradients stay apart). Readers that map a
 * blob's buffer whole (the worker pool) see buf's diff, not this one: Python layers do not
 * get such blobs (nr_net_share_trained). Error: out of memory (dst unchanged). */
nr_status nr_blob_share_data(nr_blob *dst, nr_blob *src, nr_error *err);

/* Exchanges the memory (buffer, data, diff) and the shape of a and b, without copying;
 * both generations grow, so a reader that caches a view of either remaps it. Names,
 * allocators and user tags stay where they were; each buffer keeps its own allocator for
 * its release. The prefetched data layers hand a ready batch to the net this way. */
void nr_blob_swap(nr_blob *a, nr_blob *b);

/* Product of dims [start, end). Axis indices may be negative (from the end). */
int64_t nr_blob_count_range(const nr_blob *b, int start, int end);
/* Canonical axis index for a possibly negative `axis`; -1 if out of range. */
int nr_blob_axis(const nr_blob *b, int axis);
/* Legacy accessors: dim i of the first four, 1 when absent. */
int64_t nr_blob_legacy_dim(const nr_blob *b, int i);
/* "64 1 28 28 (50176)" into buf; returns buf. */
char *nr_blob_shape_str(const nr_blob *b, char *buf, size_t len);
bool nr_blob_same_shape(const nr_blob *a, const nr_blob *b);

#endif
