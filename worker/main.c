/* netrun-worker: one process of the Python-layer pool (see ipc/wire.h, docs/workers.md).
 *
 * Started by the core (ipc/pool_spawn.c, or cloned by ipc/pool_zygote.c) with fd 3 = its
 * Unix socket (descriptors only), fd 4 = the control block memfd, fd 5 = a memfd
 * faulthandler writes the last Python stack to, argv[1] = the core's pid. It embeds
 * CPython, says hello, then serves requests until NR_OP_EXIT, socket EOF, or the core's
 * death (PR_SET_PDEATHSIG(SIGKILL)). SIGINT is ignored: Ctrl-C belongs to the core, which
 * decides. Requests are answered by worker/server.c.
 *
 * Zygote (argv[1] = "--zygote", then the core's pid and the layer types; fd 3 = a socket to
 * the core): a process that starts Python, NumPy and the caffe package once and then makes
 * each worker the core asks for by cloning itself, so a worker is ready in milliseconds
 * instead of a fresh interpreter's start (ipc/pool_zygote.c is the core's side; the
 * protocol is there). The clone is a child of the core (CLONE_PARENT): the core reaps it,
 * reads its exit status and kills its process group exactly as for a worker it spawned.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "descendants.h"
#include "server.h"

static nr_server S;
static char pkg_dir[4096];

static void flush_python(void) {
  PyObject *r = PyRun_String(
      "import sys\nfor f in (sys.stdout, sys.stderr):\n try: f.flush()\n except Exception: pass\n",
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
static const char fault_src[] =
    "import faulthandler, signal\n"
    "faulthandler.enable(file=5, all_threads=True)\n"
    "faulthandler.register(signal.SIGUSR1, file=5, all_threads=True, chain=False)\n";

/* Code the zygote compiled once for its clones (NULL in a started worker): compiling is
 * what costs in a clone, where every page the compiler writes is first copied. */
static PyObject *fault_code, *clone_code;

/* Runs code (compiled, when given) or src in fresh globals, with ppid bound to parent. 0 or
 * -1 (a Python error set). */
static int run_python(PyObject *code, const char *src, pid_t parent) {
  PyObject *g = PyDict_New(), *pp = PyLong_FromLong((long)parent); /* new */
  PyObject *r = NULL;                                              /* new */
  if (g && pp && PyDict_SetItemString(g, "ppid", pp) == 0)
    r = code ? PyEval_EvalCode(code, g, g) : PyRun_String(src, Py_file_input, g, g);
  Py_XDECREF(pp);
  Py_XDECREF(g);
  Py_XDECREF(r);
  return r ? 0 : -1;
}

static int enable_faulthandler(nr_rt_err *e) {
  if (run_python(fault_code, fault_src, 0) < 0) {
    nr_rt_err_set(e, "RuntimeError", "cannot enable faulthandler");
    PyErr_Clear();
    return -1;
  }
  return 0;
}

/* A worker's life from its descriptors on (fd 3..5 in place), Python already running when
 * `python` is set (a zygote's clone), else started here. Never returns. */
