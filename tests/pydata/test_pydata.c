/* Prefetched Python data layers (ipc/pool_prefetch.c) in real nets: batches reach the net in index
 * order with the right values (also through a Python layer in another worker, which sees
 * the swapped buffers), 1/2/4 replicas give bit-identical sequences, varying batch shapes,
 * a replica killed mid-run with restarts loses and duplicates nothing, without restarts
 * the error names the layer (batches before the lost one are still delivered), a Python
 * exception in a prefetched forward, the "Waiting for data" log, --py-prefetch 0, and no
 * leftover process or /dev/shm entry. Fixtures: tests/pydata/pd_layers.py. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "nr_test.h"
#include "textformat.h"
#include "wire.h"
#include "wk.h"

static int shm_before;
static double pd_timeout = 30; /* --py-timeout of the pools pd_open makes */

typedef struct pd {
  nr_pool *pool;
  nr_net *net;
  FILE *logf;
  char *log;
  size_t loglen;
  int R; /* replicas actually expected (after capping) */
} pd;

static const char *pd_dir(void) {
  static char dir[1024];
  const char *src = getenv("NR_SOURCE_DIR");
  snprintf(dir, sizeof dir, "%s/tests/pydata", src ? src : ".");
  return dir;
}

/* Builds the net: 'src' (BatchIndex, replicas R) -> data, who; with copy, a Python Copy
 * layer data -> copy in whichever worker round-robin gives it. */
static nr_status pd_open(pd *t, int workers, int prefetch, int restarts, int replicas,
                         const char *ps, bool copy, nr_error *err) {
  memset(t, 0, sizeof *t);
  t->logf = open_memstream(&t->log, &t->loglen);
  nr_pool_opts o = {workers, pd_timeout, restarts, NULL, t->logf, prefetch, 0, NULL, NULL};
  NR_TRY(nr_pool_create(&o, &t->pool, err));
  char text[2048];
  snprintf(text, sizeof text,
           "name: 'pd'\n"
           "layer { name: 'src' type: 'Python' top: 'data' top: 'who'\n"
           "  python_param { module: 'pd_layers' layer: 'BatchIndex' param_str: \"%s\"\n"
           "                 replicas: %d } }\n"
           "%s",
           ps, replicas,
           copy ? "layer { name: 'copy' type: 'Python' bottom: 'data' top: 'copy'\n"
                  "  python_param { module: 'pd_layers' layer: 'Copy' } }\n"
                : "");
  ProtobufCMessage *m = NULL;
  NR_TRY(nr_text_parse(text, strlen(text), "pd", &caffe__net_parameter__descriptor, &m, err));
  nr_net_opts no = {0};
  no.phase = NR_TRAIN;
  no.alloc = nr_pool_allocator(t->pool);
  no.py = nr_pool_backend(t->pool);
  no.source_dir = pd_dir();
  nr_status s = nr_net_create((Caffe__NetParameter *)m, &no, &t->net, err);
  nr_text_free(m);
  return s;
}

static void pd_close(pd *t) {
  nr_net_destroy(t->net);
  nr_pool_destroy(t->pool);
  if (t->logf) fclose(t->logf);
  t->logf = NULL;
}

static void pd_free(pd *t) {
  free(t->log);
  t->log = NULL;
}

/* Checks that the net's tops hold batch k (rows given), produced by replica k % R. */
static int batch_ok(pd *t, int64_t k, int64_t rows, bool copy, char *why, size_t wl) {
  nr_blob *d = nr_net_blob(t->net, "data"), *who = nr_net_blob(t->net, "who");
  nr_blob *c = copy ? nr_net_blob(t->net, "copy") : NULL;
  if (!d || !who || (copy && !c)) return snprintf(why, wl, "missing blob"), 0;
  if (d->num_axes != 2 || d->shape[0] != rows || d->shape[1] != 3 || who->count != rows)
    return snprintf(why, wl, "batch %lld: data shape %lldx%lld (%d axes), who %lld; expected "
                    "%lldx3", (long long)k, (long long)d->shape[0],
                    (long long)(d->num_axes > 1 ? d->shape[1] : 0), d->num_axes,
                    (long long)who->count, (long long)rows), 0;
  for (int64_t i = 0; i < rows; i++) {
    for (int j = 0; j < 3; j++) {
      float want = (float)(k * 1000 + i * 10 + j);
      if (d->data[i * 3 + j] != want)
        return snprintf(why, wl, "batch %lld: data[%lld][%d] = %g, expected %g", (long long)k,
                        (long long)i, j, d->data[i * 3 + j], want), 0;
      if (c && (c->count != d->count || c->data[i * 3 + j] != want))
        return snprintf(why, wl, "batch %lld: copy[%lld][%d] = %g, expected %g", (long long)k,
                        (long long)i, j, c->count == d->count ? c->data[i * 3 + j] : -1.f,
                        want), 0;
    }
    if (who->data[i] != (float)(k % t->R))
      return snprintf(why, wl, "batch %lld came from replica %g, expected %lld", (long long)k,
                      who->data[i], (long long)(k % t->R)), 0;
  }
  return 1;
}

