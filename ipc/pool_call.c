/* pool_call.c: layer instances (pl: placement on a worker, release) and one call on one
 * — the exchange with its worker: the request written (what the worker does not know yet:
 * segments to forget, creation arguments, changed blobs), posted, the nested requests the
 * worker makes meanwhile served, the reply validated like any untrusted input and applied,
 * and the error a failed exchange becomes. No restart logic (pool_restart.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "pool_int.h"

#define NR_POOL_MAX_EXC_TYPE 200 /* characters of an exception's class name kept */

/* What the Python-layer bindings (pybind.h) call in the engine. */
static const nr_pybind_engine engine = {nr_blob_reshape, nr_layer_add_param,
                                        nr_blob_shape_str};

/* Bytes of a blob of shape dims (count x sizeof(float)), saturating at INT64_MAX. */
static int64_t shape_bytes(int nd, const int64_t *dims) {
  int64_t n = (int64_t)sizeof(float);
  for (int i = 0; i < nd; i++) {
    if (dims[i] == 0) return 0;
    if (n > INT64_MAX / dims[i]) n = INT64_MAX;
    else n *= dims[i];
  }
  return n;
}

/* Posts the message prepared in w->ctl (op, layer, len...) after sending the descriptors
 * in fl (NULL: none). */
bool nr__post(worker *w, const fdlist *fl) {
  int nfd = fl ? fl->n : 0;
  if (nfd && nr_wire_send_fds(w->sock, fl->fds, fl->ids, nfd)) return false;
  w->ctl->nsegs = (uint32_t)nfd;
  /* the number comes from the core's own count, never from the shared block */
  nr_wire_wake(&w->ctl->req_seq, ++w->seq, &w->ctl->req_sleep);
  return true;
}

/* Waits for the worker's answer to the message with sequence `seq`. The words it reads are
 * the worker's to write: nr_wire_wait only ever returns, and a number that cannot be (the
 * worker wrote its control block) is WR_PROTO with the reason in bad (may be NULL). A death
 * noticed by the watcher (w->dead, private to the core) ends the wait at once.
 * Meanwhile the engine's helper threads do not poll for jobs (nr__parallel_hush): the
 * worker needs a CPU now, and the thread that posts the next job is this one. */
wres nr__wait_reply(nr_pool *p, worker *w, uint32_t seq, int64_t deadline, char *bad,
                    size_t badlen) {
  (void)p;
  nr__parallel_hush(+1);
  int r = nr_wire_wait(&w->ctl->rep_seq, seq, true, &w->ctl->rep_sleep, &w->dead,
                       &w->spin_ns, NR_CORE_MAX_SPIN_NS, deadline, &w->ctl->core_cpu,
                       &w->ctl->worker_cpu);
  nr__parallel_hush(-1);
  if (r == 0) return WR_OK;
  if (r == ETIMEDOUT) return WR_TIMEOUT;
  if (r == EPROTO) {
    if (bad)
      snprintf(bad, badlen, "its control block says it answered message %u while message %u "
               "was pending (the worker wrote over the block)",
               (unsigned)atomic_load(&w->ctl->rep_seq), (unsigned)seq);
    return WR_PROTO;
  }
  return WR_DEAD; /* ECANCELED: the watcher saw it die */
}

/* Serves a nested request (the worker's Python wants a bigger blob or a new parameter)
 * and answers it; the original call continues. Returns 0 (answered), -1 (the worker is
 * gone) or 1: the request breaks the protocol (*bad says how; nothing was answered). */
