/* prefetch.c: see prefetch.h. */
#include "prefetch.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct nr_prefetch {
  nr_prefetch_fill fill;
  void *ctx;
  FILE *log;
  size_t data_floats, label_floats;
  int nslots;
  float **data, **label; /* slot i: data[i], label[i] */
  pthread_mutex_t mu;
  pthread_cond_t ready_cv, space_cv;
  int head;   /* next slot take uses */
  int nready; /* filled slots from head on */
  bool stop, failed, started;
  pthread_t thread;
  nr_error thread_err;
  unsigned long long waits;
};

static void *prefetch_main(void *arg) {
  nr_prefetch *p = arg;
  int slot = 0; /* filled in ring order, from 0 */
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (!p->stop && p->nready == p->nslots) pthread_cond_wait(&p->space_cv, &p->mu);
    bool stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    if (stop) return NULL;
    /* the slot is free: take hands a slot back only after copying out of it */
    nr_status s = p->fill(p->ctx, p->data[slot], p->label ? p->label[slot] : NULL,
                          &p->thread_err);
    pthread_mutex_lock(&p->mu);
    if (s != NR_OK) p->failed = true;
    else p->nready++;
    pthread_cond_signal(&p->ready_cv);
    pthread_mutex_unlock(&p->mu);
    if (s != NR_OK) return NULL;
    slot = (slot + 1) % p->nslots;
  }
}

static void free_ring(nr_prefetch *p) {
  for (int i = 0; i < p->nslots; i++) {
    if (p->data) free(p->data[i]);
    if (p->label) free(p->label[i]);
  }
  free(p->data);
  free(p->label);
  free(p);
}

nr_status nr_prefetch_start(int nslots, size_t data_floats, size_t label_floats,
                            nr_prefetch_fill fill, void *ctx, FILE *log, nr_prefetch **out,
                            nr_error *err) {
  *out = NULL;
  nr_prefetch *p = calloc(1, sizeof *p);
  if (!p) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  *p = (nr_prefetch){.fill = fill, .ctx = ctx, .log = log ? log : stderr,
                     .data_floats = data_floats, .label_floats = label_floats,
                     .nslots = nslots};
  p->data = calloc((size_t)nslots, sizeof *p->data);
  if (label_floats) p->label = calloc((size_t)nslots, sizeof *p->label);
  if (!p->data || (label_floats && !p->label)) {
    free_ring(p);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; i < nslots; i++) {
    p->data[i] = malloc((data_floats ? data_floats : 1) * sizeof(float));
    if (label_floats) p->label[i] = malloc(label_floats * sizeof(float));
    if (!p->data[i] || (label_floats && !p->label[i])) {
      free_ring(p);
      return nr_err_set(err, NR_ERR_NOMEM, "out of memory for %d prefetch batches", nslots);
    }
  }
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    free_ring(p);
    return nr_err_set(err, NR_ERR_NOMEM, "cannot create a mutex");
  }
  if (pthread_cond_init(&p->ready_cv, NULL) != 0 || pthread_cond_init(&p->space_cv, NULL) != 0) {
    pthread_mutex_destroy(&p->mu);
    free_ring(p);
    return nr_err_set(err, NR_ERR_NOMEM, "cannot create a condition variable");
  }
  sigset_t all, old;
  sigfillset(&all);
  const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP};
  for (size_t i = 0; i < sizeof faults / sizeof *faults; i++) sigdelset(&all, faults[i]);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int rc = pthread_create(&p->thread, NULL, prefetch_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    pthread_cond_destroy(&p->ready_cv);
    pthread_cond_destroy(&p->space_cv);
    pthread_mutex_destroy(&p->mu);
    free_ring(p);
    return nr_err_set(err, NR_ERR_NOMEM, "cannot start the prefetch thread: %s", strerror(rc));
  }
  p->started = true;
  *out = p;
  return NR_OK;
}

nr_status nr_prefetch_take(nr_prefetch *p, float *data, float *label, nr_error *err) {
  pthread_mutex_lock(&p->mu);
  if (p->nready == 0 && !p->failed) {
    if (p->waits++ % 1000 == 0) fprintf(p->log, "Waiting for data\n");
    while (p->nready == 0 && !p->failed) pthread_cond_wait(&p->ready_cv, &p->mu);
  }
  if (p->nready == 0) { /* the thread failed and every good batch is used */
    pthread_mutex_unlock(&p->mu);
    return nr_err_set(err, p->thread_err.status, "%s", p->thread_err.msg);
  }
  const int slot = p->head;
  pthread_mutex_unlock(&p->mu);
  memcpy(data, p->data[slot], p->data_floats * sizeof(float));
  if (p->label && label) memcpy(label, p->label[slot], p->label_floats * sizeof(float));
  pthread_mutex_lock(&p->mu);
  p->head = (p->head + 1) % p->nslots;
  p->nready--;
  pthread_cond_signal(&p->space_cv);
  pthread_mutex_unlock(&p->mu);
  return NR_OK;
}

void nr_prefetch_stop(nr_prefetch *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  pthread_cond_broadcast(&p->space_cv);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->thread, NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->ready_cv);
  pthread_cond_destroy(&p->space_cv);
  free_ring(p);
}
