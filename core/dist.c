/* dist.c: the gradient reducer (buckets in backward order, started as backward completes
 * them) and the whole-state helpers of dist.h. No MPI here: every collective goes through
 * the front-end's hooks. */
#include "dist.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nr_math.h"

typedef struct bucket {
  int *members;   /* learnable indices, in backward order */
  int nmembers;
  int64_t count;  /* floats */
  int trigger;    /* the layer whose backward completes the bucket */
  float *buf;     /* packed buffer (NULL: one member, reduced in its own diff) */
  void *req;      /* in flight when non-NULL */
  int started, done;
} bucket;

struct nr_dist_reducer {
  const nr_dist *d;
  const nr_net *net;
  bucket *b;
  int nb;
  int next;       /* first bucket not started yet */
  int overlap;
  int64_t bytes;
  double t_first; /* time of the pass's first layer_done, 0 = none yet */
  int64_t passes;
  double wait_sec, backward_sec;
};

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The learnable index of params[i] (through its owner), -1 when it has none. */
static int learnable_of(const nr_net *n, int i) {
  int o = n->param_owner[i] < 0 ? i : n->param_owner[i];
  for (int j = 0; j < n->nlearnable; j++)
    if (n->learnable[j] == n->params[o]) return j;
  return -1;
}

nr_status nr_dist_reducer_create(const nr_dist *d, const nr_net *net, size_t bucket_bytes,
                                 int overlap, nr_dist_reducer **out, nr_error *err) {
  const int nl = net->nlearnable;
  int *ready = malloc(((size_t)nl + 1) * sizeof *ready);
  int *order = malloc(((size_t)nl + 1) * sizeof *order);
  nr_dist_reducer *r = calloc(1, sizeof *r);
  if (!ready || !order || !r) goto nomem;
  r->d = d;
  r->net = net;
  r->overlap = overlap;
  /* A parameter's gradient is final once the first layer using it has run backward. */
  for (int j = 0; j < nl; j++) ready[j] = net->nlayers;
  for (int i = 0; i < net->nparams; i++) {
    int j = learnable_of(net, i);
    if (j >= 0 && net->param_layer[i] < ready[j]) ready[j] = net->param_layer[i];
  }
  /* Backward order: latest ready layer first (insertion sort, stable; nl is small). */
  for (int j = 0; j < nl; j++) {
    int k = j;
    while (k > 0 && ready[order[k - 1]] < ready[j]) {
      order[k] = order[k - 1];
      k--;
    }
    order[k] = j;
  }
  if (!(r->b = calloc((size_t)nl + 1, sizeof *r->b))) goto nomem;
  for (int k = 0; k < nl;) {
    bucket *b = &r->b[r->nb++];
    if (!(b->members = malloc(((size_t)nl - (size_t)k) * sizeof *b->members))) goto nomem;
    do {
      int j = order[k++];
      b->members[b->nmembers++] = j;
      b->count += net->learnable[j]->count;
      b->trigger = ready[j];
    } while (k < nl && (size_t)b->count * sizeof(float) < bucket_bytes);
    if (b->nmembers > 1 && !(b->buf = malloc((size_t)b->count * sizeof(float)))) goto nomem;
    r->bytes += b->count * (int64_t)sizeof(float);
  }
  free(ready);
  free(order);
  *out = r;
  return NR_OK;
nomem:
  free(ready);
  free(order);
  nr_dist_reducer_destroy(r);
  return nr_err_set(err, NR_ERR_NOMEM, "out of memory planning the gradient buckets");
}

void nr_dist_reducer_destroy(nr_dist_reducer *r) {
  if (!r) return;
  /* A reduction still in flight means a pass failed midway: the job is about to be
   * aborted, and waiting could hang on a rank that never starts its part, so it is left
   * alone (its small request handle is not freed). */
  for (int i = 0; r->b && i < r->nb; i++) {
    free(r->b[i].members);
    free(r->b[i].buf);
  }
  free(r->b);
  free(r);
}

static nr_status start(nr_dist_reducer *r, bucket *b, nr_error *err) {
  float *p = b->buf;
  if (p) {
    int64_t off = 0;
    for (int m = 0; m < b->nmembers; m++) {
      const nr_blob *x = r->net->learnable[b->members[m]];
      memcpy(p + off, x->diff, (size_t)x->count * sizeof(float));
      off += x->count;
    }
  } else {
    p = r->net->learnable[b->members[0]]->diff;
  }
  b->started = 1;
  b->done = 0;
  b->req = NULL;
  return r->d->iallreduce(r->d->ctx, p, b->count, &b->req, err);
}

