/* Worker life and death: --py-restarts recovering crashes and hangs with the right
 * results, restarts running out, workers dying within 1 s of a SIGKILLed core, print()
 * lines arriving whole; the pool's shared memory private (no name, mode 0600). */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "nr_test.h"
#include "wire.h"
#include "wk.h"

static char tmpdir[256];

static void marker(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/%s", tmpdir, name);
  unlink(buf);
}

static char *read_all(FILE *f) {
  fflush(f);
  long n = ftell(f);
  char *s = calloc(1, (size_t)n + 1);
  rewind(f);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = '\0';
  return s;
}

/* Scale -> Fault(crash once in method) -> TimesTen, one worker; the crash is replayed.
 * watcher_delay_us > 0: the pool's watcher thread is slowed down by that much, and the
 * chain runs once more after the restart, when the watcher has surely acted. */
static void restart_case(const char *kind, const char *method, double timeout,
                         unsigned watcher_delay_us) {
  nr_error err;
  char mk[512], ps[600];
  marker(mk, sizeof mk, kind);
  snprintf(ps, sizeof ps, "%s:%s:%s", method, kind, mk);
  FILE *log = tmpfile();
  nr_pool *p = NULL;
  nr_pool_opts o = {1, timeout, 2, NULL, log, 0, 0, NULL, NULL};
  nr__pool_watcher_delay_us = watcher_delay_us;
  CHECK_OK(nr_pool_create(&o, &p, &err), &err);
  const char *cls[] = {"Scale", "Fault", "TimesTen"};
  const char *pss[] = {"", ps, ""};
  wk_chain c;
  CHECK_OK(wk_chain_init(&c, nr_pool_backend(p), nr_pool_allocator(p), 3, "nr_fx_layers", cls,
                         pss, NR_TRAIN, &err), &err);
  CHECK_OK(nr_blob_reshape4(c.b[0], 1, 1, 2, 2, &err), &err);
  for (int i = 0; i < 4; i++) c.b[0]->data[i] = (float)(i + 1);
  CHECK_OK(wk_chain_setup(&c, &err), &err);
  c.l[0]->blobs[0]->data[0] = 5; /* "trained" value the restart must keep */
  c.l[0]->blobs[0]->diff[0] = 0.5f;
  pid_t before = nr_pool_worker_pid(p, 0);
  CHECK_OK(wk_chain_forward(&c, &err), &err);
  for (int i = 0; i < 4; i++) CHECK_NEAR(c.b[3]->data[i], 500.0 * (i + 1), 1e-3);
  for (int i = 0; i < 4; i++) c.b[3]->diff[i] = 1;
  CHECK_OK(wk_chain_backward(&c, &err), &err);
  for (int i = 0; i < 4; i++) CHECK_NEAR(c.b[0]->diff[i], 500.0, 1e-3);
  CHECK_NEAR(c.l[0]->blobs[0]->diff[0], 0.5 + 100.0 * (1 + 2 + 3 + 4), 1e-3);
  CHECK_INT_EQ(nr_pool_restarts(p), 1);
  CHECK(nr_pool_worker_pid(p, 0) != before);
  if (watcher_delay_us) {
    /* the watcher now acts on the death it saw before the restart: the new worker lives */
    usleep(watcher_delay_us + 200000);
    pid_t restarted = nr_pool_worker_pid(p, 0);
    CHECK_OK(wk_chain_forward(&c, &err), &err);
    for (int i = 0; i < 4; i++) CHECK_NEAR(c.b[3]->data[i], 500.0 * (i + 1), 1e-3);
    CHECK_INT_EQ(nr_pool_restarts(p), 1);
    CHECK_INT_EQ(nr_pool_worker_pid(p, 0), restarted);
  }
  char *text = read_all(log);
  CHECK_CONTAINS(text, "restarting Python worker 0 (restart 1 of 2) and replaying the call");
  char where[128];
  snprintf(where, sizeof where, "nr_fx_layers.Fault.%s (layer 'py1'", method);
  CHECK_CONTAINS(text, where);
  free(text);
  wk_chain_free(&c);
  nr_pool_destroy(p);
  nr__pool_watcher_delay_us = 0;
  fclose(log);
  CHECK_INT_EQ(wk_children(), 0);
}

