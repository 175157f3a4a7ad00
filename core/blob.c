#include "blob.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Large buffers are anonymous mappings: zero already, and a page costs nothing until it is
 * first touched (a net's buffers that a run never writes, e.g. under `netrun check`, cost no
 * time; memset would fault in every page). The handle is then the mapping's length. */
#define NR_MMAP_MIN ((size_t)256 << 10)

static nr_status malloc_alloc(void *ctx, size_t bytes, void **ptr, void **handle,
                              nr_error *err) {
  (void)ctx;
  size_t rounded = (bytes + 63) & ~(size_t)63;
  if (rounded >= NR_MMAP_MIN) {
    void *p = mmap(NULL, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      return nr_err_set(err, NR_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
    *ptr = p;
    *handle = (void *)(uintptr_t)rounded;
    return NR_OK;
  }
  void *p = aligned_alloc(64, rounded ? rounded : 64);
  if (!p) return nr_err_set(err, NR_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
  memset(p, 0, rounded);
  *ptr = p;
  *handle = NULL;
  return NR_OK;
}

static void malloc_free(void *ctx, void *ptr, void *handle) {
  (void)ctx;
  if (handle)
    munmap(ptr, (size_t)(uintptr_t)handle);
  else
    free(ptr);
}

static const nr_allocator nr__malloc_allocator = {NULL, malloc_alloc, malloc_free};

const nr_allocator *nr_allocator_malloc(void) { return &nr__malloc_allocator; }

nr_buf *nr_buf_retain(nr_buf *buf) {
  if (buf) __atomic_add_fetch(&buf->refs, 1, __ATOMIC_RELAXED);
  return buf;
}

void nr_buf_release(nr_buf *buf) {
  if (!buf || __atomic_sub_fetch(&buf->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
  buf->alloc->free(buf->alloc->ctx, buf->base, buf->handle);
  free(buf);
}


nr_status nr_blob_create(const char *name, const nr_allocator *alloc, nr_blob **out,
                         nr_error *err) {
  nr_blob *b = calloc(1, sizeof *b);
  if (!b) return nr_err_set(err, NR_ERR_NOMEM, "out of memory creating blob");
  if (name && !(b->name = strdup(name))) {
    free(b);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory creating blob");
  }
  b->alloc = alloc ? alloc : nr_allocator_malloc();
  *out = b;
  return NR_OK;
}

void nr_blob_destroy(nr_blob *b) {
  if (!b) return;
  nr_buf_release(b->diff_buf);
  nr_buf_release(b->buf);
  free(b->name);
  free(b);
}

/* A buffer of `copies` x capacity floats from alloc (2: data and diff; 1: a diff alone). */
static nr_status buf_new(const nr_allocator *alloc, int64_t capacity, int copies, nr_buf **out,
                         nr_error *err) {
  nr_buf *nb = calloc(1, sizeof *nb);
  if (!nb) return nr_err_set(err, NR_ERR_NOMEM, "out of memory reshaping blob");
  void *ptr = NULL, *handle = NULL;
  nr_status s = alloc->alloc(alloc->ctx, (size_t)capacity * (size_t)copies * sizeof(float),
                             &ptr, &handle, err);
  if (s != NR_OK) {
    free(nb);
    return s;
  }
  nb->refs = 1;
  nb->capacity = capacity;
  nb->base = ptr;
  nb->handle = handle;
  nb->alloc = alloc;
  *out = nb;
  return NR_OK;
}

nr_status nr_blob_reshape(nr_blob *b, int naxes, const int64_t *dims, nr_error *err) {
  if (naxes < 0 || naxes > NR_MAX_AXES)
    return nr_err_set(err, NR_ERR_INPUT, "blob '%s': %d axes (at most %d allowed)",
                      b->name ? b->name : "", naxes, NR_MAX_AXES);
  int64_t count = 1;
  for (int i = 0; i < naxes; i++) {
    if (dims[i] < 0)
      return nr_err_set(err, NR_ERR_INPUT, "blob '%s': negative dimension %lld at axis %d",
                        b->name ? b->name : "", (long long)dims[i], i);
    if (dims[i] && count > NR_MAX_BLOB_COUNT / dims[i])
      count = NR_MAX_BLOB_COUNT + 1;
    else
      count *= dims[i];
  }
  if (count > NR_MAX_BLOB_COUNT) {
    char tmp[512];
    int off = 0;
    for (int i = 0; i < naxes && off < (int)sizeof tmp - 24; i++)
      off += snprintf(tmp + off, sizeof tmp - (size_t)off, "%s%lld", i ? "x" : "",
                      (long long)dims[i]);
    return nr_err_set(err, NR_ERR_INPUT,
                      "blob '%s': shape %s is too large (more than %lld elements)",
                      b->name ? b->name : "", tmp, (long long)NR_MAX_BLOB_COUNT);
  }
  int64_t cap = b->buf ? b->buf->capacity : 0;
  if (b->diff_buf && b->diff_buf->capacity < cap) cap = b->diff_buf->capacity;
  if (count > cap) {
    nr_buf *nb = NULL;
    if (buf_new(b->alloc, count, 2, &nb, err) != NR_OK)
      return nr_err_prefix(err, "blob '%s'", b->name ? b->name : "");
    nr_buf_release(b->buf);
    nr_buf_release(b->diff_buf);
    b->diff_buf = NULL;
    b->buf = nb;
    b->data = nb->base;
    b->diff = nb->base + count;
  }
  bool changed = !b->shaped || b->num_axes != naxes || count > cap;
  for (int i = 0; i < naxes && !changed; i++) changed = b->shape[i] != dims[i];
  b->num_axes = naxes;
  for (int i = 0; i < naxes; i++) b->shape[i] = dims[i];
  b->count = count;
  b->shaped = true;
  if (changed) b->generation++;
  return NR_OK;
}

nr_status nr_blob_reshape_like(nr_blob *b, const nr_blob *other, nr_error *err) {
  return nr_blob_reshape(b, other->num_axes, other->shape, err);
}

nr_status nr_blob_reshape4(nr_blob *b, int64_t n, int64_t c, int64_t h, int64_t w,
                           nr_error *err) {
  int64_t d[4] = {n, c, h, w};
  return nr_blob_reshape(b, 4, d, err);
}

void nr_blob_share(nr_blob *dst, nr_blob *src) {
  if (dst == src) return;
  nr_buf_retain(src->buf);
  nr_buf_retain(src->diff_buf);
  nr_buf_release(dst->buf);
  nr_buf_release(dst->diff_buf);
  dst->buf = src->buf;
  dst->diff_buf = src->diff_buf;
  dst->data = src->data;
  dst->diff = src->diff;
  dst->num_axes = src->num_axes;
  memcpy(dst->shape, src->shape, sizeof dst->shape);
  dst->count = src->count;
  dst->shaped = src->shaped;
  dst->generation++;
}

nr_status nr_blob_share_data(nr_blob *dst, nr_blob *src, nr_error *err) {
  if (dst == src) return NR_OK;
  nr_buf *diff = NULL;
  if (src->count > 0) NR_TRY(buf_new(dst->alloc, src->count, 1, &diff, err));
  nr_buf_retain(src->buf);
  nr_buf_release(dst->buf);
  nr_buf_release(dst->diff_buf);
  dst->buf = src->buf;
  dst->diff_buf = diff;
  dst->data = src->data;
  dst->diff = diff ? diff->base : NULL;
  dst->num_axes = src->num_axes;
  memcpy(dst->shape, src->shape, sizeof dst->shape);
  dst->count = src->count;
  dst->shaped = src->shaped;
  dst->generation++;
  return NR_OK;
}

void nr_blob_swap(nr_blob *a, nr_blob *b) {
  nr_buf *buf = a->buf;
  a->buf = b->buf;
  b->buf = buf;
  buf = a->diff_buf;
  a->diff_buf = b->diff_buf;
  b->diff_buf = buf;
  float *d = a->data;
  a->data = b->data;
  b->data = d;
  d = a->diff;
  a->diff = b->diff;
  b->diff = d;
  int na = a->num_axes;
  a->num_axes = b->num_axes;
  b->num_axes = na;
  int64_t sh[NR_MAX_AXES];
  memcpy(sh, a->shape, sizeof sh);
  memcpy(a->shape, b->shape, sizeof sh);
  memcpy(b->shape, sh, sizeof sh);
  int64_t c = a->count;
  a->count = b->count;
  b->count = c;
  bool sd = a->shaped;
  a->shaped = b->shaped;
  b->shaped = sd;
  a->generation++;
  b->generation++;
}

int nr_blob_axis(const nr_blob *b, int axis) {
  if (axis < 0) axis += b->num_axes;
  if (axis < 0 || axis >= (b->num_axes ? b->num_axes : 1)) return -1;
  return axis;
}

int64_t nr_blob_count_range(const nr_blob *b, int start, int end) {
  if (start < 0) start += b->num_axes;
  if (end < 0) end += b->num_axes;
  int64_t c = 1;
  for (int i = start; i < end && i < b->num_axes; i++) c *= b->shape[i];
  return c;
}

int64_t nr_blob_legacy_dim(const nr_blob *b, int i) {
  return i < b->num_axes ? b->shape[i] : 1;
}

char *nr_blob_shape_str(const nr_blob *b, char *buf, size_t len) {
  size_t off = 0;
  buf[0] = '\0';
  for (int i = 0; i < b->num_axes && off + 24 < len; i++)
    off += (size_t)snprintf(buf + off, len - off, "%lld ", (long long)b->shape[i]);
  snprintf(buf + off, len - off, "(%lld)", (long long)b->count);
  return buf;
}

bool nr_blob_same_shape(const nr_blob *a, const nr_blob *b) {
  if (a->num_axes != b->num_axes) return false;
  for (int i = 0; i < a->num_axes; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}