static int serve_nested(nr_pool *p, worker *w, pl *q, uint32_t op, const char **bad) {
  nr_ctl *c = w->ctl;
  nr_error e2;
  e2.msg[0] = '\0';
  int exc = 0;
  nr_status st = NR_OK;
  nr_blob *b = NULL;
  nr_wire_reply r;
  int rc = nr_wire_read_reply(c, op, &r, bad);
  if (rc == ENOMEM) {
    st = nr_err_set(&e2, NR_ERR_NOMEM, "out of memory");
    exc = 1;
  } else if (rc) {
    nr_wire_reply_clear(&r);
    return 1;
  } else if (!q || *(volatile uint32_t *)&c->layer != q->id) {
    nr_wire_reply_clear(&r);
    *bad = "nested request for another layer than the call's";
    return 1;
  } else {
    int kind = r.nested.kind, idx = r.nested.idx, nd = r.nested.nd;
    const int64_t *dims = r.nested.dims;
    int64_t bytes = shape_bytes(nd, dims);
    if (op == NR_REP_GROW && !nr__pybind_blob(&q->pb, kind, idx)) {
      nr_wire_reply_clear(&r);
      *bad = "grow request for a blob the layer does not have";
      return 1;
    }
    if (bytes > p->o.max_blob_bytes) {
      /* a layer asking for an absurd shape: its Python gets a ValueError */
      nr_blob *nb = op == NR_REP_GROW ? nr__pybind_blob(&q->pb, kind, idx) : NULL;
      st = nr_err_set(&e2, NR_ERR_INPUT, "%s%s%s of %lld bytes is too large (the limit is %lld "
                      "bytes, --py-max-blob-bytes)", nb ? "blob '" : "a new parameter",
                      nb && nb->name ? nb->name : "", nb ? "'" : "", (long long)bytes,
                      (long long)p->o.max_blob_bytes);
    } else if (op == NR_REP_GROW) {
      b = nr__pybind_blob(&q->pb, kind, idx);
      st = nr_blob_reshape(b, nd, dims, &e2);
    } else { /* NR_REP_ADD_PARAM: bind the next existing parameter or append one */
      st = nr__pybind_add_param(&q->pb, &engine, nd, dims, &b, &e2);
    }
    if (st == NR_ERR_NOMEM) exc = 1;
  }
  nr_wire_reply_clear(&r);
  fdlist fl = {0};
  nr_seg *seg = NULL;
  if (st == NR_OK) st = nr__seg_need(p, w, b, &seg, &fl, &e2);
  nr_wire_request a = {0};
  if (st == NR_OK) {
    nr__pybind_mark(&q->pb, b);
    a.seg = seg ? seg->id : 0;
    a.cap = b->buf ? b->buf->capacity : 0;
    c->op = NR_OP_NESTED_OK;
  } else {
    a.exc = exc;
    a.err_msg = e2.msg;
    c->op = NR_OP_NESTED_ERR;
  }
  size_t len = 0; /* a message of at most NR_ERROR_MAX bytes: it fits */
  nr_wire_encode_request(c->op, &a, c->buf, NR_CTL_BUF_MAX, &len);
  c->len = (uint32_t)len;
  bool ok = nr__post(w, &fl);
  nr__fdlist_free(&fl);
  return ok ? 0 : -1;
}

/* The reply broke the protocol: record why (the caller kills the worker). */
static void proto_fail(callres *cr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void proto_fail(callres *cr, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cr->bad, sizeof cr->bad, fmt, ap);
  va_end(ap);
  cr->r = WR_PROTO;
}

void nr__callres_clear(callres *c) {
  free(c->type);
  free(c->msg);
  free(c->tb);
  c->type = c->msg = c->tb = NULL;
}

static nr_status ensure_hello(nr_pool *p, worker *w, callres *cr, nr_error *err);

/* A call's blob descriptors being written (write_call). */
typedef struct callblobs {
  nr_pool *p;
  worker *w;
  nr_wire_request *rq; /* blobs: room for every stale slot */
  uint32_t room;
  fdlist *fl;
} callblobs;

/* One slot the worker has not seen as it is: its descriptor, its segment if new to w. */
static nr_status describe_blob(void *arg, int kind, int idx, nr_blob *b, nr_error *err) {
  callblobs *cb = arg;
  if (cb->rq->nblobs == cb->room)
    return nr_err_set(err, NR_ERR_INTERNAL, "more changed blobs than counted");
  nr_seg *seg = NULL;
  NR_TRY(nr__seg_need(cb->p, cb->w, b, &seg, cb->fl, err));
  nr_wire_blob *d = &cb->rq->blobs[cb->rq->nblobs++];
  *d = (nr_wire_blob){{kind, idx, b->num_axes, {0}}, seg ? seg->id : 0,
                      b->buf ? b->buf->capacity : 0, b->shaped};
  memcpy(d->shape.dims, b->shape, (size_t)b->num_axes * sizeof *b->shape);
  return NR_OK;
}