static void test_restart_crash_forward(void) { restart_case("segv", "forward", 0, 0); }
static void test_restart_exit_backward(void) { restart_case("exit", "backward", 0, 0); }
static void test_restart_hang_forward(void) { restart_case("hang", "forward", 0.5, 0); }
/* The core kills a hung worker, reaps it and starts the next one while the watcher thread
 * is still on its way to report the first death: the report must not hit the new worker
 * (it once did, and the restarted run failed with the new worker "killed by SIGKILL"). */
static void test_restart_hang_slow_watcher(void) { restart_case("hang", "forward", 0.5, 300000); }

/* A layer that always crashes uses up the restarts and then fails with the death. */
static void test_restarts_exhausted(void) {
  nr_error err;
  nr_pool *p = NULL;
  nr_pool_opts o = {1, 0, 2, NULL, NULL, 0, 0, NULL, NULL};
  CHECK_OK(nr_pool_create(&o, &p, &err), &err);
  const char *cls[] = {"Fault"};
  const char *ps[] = {"forward:exit"};
  wk_chain c;
  CHECK_OK(wk_chain_init(&c, nr_pool_backend(p), nr_pool_allocator(p), 1, "nr_fx_layers", cls,
                         ps, NR_TEST, &err), &err);
  CHECK_OK(nr_blob_reshape4(c.b[0], 1, 1, 2, 2, &err), &err);
  CHECK_OK(wk_chain_setup(&c, &err), &err);
  CHECK_INT_EQ(wk_chain_forward(&c, &err), NR_ERR_WORKER);
  CHECK_CONTAINS(err.msg, "nr_fx_layers.Fault.forward (layer 'py0', phase TEST");
  CHECK_CONTAINS(err.msg, "exited with status 7");
  CHECK_INT_EQ(nr_pool_restarts(p), 2);
  wk_chain_free(&c);
  nr_pool_destroy(p);
  CHECK_INT_EQ(wk_children(), 0);
}

/* The pool's zygote (ipc/pool_zygote.c), if this build uses one: our child named
 * netrun-zygote, or 0. */
static pid_t zygote_pid(void) {
  pid_t z = 0;
  wk_children_named("netrun-zygote", &z);
  return z;
}

static pid_t parent_of(pid_t pid) {
  char name[64];
  int ppid = -1;
  return wk_stat(pid, name, sizeof name, &ppid) == 0 ? ppid : -1;
}

/* Was pid cloned from a zygote (its command line is the zygote's)? */
static bool cloned(pid_t pid) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return false;
  size_t k = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  for (size_t i = 0; i < k; i++)
    if (!buf[i]) buf[i] = ' ';
  buf[k] = '\0';
  return strstr(buf, " --zygote ") != NULL;
}

/* Workers cloned from the zygote: children of the core (the core reaps them and reads how
 * they died), unseeded NumPy draws differ between workers, a restarted worker works in the
 * core's current directory of the moment, and a killed zygote is replaced. A pool of a
 * fixed size (nworkers 2) clones every worker, the first included. With NETRUN_ZYGOTE=0
 * (and in sanitizer builds) workers start directly: the same checks hold. */