static void check_clean(void) {
  CHECK_INT_EQ(wk_children(), 0);
  CHECK_INT_EQ(wk_shm_entries(), shm_before);
}

static void test_prefetch_order_values(void) {
  nr_error err;
  pd t;
  t.R = 1;
  CHECK_OK(pd_open(&t, 2, 3, 0, 0, "{'rows': 4}", true, &err), &err);
  t.R = 1;
  char why[512];
  int ok = 1;
  for (int64_t k = 0; k < 30 && ok; k++) {
    CHECK_OK(nr_net_forward(t.net, NULL, &err), &err);
    ok = batch_ok(&t, k, 4, true, why, sizeof why);
  }
  pd_close(&t);
  if (!ok) fprintf(stderr, "%s\n", why);
  CHECK(ok);
  CHECK_CONTAINS(t.log, "Python data layer 'src' (phase TRAIN): 1 replica on worker 0, 3 batches");
  pd_free(&t);
  check_clean();
}

/* A pool sized by its layers (-1): the prefetched data layer runs ahead on a worker of its
 * own and the layer the net calls in step gets another, so one never waits for the
 * other's batch (ipc/pool_call.c, nr__pl_new); the batches are right. */
static void test_sized_pool_data_apart(void) {
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2) return; /* one CPU: one worker for all */
  nr_error err;
  pd t;
  CHECK_OK(pd_open(&t, -1, 3, 0, 0, "{'rows': 4}", true, &err), &err);
  t.R = 1;
  char why[512];
  int ok = 1;
  for (int64_t k = 0; k < 10 && ok; k++) {
    CHECK_OK(nr_net_forward(t.net, NULL, &err), &err);
    ok = batch_ok(&t, k, 4, true, why, sizeof why);
  }
  CHECK_INT_EQ(nr_pool_nworkers(t.pool), 2);
  pd_close(&t);
  if (!ok) fprintf(stderr, "%s\n", why);
  CHECK(ok);
  CHECK_CONTAINS(t.log, "Python data layer 'src' (phase TRAIN): 1 replica on worker 0");
  pd_free(&t);
  check_clean();
}

/* The whole sequence of 24 batches (data values) with R replicas in a pool of 4. */
static int run_replicas(int R, float *out, char *why, size_t wl) {
  nr_error err;
  pd t;
  if (pd_open(&t, 4, 3, 0, R, "{'rows': 5}", false, &err) != NR_OK) {
    snprintf(why, wl, "%.400s", err.msg);
    pd_close(&t);
    pd_free(&t);
    return 0;
  }
  t.R = R < 1 ? 1 : R;
  int ok = 1;
  for (int64_t k = 0; k < 24 && ok; k++) {
    if (nr_net_forward(t.net, NULL, &err) != NR_OK) {
      snprintf(why, wl, "%.400s", err.msg);
      ok = 0;
      break;
    }
    ok = batch_ok(&t, k, 5, false, why, wl);
    if (ok) memcpy(out + k * 15, nr_net_blob(t.net, "data")->data, 15 * sizeof(float));
  }
  pd_close(&t);
  pd_free(&t);
  return ok;
}

static void test_replicas_bit_identical(void) {
  static float a[24 * 15], b[24 * 15], c[24 * 15];
  char why[512] = "";
  int ok = run_replicas(1, a, why, sizeof why);
  if (!ok) fprintf(stderr, "R=1: %s\n", why);
  CHECK(ok);
  ok = run_replicas(2, b, why, sizeof why);
  if (!ok) fprintf(stderr, "R=2: %s\n", why);
  CHECK(ok);
  ok = run_replicas(4, c, why, sizeof why);
  if (!ok) fprintf(stderr, "R=4: %s\n", why);
  CHECK(ok);
  CHECK(memcmp(a, b, sizeof a) == 0);
  CHECK(memcmp(a, c, sizeof a) == 0);
  check_clean();
}

static void test_replicas_capped(void) {
  nr_error err;
  pd t;
  CHECK_OK(pd_open(&t, 2, 3, 0, 4, "{}", false, &err), &err);
  t.R = 2;
  char why[512];
  int ok = 1;
  for (int64_t k = 0; k < 10 && ok; k++) {
    CHECK_OK(nr_net_forward(t.net, NULL, &err), &err);
    ok = batch_ok(&t, k, 4, false, why, sizeof why);
  }
  pd_close(&t);
  if (!ok) fprintf(stderr, "%s\n", why);
  CHECK(ok);
  CHECK_CONTAINS(t.log, "layer 'src': replicas: 4 capped at the pool size (2 Python workers)");
  CHECK_CONTAINS(t.log, "2 replicas on workers 0, 1");
  pd_free(&t);
  check_clean();
}