/* Writes the payload of a call on q into w's control block: the segments w may forget,
 * the creation arguments (create: a new Python object), and every slot whose blob changed
 * since the worker last saw it, queueing in fl the descriptors of segments new to w. */
static nr_status write_call(nr_pool *p, worker *w, pl *q, bool create, fdlist *fl,
                            nr_error *err) {
  nr_layer *l = q->pb.l;
  int nd = nr__pybind_nstale(&q->pb); /* slots changed since the worker last saw them */
  if (!create && !nd) { /* the steady state: nothing to send unless segments to forget */
    pthread_mutex_lock(&p->seg_mu);
    bool none = w->nforget == 0;
    if (none) w->ctl->len = 0;
    pthread_mutex_unlock(&p->seg_mu);
    if (none) return NR_OK;
  }
  nr_status st = NR_OK;
  nr_wire_request rq = {0};
  if (create) {
    const Caffe__PythonParameter *pp = l->param->python_param;
    rq.create = true;
    rq.name = l->name;
    rq.module = pp->module;
    rq.layer = pp->layer;
    rq.param_str = pp->param_str;
    rq.source_dir = l->ctx ? l->ctx->source_dir : NULL;
    rq.phase = l->phase;
    rq.nbottom = l->nbottom;
    rq.ntop = l->ntop;
    if (!(rq.aliases = calloc((size_t)l->ntop + 1, sizeof *rq.aliases))) goto nomem;
    nr__pybind_aliases(l, rq.aliases);
    if (q->nreplicas) { /* a prefetched data layer: what caffe.get_worker_info() says */
      rq.replica = q->replica;
      rq.nreplicas = q->nreplicas;
      rq.first_batch = q->first_batch;
    }
  }
  if (nd) {
    if (!(rq.blobs = calloc((size_t)nd, sizeof *rq.blobs))) goto nomem;
    callblobs cb = {p, w, &rq, (uint32_t)nd, fl};
    st = nr__pybind_sync(&q->pb, describe_blob, &cb, err);
  }
  if (st == NR_OK) {
    /* the segments freed since the last request, forgotten once it is written */
    pthread_mutex_lock(&p->seg_mu);
    rq.forget = w->forget;
    rq.nforget = (uint32_t)w->nforget;
    size_t len = 0;
    if (nr_wire_encode_request(NR_OP_CALL, &rq, w->ctl->buf, NR_CTL_BUF_MAX, &len) == 0) {
      w->ctl->len = (uint32_t)len;
      w->nforget = 0;
    } else {
      st = nr_err_set(err, NR_ERR_INTERNAL, "request does not fit the control block");
    }
    pthread_mutex_unlock(&p->seg_mu);
  }
  free(rq.aliases);
  free(rq.blobs);
  return st;
nomem:
  free(rq.aliases);
  return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
}

/* One request/reply exchange for method m of layer q (no restart logic). Returns NR_OK
 * with cr->r telling what happened, or an error of the core side itself. */
