/* Waking ahead (worker/server.c, "Waking ahead"; docs/workers.md): with each call the core
 * tells the worker when it expects the next one (the gap it saw last time after the same
 * layer's method) and the worker gets up shortly before then. These cases check what a
 * user would notice if it went wrong:
 *   - calls at steady and at erratic intervals give the right results (a wrong hint costs
 *     time, never a call);
 *   - between calls 5 ms apart the worker sleeps: it uses a small share of a CPU, not a
 *     spinning core;
 *   - a worker killed or stopped while it waits for a hinted call is reported as before
 *     (death, --py-timeout), and restarted when restarts are left. */
#include <cblas.h>
#include <signal.h>
#include <time.h>

#include "nr_test.h"
#include "wk.h"

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* CPU time (user + system) of process pid so far, in seconds; -1 if unknown. */
static double cpu_seconds(pid_t pid) {
  char buf[1024];
  char *rp = wk_read_stat(pid, buf, sizeof buf);
  unsigned long ut = 0, st = 0;
  /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt,
   * then utime stime */
  if (!rp || sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct fixture {
  nr_pool *p;
  wk_chain c;
} fixture;

static bool fixture_init(fixture *f, double timeout, int restarts) {
  nr_error err;
  memset(f, 0, sizeof *f);
  nr_pool_opts o = {.nworkers = 1, .timeout_sec = timeout, .max_restarts = restarts};
  static const char *const cls[] = {"TimesTen"};
  if (nr_pool_create(&o, &f->p, &err) != NR_OK ||
      wk_chain_init(&f->c, nr_pool_backend(f->p), nr_pool_allocator(f->p), 1, "nr_fx_layers",
                    cls, NULL, 0, &err) != NR_OK ||
      nr_blob_reshape4(f->c.b[0], 2, 3, 4, 5, &err) != NR_OK ||
      wk_chain_setup(&f->c, &err) != NR_OK) {
    fprintf(stderr, "  fixture: %s\n", err.msg);
    return false;
  }
  return true;
}

static void fixture_free(fixture *f) {
  wk_chain_free(&f->c);
  nr_pool_destroy(f->p);
}

/* One forward (reshape + forward) and backward of the TimesTen layer on input value v;
 * checks the results. */
static nr_status step(fixture *f, float v, nr_error *err) {
  nr_blob *in = f->c.b[0], *out = f->c.b[1];
  for (int64_t i = 0; i < in->count; i++) in->data[i] = v + (float)i;
  NR_TRY(wk_chain_forward(&f->c, err));
  for (int64_t i = 0; i < out->count; i++) out->diff[i] = 1.0f;
  NR_TRY(wk_chain_backward(&f->c, err));
  for (int64_t i = 0; i < out->count; i++)
    if (out->data[i] != 10 * (v + (float)i) || in->diff[i] != 10.0f)
      return nr_err_set(err, NR_ERR_INTERNAL, "wrong result at %lld", (long long)i);
  return NR_OK;
}

/* Steady gaps, then erratic ones (0 to 8 ms, the hint wrong most of the time). */
static void test_results_at_any_interval(void) {
  fixture f;
  CHECK(fixture_init(&f, 10, 0));
  nr_error err;
  for (int i = 0; i < 40; i++) {
    CHECK_OK(step(&f, (float)i, &err), &err);
    sleep_us(2000);
  }
  unsigned r = 12345;
  for (int i = 0; i < 200; i++) {
    CHECK_OK(step(&f, (float)i, &err), &err);
    r = r * 1103515245u + 12345u;
    long gap = (long)((r >> 8) % 4) * 2000 + (long)((r >> 4) % 7) * 10;
    if (gap) sleep_us(gap);
  }
  fixture_free(&f);
}

/* 200 calls 5 ms apart: the worker must not spin through the gaps. Its CPU share is a few
 * percent (a Python call, a wake-up and a short spin per call); a worker that spun the whole
 * gap would show close to 100 %. Bound: half a CPU. */
static void test_sleeps_between_calls(void) {
  fixture f;
  CHECK(fixture_init(&f, 10, 0));
  nr_error err;
  for (int i = 0; i < 20; i++) {
    CHECK_OK(step(&f, 1, &err), &err);
    sleep_us(5000);
  }
  pid_t pid = nr_pool_worker_pid(f.p, 0);
  double c0 = cpu_seconds(pid), t0 = now_s();
  for (int i = 0; i < 200; i++) {
    CHECK_OK(step(&f, 1, &err), &err);
    sleep_us(5000);
  }
  double c1 = cpu_seconds(pid), t1 = now_s();
  CHECK(c0 >= 0 && c1 >= 0);
  double share = (c1 - c0) / (t1 - t0);
  fprintf(stderr, "  worker CPU share with calls 5 ms apart: %.1f %%\n", 100 * share);
  CHECK(share < 0.5);
  fixture_free(&f);
}

/* Steady calls, so the worker waits for the next one ahead of time; then it is killed
 * (SIGKILL) or stopped (SIGSTOP: a hang) in the gap. */
static void killed_in_gap(int sig, int restarts) {
  fixture f;
  CHECK(fixture_init(&f, 0.5, restarts));
  nr_error err;
  for (int i = 0; i < 30; i++) {
    CHECK_OK(step(&f, (float)i, &err), &err);
    sleep_us(3000);
  }
  pid_t pid = nr_pool_worker_pid(f.p, 0);
  sleep_us(1500); /* about half-way to the hinted call */
  kill(pid, sig);
  sleep_us(1500);
  nr_status s = step(&f, 1, &err);
  if (restarts) {
    CHECK_OK(s, &err);
    CHECK_INT_EQ(nr_pool_restarts(f.p), 1);
    CHECK(nr_pool_worker_pid(f.p, 0) != pid);
    CHECK_OK(step(&f, 2, &err), &err);
  } else {
    CHECK_INT_EQ(s, NR_ERR_WORKER);
    if (sig == SIGKILL) CHECK_CONTAINS(err.msg, "was killed by signal SIGKILL");
    else CHECK_CONTAINS(err.msg, "did not return within 0.5 s (--py-timeout)");
    CHECK_CONTAINS(err.msg, "TimesTen.reshape");
  }
  if (sig == SIGSTOP) kill(pid, SIGCONT); /* killed already; harmless if reaped */
  fixture_free(&f);
  CHECK_INT_EQ(wk_children(), 0);
}

static void test_killed_in_gap(void) { killed_in_gap(SIGKILL, 0); }
static void test_stopped_in_gap(void) { killed_in_gap(SIGSTOP, 0); }
static void test_killed_in_gap_restarted(void) { killed_in_gap(SIGKILL, 1); }
static void test_stopped_in_gap_restarted(void) { killed_in_gap(SIGSTOP, 1); }

static int fds0;
static void test_no_descriptor_left(void) { CHECK_INT_EQ(wk_open_fds(), fds0); }

int main(void) {
  /* The core sends the hint only while its threads leave a CPU free (ipc/pool_call.c):
   * one engine thread, so that it does on any machine with 2 CPUs or more. */
  openblas_set_num_threads(1);
  fds0 = wk_open_fds();
  NR_RUN(test_results_at_any_interval);
  NR_RUN(test_sleeps_between_calls);
  NR_RUN(test_killed_in_gap);
  NR_RUN(test_stopped_in_gap);
  NR_RUN(test_killed_in_gap_restarted);
  NR_RUN(test_stopped_in_gap_restarted);
  NR_RUN(test_no_descriptor_left);
  return NR_TEST_EXIT();
}
