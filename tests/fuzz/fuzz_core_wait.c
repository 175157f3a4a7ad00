/* fuzz_core_wait.c: libFuzzer target for the core's side of the wake-up protocol
 * (ipc/wire.h): the words a worker can write in its control block, while the core waits
 * for a reply and then reads it.
 * Input: bytes 0-3 the sequence number the core waits for; byte 4 flags (bit 0: the core's
 * private death flag is raised after the writes; bit 1: strict check off); then records of
 * [offset (2 bytes, into the first 4 KiB of the block) | length (1 byte) | bytes], written by
 * a "worker" thread with a short pause between records, as a hostile Python layer could.
 * Whatever the bytes: the wait returns 0, ETIMEDOUT, ECANCELED or EPROTO within its
 * deadline (plus scheduling slack), never crashes or hangs; 0 means the word holds the
 * number; a reply read after it is either accepted within the limits or refused (EPROTO). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

#define HDR 4096

static void must(int cond) {
  if (!cond) abort(); /* a broken invariant is a finding */
}

typedef struct {
  nr_ctl *ctl;
  const uint8_t *rec;
  size_t len;
  _Atomic int *dead;
  bool raise_dead;
} writer;

static void *worker_main(void *arg) {
  writer *w = arg;
  size_t off = 0;
  while (off + 3 <= w->len) {
    size_t at = ((size_t)w->rec[off] | (size_t)w->rec[off + 1] << 8) % HDR;
    size_t n = w->rec[off + 2];
    off += 3;
    if (n > w->len - off) n = w->len - off;
    if (at + n > HDR) n = HDR - at;
    memcpy((char *)w->ctl + at, w->rec + off, n);
    off += n;
    if (at <= offsetof(nr_ctl, rep_sleep)) nr_wire_wake_all(&w->ctl->rep_seq);
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
  }
  if (w->raise_dead) {
    atomic_store(w->dead, 1);
    nr_wire_wake_all(&w->ctl->rep_seq);
  }
  return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 5) return 0;
  static nr_ctl *ctl;
  if (!ctl) must((ctl = calloc(1, NR_CTL_SIZE)) != NULL);
  memset(ctl, 0, HDR);
  uint32_t want = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                  (uint32_t)data[3] << 24;
  atomic_store(&ctl->rep_seq, want - 1); /* the call is pending */
  _Atomic int dead = 0;
  writer w = {ctl, data + 5, size - 5, &dead, data[4] & 1};
  pthread_t th;
  must(pthread_create(&th, NULL, worker_main, &w) == 0);
  int64_t spin = 2000, t0 = nr_wire_now_ns(), deadline = t0 + 3000000; /* 3 ms */
  int r = nr_wire_wait(&ctl->rep_seq, want, !(data[4] & 2), &ctl->rep_sleep, &dead, &spin,
                       200000, deadline, &ctl->core_cpu, &ctl->worker_cpu);
  int64_t took = nr_wire_now_ns() - t0;
  pthread_join(th, NULL);
  must(r == 0 || r == ETIMEDOUT || r == ECANCELED || r == EPROTO);
  must(took < 3000000 + 500000000LL); /* the deadline, plus generous scheduling slack */
  must(spin >= 1000 && spin <= 200000);
  if (r == 0) {
    uint32_t op = *(volatile uint32_t *)&ctl->op;
    nr_wire_reply rep;
    memset(&rep, 0, sizeof rep);
    const char *why = NULL;
    int d = nr_wire_read_reply(ctl, op, &rep, &why);
    must(d == 0 || d == EPROTO || d == ENOMEM);
    if (d == EPROTO) must(why != NULL);
    nr_wire_reply_clear(&rep);
  }
  return 0;
}