static nr_status exchange(nr_pool *p, pl *q, nr_py_method m, callres *cr, nr_error *err) {
  worker *w = &p->w[q->w];
  nr_layer *l = q->pb.l;
  cr->r = WR_OK;
  NR_TRY(ensure_hello(p, w, cr, err));
  if (cr->r != WR_OK) return NR_OK;
  if (atomic_load(&w->dead)) {
    cr->r = WR_DEAD;
    return NR_OK;
  }
  nr_ctl *c = w->ctl;
  fdlist fl = {0};
  bool create = m == NR_PY_SETUP && !q->created;
  if (create) NR_TRY(nr__pybind_fresh(&q->pb, !q->established, err)); /* a new object */
  nr_status st = write_call(p, w, q, create, &fl, err);
  if (st != NR_OK) goto out;
  c->op = NR_OP_CALL;
  c->layer = q->id;
  c->method = (uint32_t)m;
  c->nprop = 0;
  if (m == NR_PY_BACKWARD) {
    if (l->nbottom > NR_MAX_PROP) {
      st = nr_err_set(err, NR_ERR_INPUT, "a Python layer takes at most %d bottoms", NR_MAX_PROP);
      goto out;
    }
    c->nprop = (uint32_t)l->nbottom;
    for (int i = 0; i < l->nbottom; i++) c->prop[i] = l->prop_down[i];
  }
  int64_t now = nr_wire_now_ns();
  int64_t deadline = p->o.timeout_sec > 0 ? now + (int64_t)(p->o.timeout_sec * 1e9) : 0;
  /* The wake-up hint (see "Waking ahead" in docs/workers.md): how long after the reply
   * of the previous call on this worker this message came, kept for that call's layer
   * and method; and for this call, what came after it last time. Sent only while the
   * engine's threads leave a CPU free: a worker spinning ahead on a CPU they use slows
   * the native layers before its call by more than its early wake-up saves. */
  if (w->last_q && w->last_m >= 0 && w->last_m < 4)
    w->last_q->gap_ns[w->last_m] = now - w->last_reply_ns;
  w->last_q = NULL;
  const bool cpu_free = nr__parallel_threads() < p->ncpu;
  atomic_store_explicit(&c->next_ns, cpu_free && (unsigned)m < 4 ? q->gap_ns[m] : 0,
                        memory_order_relaxed);
  if (!nr__post(w, &fl)) {
    cr->r = WR_DEAD;
    goto out;
  }
  uint32_t op;
  for (;;) {
    cr->r = nr__wait_reply(p, w, w->seq, deadline, cr->bad, sizeof cr->bad);
    if (cr->r != WR_OK) goto out;
    op = *(volatile uint32_t *)&c->op;
    if (op == NR_REP_GROW || op == NR_REP_ADD_PARAM) {
      const char *bad = NULL;
      int sr = serve_nested(p, w, q, op, &bad);
      if (sr < 0) {
        cr->r = WR_DEAD;
        goto out;
      }
      if (sr > 0) {
        proto_fail(cr, "%s", bad);
        goto out;
      }
      continue;
    }
    break;
  }
  if (create) q->created = true;
  if (op == NR_REP_OK || op == NR_REP_ERROR) {
    w->last_q = q;
    w->last_m = (int)m;
    w->last_reply_ns = nr_wire_now_ns();
    nr_wire_reply r;
    const char *why = NULL;
    int rc = nr_wire_read_reply(c, op, &r, &why);
    if (rc == ENOMEM) {
      st = nr_err_set(err, NR_ERR_NOMEM, "out of memory reading a Python worker's reply");
    } else if (rc) {
      proto_fail(cr, "%s", why);
    } else if (op == NR_REP_OK) {
      /* every shape is checked before any is applied */
      for (uint32_t i = 0; i < r.nshapes && cr->r == WR_OK; i++) {
        const nr_wire_shape *x = &r.shapes[i];
        int64_t bytes = shape_bytes(x->nd, x->dims);
        if (!nr__pybind_blob(&q->pb, x->kind, x->idx))
          proto_fail(cr, "reply reshapes %s %d, which the layer does not have",
                     x->kind == NR_SLOT_BOTTOM ? "bottom" : x->kind == NR_SLOT_TOP ? "top"
                                                                               : "parameter",
                     x->idx);
        else if (bytes > p->o.max_blob_bytes)
          proto_fail(cr, "reply reshapes a blob to %lld bytes, over the limit of %lld "
                     "(--py-max-blob-bytes)", (long long)bytes,
                     (long long)p->o.max_blob_bytes);
      }
      for (uint32_t i = 0; i < r.nshapes && cr->r == WR_OK && st == NR_OK; i++) {
        const nr_wire_shape *x = &r.shapes[i];
        st = nr__pybind_apply_shape(&q->pb, &engine, x->kind, x->idx, x->nd, x->dims, err);
      }
    } else {
      /* A long exception class name is the layer's own doing, not a broken reply: cut it,
       * so the layer's message still reaches the user. */
      if (r.type && strlen(r.type) > NR_POOL_MAX_EXC_TYPE)
        strcpy(r.type + NR_POOL_MAX_EXC_TYPE - 3, "...");
      cr->r = WR_PYERR;
      cr->type = r.type;
      cr->msg = r.msg;
      cr->tb = r.tb;
      r.type = r.msg = r.tb = NULL;
    }
    nr_wire_reply_clear(&r);
  } else {
    proto_fail(cr, "unexpected message (opcode %u) as the reply to a call", op);
  }
out:
  nr__fdlist_free(&fl);
  return st;
}