static void test_varying_shapes(void) {
  nr_error err;
  pd t;
  /* rows 1 + 7k % 13: 1..13 rows, growing past every earlier capacity */
  CHECK_OK(pd_open(&t, 2, 3, 0, 2, "{'vary': 13}", true, &err), &err);
  t.R = 2;
  char why[512];
  int ok = 1;
  for (int64_t k = 0; k < 40 && ok; k++) {
    CHECK_OK(nr_net_forward(t.net, NULL, &err), &err);
    ok = batch_ok(&t, k, 1 + (k * 7) % 13, true, why, sizeof why);
  }
  pd_close(&t);
  if (!ok) fprintf(stderr, "%s\n", why);
  CHECK(ok);
  pd_free(&t);
  check_clean();
}

/* A replica whose worker fails once at batch `at` (param_str key `what`: die_at / hang_at,
 * with --py-timeout `timeout`) is restarted and the lost batch produced again: batches
 * 0 .. n-1 arrive in order, once each (`dense`: every row checked), one restart, and the
 * log says why (`want`) and which batch is produced again (`again`). */
static void replica_restart_case(const char *what, int at, double timeout, int n, bool dense,
                                 const char *want, const char *again) {
  nr_error err;
  pd t;
  char marker[256], ps[512];
  snprintf(marker, sizeof marker, "/tmp/nr_pydata_%s_%d", what, (int)getpid());
  unlink(marker);
  snprintf(ps, sizeof ps, "{'%s_at': %d, '%s_once': '%s'}", what, at, what, marker);
  pd_timeout = timeout;
  nr_status s = pd_open(&t, 2, 3, 1, 2, ps, dense, &err);
  pd_timeout = 30;
  CHECK_OK(s, &err);
  t.R = 2;
  char why[512];
  int ok = 1;
  for (int64_t k = 0; k < n && ok; k++) {
    CHECK_OK(nr_net_forward(t.net, NULL, &err), &err);
    ok = batch_ok(&t, k, 4, dense, why, sizeof why);
  }
  int restarts = nr_pool_restarts(t.pool);
  pd_close(&t);
  unlink(marker);
  if (!ok) fprintf(stderr, "%s\n", why);
  CHECK(ok);
  CHECK_INT_EQ(restarts, 1);
  CHECK_CONTAINS(t.log, want);
  CHECK_CONTAINS(t.log, again);
  pd_free(&t);
  check_clean();
}

static void test_killed_replica_restarts(void) {
  replica_restart_case("die", 7, 30, 20, true, "killed by signal SIGKILL",
                       "replica 1 of layer 'src' produces batch 7 again");
}

static void test_hung_replica_timeout_restarts(void) {
  replica_restart_case("hang", 4, 1, 12, false, "did not return within 1 s (--py-timeout)",
                       "replica 0 of layer 'src' produces batch 4 again");
}

/* A prefetch thread stuck in a hung layer (no --py-timeout) does not hang the net's
 * destruction: after 5 s its worker is killed. */
static void test_release_with_hung_batch(void) {
  nr_error err;
  pd t;
  char marker[256], ps[512];
  snprintf(marker, sizeof marker, "/tmp/nr_pydata_release_hang_%d", (int)getpid());
  unlink(marker);
  /* hang_once writes the marker as the layer enters the hang: wait for it rather than
   * guessing how long the prefetch thread takes to get there on a loaded machine. */
  snprintf(ps, sizeof ps, "{'hang_at': 5, 'hang_once': '%s'}", marker);
  pd_timeout = 0;
  nr_status s = pd_open(&t, 1, 3, 0, 0, ps, false, &err);
  pd_timeout = 30;
  CHECK_OK(s, &err);
  for (int k = 0; k < 4; k++) CHECK_OK(nr_net_forward(t.net, NULL, &err), &err);
  for (int i = 0; i < 600 && access(marker, F_OK) != 0; i++) usleep(50000);
  CHECK(access(marker, F_OK) == 0); /* the thread reached batch 5 and hangs in it */
  unlink(marker);
  int64_t t0 = nr_wire_now_ns();
  pd_close(&t);
  double secs = (double)(nr_wire_now_ns() - t0) / 1e9;
  pd_free(&t);
  CHECK(secs > 4); /* it did wait for the batch to finish first */
  CHECK(secs < 15);
  check_clean();
}