static void zygote_case(bool off) {
  nr_error err;
  char mk[512], ps[600];
  marker(mk, sizeof mk, off ? "zoff" : "zon");
  snprintf(ps, sizeof ps, "forward:exit:%s", mk);
  if (off) setenv("NETRUN_ZYGOTE", "0", 1);
  char cwd0[4096], dir[] = "/tmp/nr_zygote_cwd.XXXXXX";
  CHECK(getcwd(cwd0, sizeof cwd0) != NULL);
  CHECK(mkdtemp(dir) != NULL);
  FILE *log = tmpfile();
  nr_pool *p = NULL;
  nr_pool_opts o = {2, 0, 3, NULL, log, 0, 0, NULL, NULL};
  CHECK_OK(nr_pool_create(&o, &p, &err), &err);
  const char *cls[] = {"Rand", "Rand", "Fault"};
  const char *pss[] = {"", "", ps};
  wk_chain c;
  CHECK_OK(wk_chain_init(&c, nr_pool_backend(p), nr_pool_allocator(p), 3, "nr_fx_layers", cls,
                         pss, NR_TEST, &err), &err);
  CHECK_OK(nr_blob_reshape4(c.b[0], 1, 1, 4, 4, &err), &err);
  CHECK_OK(wk_chain_setup(&c, &err), &err);
  CHECK_INT_EQ(nr_pool_nworkers(p), 2);
  pid_t z = zygote_pid();
#if defined(__SANITIZE_ADDRESS__)
  CHECK_INT_EQ(z, 0);
#else
  if (off) CHECK_INT_EQ(z, 0);
  else CHECK(z > 0);
#endif
  /* a pool of a fixed size: both cloned (when there is a zygote) */
  for (int i = 0; i < 2; i++) {
    CHECK_INT_EQ(parent_of(nr_pool_worker_pid(p, i)), getpid());
    CHECK_INT_EQ(cloned(nr_pool_worker_pid(p, i)), z > 0);
  }
  /* kill the zygote, move; the forward crashes worker 0 (layer 2 is on it): the restart
   * works (from a new zygote), in the new directory */
  if (z > 0) {
    kill(z, SIGKILL);
    usleep(100000);
  }
  CHECK(chdir(dir) == 0);
  pid_t before = nr_pool_worker_pid(p, 0);
  CHECK_OK(wk_chain_forward(&c, &err), &err);
  CHECK_INT_EQ(nr_pool_restarts(p), 1);
  pid_t now = nr_pool_worker_pid(p, 0);
  CHECK(now != before);
  CHECK_INT_EQ(parent_of(now), getpid());
  CHECK_INT_EQ(cloned(now), z > 0);
  /* layer 0 ran on worker 0, layer 1 on worker 1: unseeded draws differ */
  CHECK(memcmp(c.b[1]->data, c.b[2]->data, 16 * sizeof(float)) != 0);
  char link[64], wd[4096];
  snprintf(link, sizeof link, "/proc/%d/cwd", (int)now);
  ssize_t n = readlink(link, wd, sizeof wd - 1);
  CHECK(n > 0);
  wd[n > 0 ? n : 0] = '\0';
  CHECK_STR_EQ(wd, dir);
  CHECK(chdir(cwd0) == 0);
  char *text = read_all(log);
  CHECK_CONTAINS(text, "restarting Python worker 0 (restart 1 of 3) and replaying the call");
  CHECK_CONTAINS(text, "exited with status 7");
  free(text);
  wk_chain_free(&c);
  nr_pool_destroy(p);
  fclose(log);
  rmdir(dir);
  unsetenv("NETRUN_ZYGOTE");
  CHECK_INT_EQ(wk_children(), 0);
}

static void test_zygote(void) { zygote_case(false); }
static void test_zygote_off(void) { zygote_case(true); }
/* A pool sized by its layers (nworkers -1) runs a net's Python layers, which the net
 * calls one after the other, on one worker (ipc/pool_call.c, nr__pl_new), started
 * directly (no zygote for one worker); they compute there what they compute apart, and a
 * crash in one restarts that worker with every layer on it. */
static void test_layers_share_worker(void) {
  nr_error err;
  nr_pool *p = NULL;
  nr_pool_opts o = {-1, 0, 1, NULL, NULL, 0, 0, NULL, NULL};
  CHECK_OK(nr_pool_create(&o, &p, &err), &err);
  const char *cls[] = {"TimesTen", "TimesTen", "TimesTen"};
  const char *pss[] = {"", "", ""};
  wk_chain c;
  CHECK_OK(wk_chain_init(&c, nr_pool_backend(p), nr_pool_allocator(p), 3, "nr_fx_layers", cls,
                         pss, NR_TEST, &err), &err);
  CHECK_OK(nr_blob_reshape4(c.b[0], 1, 1, 2, 2, &err), &err);
  for (int i = 0; i < 4; i++) c.b[0]->data[i] = (float)(i + 1);
  CHECK_OK(wk_chain_setup(&c, &err), &err);
  CHECK_OK(wk_chain_forward(&c, &err), &err);
  for (int i = 0; i < 4; i++) CHECK_NEAR(c.b[3]->data[i], 1000.0 * (i + 1), 1e-3);
  CHECK_INT_EQ(nr_pool_nworkers(p), 1);
  const pid_t first = nr_pool_worker_pid(p, 0);
  CHECK(!cloned(first));
  /* the shared worker dies between calls: the next forward restarts it, sets the three
   * layers up again there and computes the same */
  kill(first, SIGKILL);
  usleep(100000);
  for (int i = 0; i < 4; i++) c.b[3]->data[i] = 0;
  CHECK_OK(wk_chain_forward(&c, &err), &err);
  for (int i = 0; i < 4; i++) CHECK_NEAR(c.b[3]->data[i], 1000.0 * (i + 1), 1e-3);
  CHECK_INT_EQ(nr_pool_restarts(p), 1);
  CHECK(nr_pool_worker_pid(p, 0) != first);
  CHECK_INT_EQ(nr_pool_nworkers(p), 1);
  wk_chain_free(&c);
  nr_pool_destroy(p);
  CHECK_INT_EQ(wk_children(), 0);
}