static nr_status ensure_hello(nr_pool *p, worker *w, callres *cr, nr_error *err) {
  if (w->hello) return NR_OK;
  int64_t deadline = p->o.timeout_sec > 0
                         ? nr_wire_now_ns() + (int64_t)((p->o.timeout_sec + 30) * 1e9)
                         : 0;
  cr->r = nr__wait_reply(p, w, 0, deadline, cr->bad, sizeof cr->bad);
  if (cr->r != WR_OK) return NR_OK;
  uint32_t op = *(volatile uint32_t *)&w->ctl->op;
  if (op == NR_REP_ERROR) {
    nr_wire_reply r;
    const char *why = NULL;
    int rc = nr_wire_read_reply(w->ctl, NR_REP_ERROR, &r, &why);
    if (rc == EPROTO) {
      nr_wire_reply_clear(&r);
      proto_fail(cr, "start failure reply: %s", why);
      return NR_OK;
    }
    nr_status s = nr_err_set(err, NR_ERR_WORKER, "Python worker %d (%s) could not start: %s%s%s",
                             w->idx, p->worker_path, r.msg ? r.msg : "?",
                             r.tb && *r.tb ? "\n" : "", r.tb ? r.tb : "");
    nr_wire_reply_clear(&r);
    return s;
  }
  if (op != NR_REP_HELLO) {
    proto_fail(cr, "unexpected message (opcode %u) instead of its hello", op);
    return NR_OK;
  }
  w->hello = true;
  return NR_OK;
}

/* A call on a layer whose worker failed for good earlier: name that first failure. */
nr_status nr__gone_error(pl *q, nr_py_method m, const worker *w, nr_error *err) {
  char desc[1024];
  nr__pybind_describe(q->pb.l, m, desc, sizeof desc);
  return nr_err_set(err, NR_ERR_WORKER, "%s: Python worker %d died earlier in this run, with "
                    "no restart left; the first failure: %s", desc, w->idx,
                    w->first_err ? w->first_err : "(see the first error)");
}

/* Turns a failed exchange into the user's message. */
nr_status nr__call_error(nr_pool *p, pl *q, nr_py_method m, callres *cr, nr_error *err) {
  worker *w = &p->w[q->w];
  if (cr->r == WR_PYERR) return nr__pybind_py_error(q->pb.l, m, cr->type, cr->msg, cr->tb, err);
  if (cr->r == WR_GONE) return nr__gone_error(q, m, w, err);
  char desc[1024];
  nr__pybind_describe(q->pb.l, m, desc, sizeof desc);
  char how[400], stack[8192];
  if (cr->r == WR_PROTO)
    snprintf(how, sizeof how, "Python worker %d (pid %d) sent an invalid reply (%s); it was "
             "killed", w->idx, (int)w->pid, cr->bad);
  else if (cr->r == WR_TIMEOUT)
    snprintf(how, sizeof how, "did not return within %g s (--py-timeout); worker %d (pid %d) "
             "was killed", p->o.timeout_sec, w->idx, (int)w->pid);
  else {
    char dt[200];
    nr__worker_death_text(w, dt, sizeof dt);
    snprintf(how, sizeof how, "Python worker %d (pid %d) %s", w->idx, (int)w->pid, dt);
  }
  nr__worker_fault_text(w, stack, sizeof stack);
  return nr_err_set(err, NR_ERR_WORKER, "%s: %s%s%s", desc, how,
                    *stack ? "\nLast Python stack (faulthandler):\n" : "", stack);
}

