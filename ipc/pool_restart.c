/* pool_restart.c: the restart policy. A call whose worker died or hung is replayed on a
 * new worker while restarts are left (max_restarts over the pool's life): the worker's
 * layers are set up again with their parameter values saved and put back (psave), and a
 * replayed backward first gets back the parameter diffs it had. The prefetched data layers
 * take part through p->on_restart. Main thread only. */
#include <stdlib.h>
#include <string.h>

#include "pool_int.h"

/* Copies of a layer's parameters, to survive a re-setup: data and diff, or the diff only
 * (diff_only: what a replayed backward needs). */
typedef struct psave {
  int n;
  bool diff_only;
  float **v;       /* per parameter: its data then its diff, or its diff only */
  int64_t *cnt;
} psave;

static void psave_free(psave *s) {
  for (int i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
  free(s->cnt);
  memset(s, 0, sizeof *s);
}

static nr_status psave_take(nr_layer *l, psave *s, bool diff_only, nr_error *err) {
  memset(s, 0, sizeof *s);
  s->diff_only = diff_only;
  if (!l->nblobs) return NR_OK;
  s->v = calloc((size_t)l->nblobs, sizeof *s->v);
  s->cnt = calloc((size_t)l->nblobs, sizeof *s->cnt);
  if (!s->v || !s->cnt) goto nomem;
  s->n = l->nblobs;
  for (int i = 0; i < l->nblobs; i++) {
    nr_blob *b = l->blobs[i];
    size_t bytes = (size_t)b->count * sizeof(float);
    s->cnt[i] = b->count;
    if (!b->count || !b->data) continue;
    if (!(s->v[i] = malloc(diff_only ? bytes : 2 * bytes))) goto nomem;
    if (!diff_only) memcpy(s->v[i], b->data, bytes);
    memcpy(diff_only ? s->v[i] : s->v[i] + b->count, b->diff, bytes);
  }
  return NR_OK;
nomem:
  psave_free(s);
  return nr_err_set(err, NR_ERR_NOMEM, "out of memory saving parameters for a restart");
}

/* Puts back what s holds (a parameter whose size changed since is left alone). */
static void psave_restore(nr_layer *l, const psave *s) {
  for (int i = 0; i < s->n && i < l->nblobs; i++) {
    nr_blob *b = l->blobs[i];
    size_t bytes = (size_t)b->count * sizeof(float);
    if (!s->v[i] || b->count != s->cnt[i]) continue;
    if (!s->diff_only) memcpy(b->data, s->v[i], bytes);
    memcpy(b->diff, s->diff_only ? s->v[i] : s->v[i] + b->count, bytes);
  }
}

void nr__restart_count(nr_pool *p, pl *q, nr_py_method m, callres *cr, const char *next) {
  p->restarts++;
  nr_error why;
  nr__call_error(p, q, m, cr, &why);
  if (nr__pool_log(p))
    fprintf(nr__pool_log(p), "netrun: %s\nnetrun: restarting Python worker %d (restart %d of "
            "%d)%s\n", why.msg, q->w, p->restarts, p->o.max_restarts, next);
}

/* Restarts worker w and sets its established layers up again (setup + reshape), keeping
 * their parameter values. Prefetch threads are paused meanwhile (they share workers), and
 * the replicas of data layers that lived in w are re-created told the batch they must
 * produce next (p->on_restart). A new worker that dies or hangs while its layers are
 * set up again is restarted in turn while restarts are left (each one counts). When the
 * restart fails, w is failed for good (killed, reaped, closed) before the prefetch threads
 * resume, so none of them waits on it. Main thread only. */
nr_status nr__restart_worker(nr_pool *p, worker *w, nr_error *err) {
  const restart_hooks *h = p->on_restart;
  if (h) {
    h->pause(p);
    h->before(p, w->idx);
  }
  nr_status st;
  for (;;) {
    nr__worker_close(p, w);
    st = nr__worker_spawn(p, w, err);
    callres cr = {0};
    pl *bad = NULL;
    nr_py_method bm = NR_PY_SETUP;
    for (pl *q = p->layers; q && st == NR_OK && !bad; q = q->next) {
      if (q->w != w->idx) continue;
      q->created = false;
      if (!q->established) continue;
      psave sv;
      if ((st = psave_take(q->pb.l, &sv, false, err)) != NR_OK) break;
      bm = NR_PY_SETUP;
      st = nr__call_once(p, q, bm, &cr, err);
      if (st == NR_OK && cr.r == WR_OK) st = nr__call_once(p, q, bm = NR_PY_RESHAPE, &cr, err);
      psave_restore(q->pb.l, &sv); /* also when it failed: the next try starts clean */
      psave_free(&sv);
      if (st == NR_OK && cr.r != WR_OK) bad = q;
    }
    if (bad && (cr.r == WR_DEAD || cr.r == WR_TIMEOUT) && p->restarts < p->o.max_restarts) {
      nr__restart_count(p, bad, bm, &cr, " while its layers were set up again");
      nr__callres_clear(&cr);
      continue;
    }
    if (bad) st = nr__call_error(p, bad, bm, &cr, err);
    nr__callres_clear(&cr);
    break;
  }
  if (st != NR_OK) {
    nr_err_prefix(err, "setting layers up again after a restart");
    nr__worker_fail(p, w, err->msg);
  }
  if (h) h->resume(p);
  return st;
}

/* Runs method m of one layer instance q in its worker, with the restart policy. Main
 * thread only. */
nr_status nr__pl_call(nr_pool *p, pl *q, nr_py_method m, nr_error *err) {
  nr_layer *l = q->pb.l;
  worker *w = &p->w[q->w];
  if (w->failed) return nr__gone_error(q, m, w, err);
  if (!w->pid) NR_TRY(nr__worker_spawn(p, w, err));
  psave bsave = {0};
  if (m == NR_PY_BACKWARD && p->o.max_restarts > p->restarts && l->nblobs)
    NR_TRY(psave_take(l, &bsave, true, err)); /* a replayed backward must not add twice */
  callres cr = {0};
  nr_status s;
  for (;;) {
    s = nr__call_once(p, q, m, &cr, err);
    if (s != NR_OK || cr.r == WR_OK || cr.r == WR_PYERR || cr.r == WR_GONE ||
        cr.r == WR_PROTO)
      break;
    /* the worker died or hung */
    if (p->restarts >= p->o.max_restarts) break;
    nr__restart_count(p, q, m, &cr, " and replaying the call");
    nr__callres_clear(&cr);
    s = nr__restart_worker(p, w, err);
    if (s != NR_OK) break;
    if (bsave.n) psave_restore(l, &bsave);
  }
  if (s == NR_OK && cr.r != WR_OK) s = nr__call_error(p, q, m, &cr, err);
  if (s == NR_OK && m == NR_PY_SETUP) q->established = true;
  if (s != NR_OK && w->pid && w->reaped) nr__worker_fail(p, w, err->msg); /* dead for good */
  nr__callres_clear(&cr);
  psave_free(&bsave);
  return s;
}