/* The zygote imports the first Python layer's module before it clones (ipc/pool_zygote.c,
 * "Preload"): with 3 workers the module's import runs once, in the zygote, not once per
 * worker; with NETRUN_ZYGOTE_PRELOAD=0 (and in sanitizer builds, which start workers
 * directly) once per worker. A module that starts a thread at import cannot be cloned:
 * the workers start directly and work. The layers compute the same either way. */
static void preload_case(const char *preload_env, bool thread) {
  nr_error err;
  char logpath[512];
  marker(logpath, sizeof logpath, "imports");
  setenv("NR_FX_IMPORT_LOG", logpath, 1);
  if (thread) setenv("NR_FX_IMPORT_THREAD", "1", 1);
  if (preload_env) setenv("NETRUN_ZYGOTE_PRELOAD", preload_env, 1);
  nr_pool *p = NULL;
  nr_pool_opts o = {3, 0, 0, NULL, NULL, 0, 0, NULL, NULL};
  CHECK_OK(nr_pool_create(&o, &p, &err), &err);
  const char *cls[] = {"TimesTen", "TimesTen", "TimesTen"};
  const char *pss[] = {"", "", ""};
  wk_chain c;
  CHECK_OK(wk_chain_init(&c, nr_pool_backend(p), nr_pool_allocator(p), 3, "nr_fx_importlog",
                         cls, pss, NR_TEST, &err), &err);
  CHECK_OK(nr_blob_reshape4(c.b[0], 1, 1, 2, 2, &err), &err);
  for (int i = 0; i < 4; i++) c.b[0]->data[i] = (float)(i + 1);
  CHECK_OK(wk_chain_setup(&c, &err), &err);
  CHECK_OK(wk_chain_forward(&c, &err), &err);
  for (int i = 0; i < 4; i++) CHECK_NEAR(c.b[3]->data[i], 1000.0 * (i + 1), 1e-3);
  CHECK_INT_EQ(nr_pool_nworkers(p), 3);
  const pid_t z = zygote_pid();
  int lines = 0;
  long first = 0;
  FILE *f = fopen(logpath, "r");
  CHECK(f != NULL);
  for (long pid; f && fscanf(f, "%ld", &pid) == 1; lines++)
    if (lines == 0) first = pid;
  if (f) fclose(f);
  bool cloned_any = false;
  for (int i = 0; i < 3; i++) cloned_any |= cloned(nr_pool_worker_pid(p, i));
  if (thread) { /* the zygote refused (after its import): every worker started on its own */
    CHECK(!cloned_any);
    CHECK_INT_EQ(z, 0);
#if defined(__SANITIZE_ADDRESS__)
    CHECK_INT_EQ(lines, 3);
#else
    CHECK_INT_EQ(lines, 4);
#endif
  } else if (z > 0 && !preload_env) { /* once, in the zygote */
    CHECK(cloned_any);
    CHECK_INT_EQ(lines, 1);
    CHECK_INT_EQ(first, z);
  } else { /* once per worker */
    CHECK_INT_EQ(lines, 3);
  }
  wk_chain_free(&c);
  nr_pool_destroy(p);
  unlink(logpath);
  unsetenv("NR_FX_IMPORT_LOG");
  unsetenv("NR_FX_IMPORT_THREAD");
  unsetenv("NETRUN_ZYGOTE_PRELOAD");
  CHECK_INT_EQ(wk_children(), 0);
}

/* A module that fails to import in the zygote's preload fails in the worker as it would
 * without a zygote: the same error, naming the module's file. */
static void preload_error_case(const char *module, const char *want1, const char *want2) {
  nr_error err;
  nr_pool *p = NULL;
  nr_pool_opts o = {2, 0, 0, NULL, NULL, 0, 0, NULL, NULL};
  CHECK_OK(nr_pool_create(&o, &p, &err), &err);
  const char *cls[] = {"L"};
  const char *pss[] = {""};
  wk_chain c;
  CHECK_OK(wk_chain_init(&c, nr_pool_backend(p), nr_pool_allocator(p), 1, module, cls, pss,
                         NR_TEST, &err), &err);
  CHECK_OK(nr_blob_reshape4(c.b[0], 1, 1, 2, 2, &err), &err);
  CHECK_INT_EQ(wk_chain_setup(&c, &err), NR_ERR_PYTHON);
  CHECK_CONTAINS(err.msg, want1);
  CHECK_CONTAINS(err.msg, want2);
  wk_chain_free(&c);
  nr_pool_destroy(p);
  CHECK_INT_EQ(wk_children(), 0);
}