static void serve(pid_t parent, const char *types, bool python) {
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

  nr_rt_host host = nr_server_host(&S);
  nr_rt_err e = {0};
  if (!python) nr_rt_pkg_dir(pkg_dir, sizeof pkg_dir);
  if ((!python && nr_rt_init(&host, pkg_dir, types, &e) < 0) || enable_faulthandler(&e) < 0) {
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

/* ---- the zygote ---- */

/* Threads of this process: a clone copies only the calling one, so the zygote clones only
 * while it is alone (NumPy's BLAS threads would be missing in the clone). */
static int thread_count(void) {
  DIR *d = opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* Moves fd to a number >= 10 (close-on-exec), so dup2 onto 3..5 cannot clobber it. */
static int fd_high(int fd) {
  int n = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return n;
}

/* One request: the three descriptors of a worker (socket, control block, fault file) with
 * 4 bytes of payload. 1: got them; 0: the core closed the socket; -1: a bad request. */
static int recv_request(int sock, int fds[3]) {
  char data[4];
  char cbuf[CMSG_SPACE(3 * sizeof(int))];
  struct iovec iov = {data, sizeof data};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                     .msg_controllen = sizeof cbuf};
  ssize_t n;
  do n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n == 0) return 0;
  if (n < 0) return -1;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return -1;
  size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
  int got[3];
  memcpy(got, CMSG_DATA(c), (k < 3 ? k : 3) * sizeof(int));
  if (k != 3) {
    for (size_t i = 0; i < k && i < 3; i++) close(got[i]);
    return -1;
  }
  for (int i = 0; i < 3; i++) fds[i] = fd_high(got[i]);
  return 1;
}

static void reply_pid(int sock, int32_t v) {
  ssize_t r = send(sock, &v, sizeof v, MSG_NOSIGNAL);
  (void)r;
}

/* In the clone: the descriptors to 3..5; the core's current directory (the zygote's may be
 * older), also in place of the zygote's on sys.path; a fresh seed for NumPy's global
 * generator (a started worker draws one from the system; a clone would repeat the
 * zygote's); then a worker's life. */
static void become_worker(pid_t parent, const char *types, int zsock, const int fds[3]) {
  PyOS_AfterFork_Child();
  prctl(PR_SET_NAME, "netrun-worker"); /* the zygote calls itself netrun-zygote */
  close(zsock);
  for (int i = 0; i < 3; i++) {
    if (dup2(fds[i], NR_FD_SOCK + i) < 0) _exit(1);
    close(fds[i]);
  }
  if (run_python(clone_code, NULL, parent) < 0) PyErr_Clear();
  serve(parent, types, true);
}

/* What a clone runs before it serves: the core's current directory (the zygote's may be
 * older), also in place of the zygote's on sys.path; a fresh seed for NumPy's global
 * generator (a started worker draws one from the system; a clone would repeat the
 * zygote's). */
static const char clone_src[] =
    "import os, sys\n"
    "try:\n"
    "    o = os.getcwd()\n"
    "    os.chdir('/proc/%d/cwd' % ppid)\n"
    "    n = os.getcwd()\n"
    "    if n != o and o in sys.path: sys.path[sys.path.index(o)] = n\n"
    "    if n != o: sys.modules['caffe._runtime'].forget_preload()\n"
    "except OSError:\n"
    "    pass\n"
    "if 'numpy' in sys.modules: sys.modules['numpy'].random.seed()\n";


/* Before the clones: what each would import or compile is done here once (faulthandler,
 * the code above, the first Python layer's module when the core names it:
 * caffe._runtime.preload, see ipc/pool_zygote.c), and the objects the import made are
 * moved out of the collector's reach (gc.freeze: a collection in a clone would write to
 * every one of them, copying their pages). 0 or -1. */
static int prepare_clones(const char *module, const char *dir) {
  if (module && module[0]) {
    PyObject *rt = PyImport_ImportModule("caffe._runtime"); /* new */
    PyObject *r = rt ? PyObject_CallMethod(rt, "preload", "ss", module, dir ? dir : "") : NULL;
    if (!r) PyErr_Clear(); /* (preload swallows the module's own errors) */
    Py_XDECREF(r);
    Py_XDECREF(rt);
  }
  int rc = run_python(NULL, "import faulthandler, signal, gc\ngc.freeze()\n", 0);
  fault_code = rc == 0 ? Py_CompileString(fault_src, "<netrun-worker>", Py_file_input) : NULL;
  clone_code = fault_code ? Py_CompileString(clone_src, "<netrun-worker>", Py_file_input) : NULL;
  if (!clone_code) {
    PyErr_Clear();
    return -1;
  }
  return 0;
}

/* The zygote: starts Python, says 'R' (ready; 'E' and exit if Python cannot start, 'T' if
 * it is not alone: another thread, NumPy's BLAS ones with OPENBLAS_NUM_THREADS > 1), then
 * clones one worker per request and answers its pid (int32; -errno if it could not), until
 * the core closes the socket. */
static void zygote(pid_t parent, const char *types, const char *module, const char *dir) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) _exit(1);
  if (getppid() != parent) _exit(0);
  prctl(PR_SET_NAME, "netrun-zygote");
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  int zsock = fd_high(NR_FD_SOCK);
  /* hold 3..5 so no descriptor Python opens lands there (a clone dup2s over them) */
  for (int fd = NR_FD_SOCK; fd <= NR_FD_FAULT; fd++)
    if (fcntl(fd, F_GETFD) < 0) (void)open("/dev/null", O_RDONLY | O_CLOEXEC);
  nr_rt_pkg_dir(pkg_dir, sizeof pkg_dir);
  nr_rt_host host = nr_server_host(&S);
  nr_rt_err e = {0};
  char ok = nr_rt_init(&host, pkg_dir, types, &e) < 0 ? 'E' : thread_count() != 1 ? 'T' : 'R';
  if (ok == 'R' && prepare_clones(module, dir) < 0) ok = 'E';
  if (ok == 'R' && thread_count() != 1) ok = 'T'; /* (the preloaded module started one) */
  if (send(zsock, &ok, 1, MSG_NOSIGNAL) != 1 || ok != 'R') _exit(ok == 'R' ? 0 : 1);
  PyThreadState *ts = PyEval_SaveThread();
  for (;;) {
    int fds[3];
    int got = recv_request(zsock, fds);
    if (got == 0) _exit(0);
    if (got < 0) {
      reply_pid(zsock, -EPROTO);
      continue;
    }
    if (thread_count() != 1) {
      for (int i = 0; i < 3; i++) close(fds[i]);
      reply_pid(zsock, -EAGAIN);
      continue;
    }
    PyEval_RestoreThread(ts);
    PyOS_BeforeFork();
    /* A raw clone, not fork(): fork cannot make the child the core's. glibc's fork
     * handlers do not run; PyOS_AfterFork_Child does what CPython needs, and the zygote
     * is single-threaded (checked above), so no lock is held by a thread that is gone. */
    long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) become_worker(parent, types, zsock, fds);
    int saved = errno;
    PyOS_AfterFork_Parent();
    ts = PyEval_SaveThread();
    for (int i = 0; i < 3; i++) close(fds[i]);
    reply_pid(zsock, pid > 0 ? (int32_t)pid : -saved);
  }
}

int main(int argc, char **argv) {
  if (argc >= 3 && !strcmp(argv[1], "--zygote")) {
    zygote((pid_t)atol(argv[2]), argc > 3 ? argv[3] : "", argc > 4 ? argv[4] : NULL,
           argc > 5 ? argv[5] : NULL);
    return 0;
  }
  if (argc < 2) {
    fprintf(stderr, "netrun-worker: started by netrun, not by hand\n");
    return 2;
  }
  serve((pid_t)atol(argv[1]), argc > 2 ? argv[2] : "", false);
}
