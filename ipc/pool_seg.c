/* pool_seg.c: the pool's shared memory. Every blob buffer is its own anonymous memfd
 * segment (nr__seg_alloc / nr__seg_free are the nr_allocator nets get from
 * nr_pool_allocator), mapped shared; the pool remembers which worker has which segment, so
 * a descriptor travels to a worker once, with the first message that needs it, and a freed
 * segment's id is queued for each worker that has it ("forget"). Under p->seg_mu. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool_int.h"

/* A shared-memory file of the pool: anonymous (no name in any file system: only the core
 * and the workers it hands the descriptor to can reach it) and mode 0600. -1 (errno). */
int nr__pool_memfd(const char *name) {
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd >= 0 && fchmod(fd, 0600) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* One segment per buffer: a memfd of whole pages, mapped shared, listed with a new id. */
nr_status nr__seg_alloc(void *ctx, size_t bytes, void **ptr, void **handle, nr_error *err) {
  nr_pool *p = ctx;
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  size_t size = (bytes + pg - 1) / pg * pg;
  if (!size) size = pg;
  nr_seg *s = calloc(1, sizeof *s);
  if (!s) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  s->fd = nr__pool_memfd("netrun-blob");
  if (s->fd < 0) {
    free(s);
    return nr_err_set(err, errno == ENOMEM ? NR_ERR_NOMEM : NR_ERR_IO,
                      "cannot create a shared-memory segment: %s", strerror(errno));
  }
  if (ftruncate(s->fd, (off_t)size) < 0) {
    int e = errno;
    close(s->fd);
    free(s);
    return nr_err_set(err, NR_ERR_NOMEM, "cannot size a shared-memory segment of %zu bytes: %s",
                      size, strerror(e));
  }
  s->ptr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
  if (s->ptr == MAP_FAILED) {
    int e = errno;
    close(s->fd);
    free(s);
    return nr_err_set(err, NR_ERR_NOMEM, "cannot map a shared-memory segment of %zu bytes: %s",
                      size, strerror(e));
  }
  s->size = size;
  pthread_mutex_lock(&p->seg_mu);
  s->id = ++p->next_seg;
  s->next = p->segs;
  if (p->segs) p->segs->prev = s;
  p->segs = s;
  pthread_mutex_unlock(&p->seg_mu);
  *ptr = s->ptr; /* memfd pages start zeroed */
  *handle = s;
  return NR_OK;
}

static void forget_push(worker *w, uint32_t id) {
  if (w->nforget == w->capforget) {
    size_t nc = w->capforget ? 2 * w->capforget : 64;
    uint32_t *nf = realloc(w->forget, nc * sizeof *nf);
    if (!nf) return; /* the worker keeps a stale mapping; memory only */
    w->forget = nf;
    w->capforget = nc;
  }
  w->forget[w->nforget++] = id;
}

/* Every worker that has the segment is told to forget it with its next request. */
void nr__seg_free(void *ctx, void *ptr, void *handle) {
  nr_pool *p = ctx;
  nr_seg *s = handle;
  if (!s) return;
  pthread_mutex_lock(&p->seg_mu);
  for (int i = 0; i < NR_POOL_MAX_WORKERS; i++)
    if (s->known & ((uint64_t)1 << i)) forget_push(&p->w[i], s->id);
  if (s->prev) s->prev->next = s->next;
  else p->segs = s->next;
  if (s->next) s->next->prev = s->prev;
  pthread_mutex_unlock(&p->seg_mu);
  munmap(s->ptr, s->size);
  close(s->fd);
  free(s);
}

void nr__fdlist_free(fdlist *f) {
  free(f->fds);
  free(f->ids);
}

/* Blob b's segment (*out; NULL for a blob without memory), queued in fl when it is new to
 * worker w. */
nr_status nr__seg_need(nr_pool *p, worker *w, nr_blob *b, nr_seg **out, fdlist *fl,
                       nr_error *err) {
  *out = NULL;
  if (!b->buf) return NR_OK;
  if (b->buf->alloc != &p->alloc)
    return nr_err_set(err, NR_ERR_INTERNAL,
                      "blob '%s' is not in the worker pool's shared memory (build the net "
                      "with nr_pool_allocator())", b->name ? b->name : "");
  nr_seg *s = b->buf->handle;
  *out = s;
  uint64_t bit = (uint64_t)1 << w->idx;
  pthread_mutex_lock(&p->seg_mu);
  bool known = s->known & bit;
  s->known |= bit; /* marked now; the caller fails the whole request otherwise */
  pthread_mutex_unlock(&p->seg_mu);
  if (known) return NR_OK;
  if (fl->n == fl->cap) {
    int nc = fl->cap ? 2 * fl->cap : 16;
    int *nf = realloc(fl->fds, (size_t)nc * sizeof *nf);
    if (nf) fl->fds = nf;
    uint32_t *ni = realloc(fl->ids, (size_t)nc * sizeof *ni);
    if (ni) fl->ids = ni;
    if (!nf || !ni) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
    fl->cap = nc;
  }
  fl->fds[fl->n] = s->fd;
  fl->ids[fl->n] = s->id;
  fl->n++;
  return NR_OK;
}

void nr__seg_drop_worker(nr_pool *p, worker *w) {
  pthread_mutex_lock(&p->seg_mu);
  free(w->forget);
  w->forget = NULL;
  w->nforget = w->capforget = 0;
  for (nr_seg *s = p->segs; s; s = s->next) s->known &= ~((uint64_t)1 << w->idx);
  pthread_mutex_unlock(&p->seg_mu);
}