static void test_zygote_preload_import_error(void) {
  preload_error_case("nr_fx_importerr", "ModuleNotFoundError", "nr_fx_importerr.py");
  preload_error_case("nr_fx_syntax", "raised SyntaxError", "nr_fx_syntax.py");
}

static void test_zygote_preload(void) { preload_case(NULL, false); }
static void test_zygote_preload_off(void) { preload_case("0", false); }
static void test_zygote_preload_thread(void) { preload_case(NULL, true); }

/* kill -9 of the core: its workers are gone within 1 s, nothing left in /dev/shm. */
static void test_core_sigkill(void) {
  int shm0 = wk_shm_entries();
  int fd[2];
  CHECK(pipe(fd) == 0);
  pid_t child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    close(fd[0]);
    nr_error err;
    nr_pool *p = NULL;
    nr_pool_opts o = {2, 0, 0, NULL, NULL, 0, 0, NULL, NULL};
    if (nr_pool_create(&o, &p, &err) != NR_OK) _exit(1);
    const char *cls[] = {"TimesTen", "TimesTen"};
    wk_chain c;
    if (wk_chain_init(&c, nr_pool_backend(p), nr_pool_allocator(p), 2, "nr_fx_layers", cls,
                      NULL, NR_TRAIN, &err) != NR_OK ||
        nr_blob_reshape4(c.b[0], 8, 1, 28, 28, &err) != NR_OK ||
        wk_chain_setup(&c, &err) != NR_OK) {
      fprintf(stderr, "child: %s\n", err.msg);
      _exit(1);
    }
    pid_t pids[2] = {nr_pool_worker_pid(p, 0), nr_pool_worker_pid(p, 1)};
    if (write(fd[1], pids, sizeof pids) != sizeof pids) _exit(1);
    for (;;) /* "training" */
      if (wk_chain_forward(&c, &err) != NR_OK) _exit(1);
  }
  close(fd[1]);
  pid_t pids[2] = {0, 0};
  CHECK_INT_EQ(read(fd[0], pids, sizeof pids), (long)sizeof pids);
  close(fd[0]);
  CHECK(pids[0] > 0 && pids[1] > 0);
  usleep(100000);
  CHECK(wk_pid_alive(pids[0]) && wk_pid_alive(pids[1]));
  kill(child, SIGKILL);
  int64_t t0 = nr_wire_now_ns();
  waitpid(child, NULL, 0);
  while ((wk_pid_alive(pids[0]) || wk_pid_alive(pids[1])) && nr_wire_now_ns() - t0 < 1000000000)
    usleep(5000);
  CHECK(!wk_pid_alive(pids[0]));
  CHECK(!wk_pid_alive(pids[1]));
  fprintf(stderr, "  workers gone %.1f ms after SIGKILL of the core\n",
          (double)(nr_wire_now_ns() - t0) / 1e6);
  CHECK_INT_EQ(wk_shm_entries(), shm0);
}