/* One exchange with q's worker, under the worker's io lock (prefetch threads share it). */
nr_status nr__call_once(nr_pool *p, pl *q, nr_py_method m, callres *cr, nr_error *err) {
  worker *w = &p->w[q->w];
  nr_status s = NR_OK;
  pthread_mutex_lock(&w->io);
  if (w->failed || !w->ctl) {
    cr->r = WR_GONE;
  } else {
    s = exchange(p, q, m, cr, err);
    if (s == NR_OK && (cr->r == WR_DEAD || cr->r == WR_TIMEOUT || cr->r == WR_PROTO))
      nr__worker_finish(w, cr->r);
  }
  pthread_mutex_unlock(&w->io);
  return s;
}

/* A new layer instance for l, placed on a worker (started if need be) and appended to the
 * pool's list. A pool of a fixed size, and a data layer's replicas (NR_PLACE_SPREAD, so
 * that they land on distinct workers), take the next worker round-robin over the whole
 * pool. In a pool sized by its layers (nworkers -1), a prefetched data layer's only
 * instance takes a new worker while there are CPUs for one (it runs ahead of the net,
 * beside it), and the layers the net calls in step share one worker, a new one when they
 * come first: the net calls them one after the other, so one interpreter serves them all
 * as fast as several would, and it is warm from the call before. A layer on a worker of
 * its own that slept through the native layers ran its NumPy 2-3x slower than the same
 * code just run in the same interpreter (bench/pynet: a top-1 accuracy layer after the
 * loss, 178-188 us against 73-74 us per reshape + forward; docs/workers.md). */
static int new_worker_or_next(nr_pool *p) {
  return p->nstarted < p->max_workers ? p->nstarted++ : p->rr++ % p->max_workers;
}

nr_status nr__pl_new(nr_pool *p, nr_layer *l, nr_place place, pl **out, nr_error *err) {
  pl *q = calloc(1, sizeof *q);
  if (!q) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  if (nr__pybind_init(&q->pb, l, err) != NR_OK) {
    free(q);
    return NR_ERR_NOMEM;
  }
  q->pool = p;
  q->id = ++p->next_layer;
  const bool all = p->o.nworkers > 0 || place == NR_PLACE_SPREAD;
  if (all) {
    q->w = p->rr++ % p->max_workers;
    p->nstarted = p->max_workers;
  } else if (place == NR_PLACE_OWN) {
    q->w = new_worker_or_next(p);
  } else {
    if (p->step_w < 0) p->step_w = new_worker_or_next(p);
    q->w = p->step_w;
  }
  if (p->layers_tail) p->layers_tail->next = q;
  else p->layers = q;
  p->layers_tail = q;
  nr__zygote_note_layer(p, l);
  /* start all fixed-size workers together so their interpreters load in parallel */
  int lo = all ? 0 : q->w, hi = all ? p->max_workers : q->w + 1;
  for (int i = lo; i < hi; i++) {
    nr_status s = p->w[i].pid ? NR_OK : nr__worker_spawn(p, &p->w[i], err);
    if (s != NR_OK) {
      *out = q; /* listed: freed with the pool */
      return s;
    }
  }
  *out = q;
  return NR_OK;
}

/* Tells q's worker to drop the Python object, unlinks q from the pool and frees it. */
void nr__pl_free(nr_pool *p, pl *q) {
  worker *w = &p->w[q->w];
  pthread_mutex_lock(&w->io);
  if (w->last_q == q) w->last_q = NULL;
  if (q->created && w->pid && w->hello && !w->failed && !atomic_load(&w->dead)) {
    w->ctl->op = NR_OP_RELEASE;
    w->ctl->layer = q->id;
    w->ctl->len = 0;
    if (nr__post(w, NULL)) {
      wres r = nr__wait_reply(p, w, w->seq, nr_wire_now_ns() + 5000000000LL, NULL, 0);
      if (r != WR_OK) nr__worker_finish(w, r);
    }
  }
  pthread_mutex_unlock(&w->io);
  pl **pp = &p->layers;
  pl *prev = NULL;
  for (; *pp && *pp != q; pp = &(*pp)->next) prev = *pp;
  if (*pp) {
    *pp = q->next;
    if (p->layers_tail == q) p->layers_tail = prev;
  }
  nr__pybind_free(&q->pb);
  free(q);
}