static void test_killed_replica_no_restart(void) {
  nr_error err;
  pd t;
  CHECK_OK(pd_open(&t, 2, 3, 0, 2, "{'die_at': 7}", false, &err), &err);
  t.R = 2;
  char why[512];
  int ok = 1;
  for (int64_t k = 0; k < 7 && ok; k++) { /* the batches before the lost one arrive */
    CHECK_OK(nr_net_forward(t.net, NULL, &err), &err);
    ok = batch_ok(&t, k, 4, false, why, sizeof why);
  }
  if (!ok) fprintf(stderr, "%s\n", why);
  nr_status s = nr_net_forward(t.net, NULL, &err);
  nr_status s2 = nr_net_forward(t.net, NULL, &err); /* stays failed, no hang */
  pd_close(&t);
  CHECK(ok);
  CHECK_INT_EQ(s, NR_ERR_WORKER);
  CHECK_INT_EQ(s2, NR_ERR_WORKER);
  pd_free(&t);
  check_clean();
}

static void test_killed_replica_message(void) {
  nr_error err;
  pd t;
  CHECK_OK(pd_open(&t, 2, 3, 0, 2, "{'die_at': 3}", false, &err), &err);
  t.R = 2;
  for (int k = 0; k < 3; k++) CHECK_OK(nr_net_forward(t.net, NULL, &err), &err);
  nr_status s = nr_net_forward(t.net, NULL, &err);
  pd_close(&t);
  pd_free(&t);
  CHECK_INT_EQ(s, NR_ERR_WORKER);
  CHECK_CONTAINS(err.msg, "layer 0 'src' (Python) forward");
  CHECK_CONTAINS(err.msg, "pd_layers.BatchIndex.forward (layer 'src', phase TRAIN");
  CHECK_CONTAINS(err.msg, "was killed by signal SIGKILL");
  check_clean();
}

static void test_python_error(void) {
  nr_error err;
  pd t;
  CHECK_OK(pd_open(&t, 1, 3, 1, 0, "{'raise_at': 5}", false, &err), &err);
  t.R = 1;
  for (int k = 0; k < 5; k++) CHECK_OK(nr_net_forward(t.net, NULL, &err), &err);
  nr_status s = nr_net_forward(t.net, NULL, &err);
  int restarts = nr_pool_restarts(t.pool);
  pd_close(&t);
  pd_free(&t);
  CHECK_INT_EQ(s, NR_ERR_PYTHON);
  CHECK_INT_EQ(restarts, 0); /* an exception is not a death */
  CHECK_CONTAINS(err.msg, "pd_layers.BatchIndex.forward (layer 'src', phase TRAIN");
  CHECK_CONTAINS(err.msg, "raised ValueError: BatchIndex: asked to fail at batch 5");
  CHECK_CONTAINS(err.msg, "Traceback");
  check_clean();
}

static void test_waiting_for_data(void) {
  nr_error err;
  pd t;
  CHECK_OK(pd_open(&t, 1, 2, 0, 0, "{'sleep': 0.03}", false, &err), &err);
  t.R = 1;
  for (int k = 0; k < 8; k++) CHECK_OK(nr_net_forward(t.net, NULL, &err), &err);
  double ms = 0;
  int64_t waits = nr_pool_data_waits(t.pool, &ms);
  pd_close(&t);
  CHECK(waits >= 4);
  CHECK(ms > 50);
  CHECK_CONTAINS(t.log, "Waiting for data (Python data layer 'src', phase TRAIN: the net waited");
  /* rate-limited: one line for all those waits */
  const char *first = strstr(t.log, "Waiting for data");
  CHECK(first && !strstr(first + 1, "Waiting for data"));
  pd_free(&t);
  check_clean();
}

static void test_prefetch_off(void) {
  nr_error err;
  pd t;
  nr_status s = pd_open(&t, 1, 0, 0, 2, "{}", false, &err);
  pd_close(&t);
  pd_free(&t);
  CHECK_INT_EQ(s, NR_ERR_PYTHON); /* the fixture insists on being prefetched */
  CHECK_CONTAINS(err.msg, "expects to be prefetched (get_worker_info() is None)");
  check_clean();
}

int main(void) {
  shm_before = wk_shm_entries();
  NR_RUN(test_prefetch_order_values);
  NR_RUN(test_replicas_bit_identical);
  NR_RUN(test_replicas_capped);
  NR_RUN(test_varying_shapes);
  NR_RUN(test_killed_replica_restarts);
  NR_RUN(test_hung_replica_timeout_restarts);
  NR_RUN(test_release_with_hung_batch);
  NR_RUN(test_killed_replica_no_restart);
  NR_RUN(test_killed_replica_message);
  NR_RUN(test_python_error);
  NR_RUN(test_waiting_for_data);
  NR_RUN(test_prefetch_off);
  NR_RUN(test_sized_pool_data_apart);
  return NR_TEST_EXIT();
}