/* print() from two workers at once: every line arrives whole. */
static void test_print_whole_lines(void) {
  int fd[2];
  CHECK(pipe(fd) == 0);
  pid_t child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    close(fd[0]);
    dup2(fd[1], 1);
    close(fd[1]);
    nr_error err;
    nr_pool *p = NULL;
    nr_pool_opts o = {2, 0, 0, NULL, NULL, 0, 0, NULL, NULL};
    const char *cls[] = {"Printer", "Printer"};
    const char *ps[] = {"alpha-alpha-alpha-alpha-alpha-alpha-alpha-alpha-alpha-alpha",
                        "beta-beta-beta-beta-beta-beta-beta-beta-beta-beta-beta-beta"};
    wk_chain c[2];
    if (nr_pool_create(&o, &p, &err) != NR_OK) _exit(1);
    /* two independent one-layer chains, one per worker, driven alternately */
    for (int k = 0; k < 2; k++)
      if (wk_chain_init(&c[k], nr_pool_backend(p), nr_pool_allocator(p), 1, "nr_fx_layers",
                        &cls[k], &ps[k], NR_TRAIN, &err) != NR_OK ||
          nr_blob_reshape4(c[k].b[0], 1, 1, 1, 1, &err) != NR_OK ||
          wk_chain_setup(&c[k], &err) != NR_OK)
        _exit(1);
    for (int i = 0; i < 100; i++)
      for (int k = 0; k < 2; k++)
        if (wk_chain_forward(&c[k], &err) != NR_OK) _exit(1);
    for (int k = 0; k < 2; k++) wk_chain_free(&c[k]);
    nr_pool_destroy(p);
    _exit(0);
  }
  close(fd[1]);
  FILE *f = fdopen(fd[0], "r");
  char line[1024];
  int n = 0, bad = 0;
  while (fgets(line, sizeof line, f)) {
    n++;
    int k;
    char who[200];
    if (!(sscanf(line, "printer line %d of layer %199s", &k, who) == 2 ||
          sscanf(line, "printer setup %199s", who) == 1) ||
        (strncmp(who, "alpha-", 6) != 0 && strncmp(who, "beta-", 5) != 0) ||
        strlen(who) < 59) {
      if (bad++ < 3) fprintf(stderr, "  mangled line: %s", line);
    }
  }
  fclose(f);
  int st = 0;
  waitpid(child, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK_INT_EQ(n, 2 + 2 * 100 * 3);
  CHECK_INT_EQ(bad, 0);
}

/* Every shared-memory file of a pool (blob segments, control block, faulthandler file) is a
 * memfd: no name in any file system ("/memfd:netrun-... (deleted)") and mode 0600. */
static void test_segments_private(void) {
  nr_error err;
  nr_pool *p = NULL;
  nr_pool_opts o = {1, 0, 0, NULL, NULL, 0, 0, NULL, NULL};
  CHECK_OK(nr_pool_create(&o, &p, &err), &err);
  const char *cls[] = {"Scale", "TimesTen"};
  const char *pss[] = {"", ""};
  wk_chain c;
  CHECK_OK(wk_chain_init(&c, nr_pool_backend(p), nr_pool_allocator(p), 2, "nr_fx_layers", cls,
                         pss, NR_TRAIN, &err), &err);
  CHECK_OK(nr_blob_reshape4(c.b[0], 1, 1, 2, 2, &err), &err);
  CHECK_OK(wk_chain_setup(&c, &err), &err);
  CHECK_OK(wk_chain_forward(&c, &err), &err);
  int blob = 0, ctl = 0, fault = 0;
  DIR *d = opendir("/proc/self/fd");
  CHECK(d != NULL);
  for (struct dirent *e; d && (e = readdir(d));) {
    char path[300], target[300];
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    if (strncmp(target, "/memfd:netrun-", 14) != 0) continue;
    blob += strstr(target, "netrun-blob") != NULL;
    ctl += strstr(target, "netrun-ctl") != NULL;
    fault += strstr(target, "netrun-fault") != NULL;
    CHECK_CONTAINS(target, "(deleted)");
    struct stat st;
    CHECK(stat(path, &st) == 0);
    if ((st.st_mode & 07777) != 0600)
      fprintf(stderr, "FAIL: %s has mode %o\n", target, (unsigned)(st.st_mode & 07777));
    CHECK_INT_EQ(st.st_mode & 07777, 0600);
  }
  if (d) closedir(d);
  CHECK(blob >= 4); /* the chain's three blobs and Scale's parameter at least */
  CHECK_INT_EQ(ctl, 0); /* the control block is mapped, its descriptor closed */
  CHECK_INT_EQ(fault, 1);
  wk_chain_free(&c);
  nr_pool_destroy(p);
  CHECK_INT_EQ(wk_children(), 0);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/nr-wk-%d", (int)getpid());
  mkdir(tmpdir, 0700);
  NR_RUN(test_restart_crash_forward);
  NR_RUN(test_restart_exit_backward);
  NR_RUN(test_restart_hang_forward);
  NR_RUN(test_restart_hang_slow_watcher);
  NR_RUN(test_restarts_exhausted);
  NR_RUN(test_zygote);
  NR_RUN(test_zygote_off);
  NR_RUN(test_layers_share_worker);
  NR_RUN(test_zygote_preload);
  NR_RUN(test_zygote_preload_off);
  NR_RUN(test_zygote_preload_thread);
  NR_RUN(test_zygote_preload_import_error);
  NR_RUN(test_core_sigkill);
  NR_RUN(test_print_whole_lines);
  NR_RUN(test_segments_private);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
  return NR_TEST_EXIT();
}