nr_status nr_dist_reducer_layer_done(nr_dist_reducer *r, int layer, nr_error *err) {
  if (r->t_first == 0) r->t_first = now_sec();
  if (!r->overlap) return NR_OK;
  while (r->next < r->nb && r->b[r->next].trigger >= layer)
    NR_TRY(start(r, &r->b[r->next++], err));
  /* Non-blocking collectives move only inside MPI calls: give them a turn per layer. */
  for (int i = 0; i < r->next; i++) {
    bucket *b = &r->b[i];
    if (b->done) continue;
    NR_TRY(r->d->test(r->d->ctx, b->req, &b->done, err));
    if (b->done) b->req = NULL;
  }
  return NR_OK;
}

nr_status nr_dist_reducer_finish(nr_dist_reducer *r, nr_error *err) {
  const double t0 = now_sec();
  if (r->t_first != 0) r->backward_sec += t0 - r->t_first;
  nr_status st = NR_OK;
  while (r->next < r->nb && st == NR_OK) st = start(r, &r->b[r->next++], err);
  const float inv = 1.0f / (float)r->d->size;
  for (int i = 0; i < r->nb && st == NR_OK; i++) {
    bucket *b = &r->b[i];
    if (!b->done && b->req) st = r->d->wait(r->d->ctx, b->req, err);
    b->req = NULL;
    b->done = 1;
    if (st != NR_OK) break;
    if (!b->buf) {
      nr_blob *x = r->net->learnable[b->members[0]];
      nr_scal(x->count, inv, x->diff);
      continue;
    }
    int64_t off = 0;
    for (int m = 0; m < b->nmembers; m++) {
      nr_blob *x = r->net->learnable[b->members[m]];
      const float *src = b->buf + off;
      for (int64_t k = 0; k < x->count; k++) x->diff[k] = src[k] * inv;
      off += x->count;
    }
  }
  for (int i = 0; i < r->nb; i++) r->b[i].started = r->b[i].done = 0;
  r->next = 0;
  r->t_first = 0;
  r->passes++;
  r->wait_sec += now_sec() - t0;
  return st;
}

void nr_dist_reducer_stats(const nr_dist_reducer *r, nr_dist_stats *out) {
  out->buckets = r->nb;
  out->bytes = r->bytes;
  out->passes = r->passes;
  out->wait_sec = r->wait_sec;
  out->backward_sec = r->backward_sec;
}

nr_status nr_dist_bcast_params(const nr_dist *d, nr_net *net, nr_error *err) {
  for (int i = 0; i < net->nparams; i++) {
    if (net->param_owner[i] >= 0) continue;
    nr_blob *b = net->params[i];
    if (d->bcast(d->ctx, b->data, b->count * (int64_t)sizeof(float), err) != NR_OK)
      return nr_err_prefix(err, "broadcasting parameter %d ('%s')", i,
                           net->layers[net->param_layer[i]]->name);
  }
  return NR_OK;
}

nr_status nr_dist_check_replicas(const nr_dist *d, const nr_net *net, int iter, nr_error *err) {
  uint64_t h = 1469598103934665603ull;
  for (int j = 0; j < net->nlearnable; j++) {
    const unsigned char *p = (const unsigned char *)net->learnable[j]->data;
    const size_t n = (size_t)net->learnable[j]->count * sizeof(float);
    for (size_t k = 0; k < n; k++) h = (h ^ p[k]) * 1099511628211ull;
  }
  /* Two 32-bit halves travel exactly as doubles. */
  double hi[2] = {(double)(h >> 32), (double)(h & 0xffffffffu)};
  double lo[2] = {hi[0], hi[1]};
  NR_TRY(d->allreduce_f64(d->ctx, hi, 2, NR_DIST_MAX, err));
  NR_TRY(d->allreduce_f64(d->ctx, lo, 2, NR_DIST_MIN, err));
  if (hi[0] != lo[0] || hi[1] != lo[1])
    return nr_err_set(err, NR_ERR_INTERNAL,
                      "replicas diverged at iteration %d: the weights' checksum on rank %d is "
                      "%016llx, and another rank's differs (--check-replicas)",
                      iter, d->rank, (unsigned long long)h);
  return NR_OK;
}
