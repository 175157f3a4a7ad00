/* netrun-worker: one process of the Python-layer pool (see ipc/wire.h, docs/workers.md).
 *
 * Started by the core (ipc/pool_proc.c) with fd 3 = its Unix socket (descriptors only),
 * fd 4 = the control block memfd, fd 5 = a memfd faulthandler writes the last Python stack
 * to, argv[1] = the core's pid. It embeds CPython, says hello, then serves requests until
 * NR_OP_EXIT, socket EOF, or the core's death (PR_SET_PDEATHSIG(SIGKILL)). SIGINT is
 * ignored: Ctrl-C belongs to the core, which decides. Requests are answered by
 * worker/server.c.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "descendants.h"
#include "server.h"

#ifndef NR_PYTHON_PKG_DIR
#define NR_PYTHON_PKG_DIR ""
#endif
#ifndef NR_PYTHON_PKG_DIR_INSTALL
#define NR_PYTHON_PKG_DIR_INSTALL ""
#endif

static nr_server S;
static char pkg_dir[4096];

static void flush_python(void) {
  PyObject *r = PyRun_String("import sys\nfor f in (sys.stdout, sys.stderr):\n try: f.flush()\n except Exception: pass\n",
                             Py_file_input, PyEval_GetBuiltins(), NULL);
  (void)r;
}

static void leave(int code) {
  flush_python();
  fflush(NULL);
  nr_end_descendants();
  _exit(code);
}

/* faulthandler writes the Python stack of every thread to fd 5 on a fatal signal, and on
 * SIGUSR1 (the core sends it before killing a worker that overran --py-timeout). */
static int enable_faulthandler(nr_rt_err *e) {
  PyObject *g = PyDict_New(); /* new */
  if (!g) return -1;
  PyObject *r = PyRun_String(
      "import faulthandler, signal\n"
      "faulthandler.enable(file=5, all_threads=True)\n"
      "faulthandler.register(signal.SIGUSR1, file=5, all_threads=True, chain=False)\n",
      Py_file_input, g, g); /* new */
  Py_DECREF(g);
  if (!r) {
    nr_rt_err_set(e, "RuntimeError", "cannot enable faulthandler");
    PyErr_Clear();
    return -1;
  }
  Py_DECREF(r);
  return 0;
}

static void find_pkg_dir(void) {
  /* Build tree first (a developer running from build/), then the install location,
   * then <exe>/../lib/netrun/python. */
  const char *env = getenv("NETRUN_PYTHON_DIR");
  const char *cands[3] = {env, NR_PYTHON_PKG_DIR, NR_PYTHON_PKG_DIR_INSTALL};
  for (int i = 0; i < 3; i++) {
    char p[4200];
    if (!cands[i] || !*cands[i]) continue;
    snprintf(p, sizeof p, "%s/caffe/__init__.py", cands[i]);
    if (access(p, R_OK) == 0) {
      snprintf(pkg_dir, sizeof pkg_dir, "%s", cands[i]);
      return;
    }
  }
  char exe[2048];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    snprintf(pkg_dir, sizeof pkg_dir, "%s/../lib/netrun/python", exe);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "netrun-worker: started by netrun, not by hand\n");
    return 2;
  }
  pid_t parent = (pid_t)atol(argv[1]);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) nr_server_die("prctl");
  if (getppid() != parent) _exit(0); /* the core died before prctl */
  /* Orphans of what a layer starts come back to this worker, which ends them (leave); its
   * own process group lets the core end the rest when the worker itself was killed. */
  nr_adopt_descendants();
  setpgid(0, 0);
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  fcntl(NR_FD_SOCK, F_SETFD, FD_CLOEXEC);
  fcntl(NR_FD_CTL, F_SETFD, FD_CLOEXEC);
  fcntl(NR_FD_FAULT, F_SETFD, FD_CLOEXEC);
  nr_ctl *ctl = mmap(NULL, NR_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, NR_FD_CTL, 0);
  if (ctl == MAP_FAILED) nr_server_die("mapping the control block");
  close(NR_FD_CTL);
  nr_server_init(&S, ctl, NR_FD_SOCK, parent);
  setvbuf(stdout, NULL, _IOLBF, 0);

  find_pkg_dir();
  nr_rt_host host = nr_server_host(&S);
  nr_rt_err e = {0};
  const char *types = argc > 2 ? argv[2] : "";
  if (nr_rt_init(&host, pkg_dir, types, &e) < 0 || enable_faulthandler(&e) < 0) {
    if (!e.msg) nr_rt_err_set(&e, "RuntimeError", "worker start failed");
    nr_server_reply_error(&S, &e); /* an NR_REP_ERROR answering sequence 0: the core reports it */
    leave(1);
  }
  nr_server_post(&S, NR_REP_HELLO, 0);
  for (;;) {
    nr_server_wait(&S);
    if (!nr_server_handle(&S)) leave(0);
  }
}
