/* pool_zygote.c: starting workers from a zygote. A fresh worker process spends most of its
 * start importing Python, NumPy and the caffe package (0.1-0.3 s of CPU each); the zygote is
 * a netrun-worker that does that once (worker/main.c, `--zygote`) and then clones itself
 * into each worker the pool asks for, restarts included. The clone is a child of this
 * process (CLONE_PARENT), so everything else about a worker is unchanged: its pidfd, the
 * watcher, the reap, its exit status and the kill of its process group.
 *
 * When the pool's size is fixed above one (`--py-workers N`, N > 1: all its workers start
 * together), every worker is cloned, the first included: the zygote is the only process
 * that imports Python, NumPy and caffe. Otherwise (one worker, or a pool sized by its
 * layers, where a second worker may never come) the first worker is started
 * directly (a one-worker pool pays nothing for the zygote) and the second request starts
 * the zygote. Measured (docs/bench.md, "Workers ready"): starting the first worker directly
 * beside the zygote ran two ~0.2 s imports side by side; on 2 cores that is free only when
 * nothing else runs, and it made 8 workers cost ~150 ms more CPU in all.
 *
 * Protocol, on a SOCK_SEQPACKET pair (the zygote's end is its descriptor 3): the zygote
 * sends 'R' once Python is up ('E': it could not start; 'T': it is not single-threaded and
 * cannot clone), then for each request (4 bytes, the three descriptors of a worker as
 * SCM_RIGHTS) answers an int32: the new worker's pid, or -errno. Closing the socket ends it.
 *
 * The zygote runs NumPy's BLAS on one thread (OPENBLAS_NUM_THREADS=1, unless the user set
 * it): a clone copies only the calling thread, so the zygote must have no other. Workers
 * inherit it; netrun's own GEMMs use the cores. A user who sets OPENBLAS_NUM_THREADS above
 * 1 gets directly started workers, as do sanitizer builds (ASan's bookkeeping does not
 * survive a raw clone) and NETRUN_ZYGOTE=0. Any failure of the zygote falls back to a
 * direct start: one that never got ready is not tried again; one that died after it was
 * ready is replaced, at most NR_ZYGOTE_MAX_STARTS times per pool.
 *
 * A clone takes the core's current directory (the zygote's may be older: a pycaffe user
 * may chdir between nets) and puts it on sys.path where a started worker has it. The
 * environment is the zygote's, from when it started.
 *
 * Preload. The zygote also imports the module of the pool's first Python layer (argv: the
 * module and the prototxt's directory) before it clones, as multiprocessing's forkserver
 * imports its preload list: each clone would otherwise import it on its own, writing to
 * its copy of the import machinery's objects page by page (8 workers: 434 -> 362 ms,
 * docs/bench.md). The module's import then runs once per pool, not once per worker, as in
 * Caffe, where one import serves every layer. A module that fails to import there is
 * imported (and its error reported) by the worker as before; one that starts a thread
 * makes the zygote refuse to clone (direct starts). NETRUN_ZYGOTE_PRELOAD=0 turns it off.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool_int.h"

#define NR_ZYGOTE_MAX_STARTS 8
#define NR_ZYGOTE_READY_MS 60000 /* Python + NumPy import on a loaded machine */
#define NR_ZYGOTE_CLONE_MS 10000

#if defined(__SANITIZE_ADDRESS__)
#define NR_ZYGOTE_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NR_ZYGOTE_SANITIZED 1
#endif
#endif

/* Waits up to ms for the socket to be readable; then reads up to len bytes. The byte count,
 * or -1 (timeout, EOF, error). */
static ssize_t recv_within(int sock, void *buf, size_t len, int ms) {
  struct pollfd pf = {sock, POLLIN, 0};
  int r;
  do r = poll(&pf, 1, ms);
  while (r < 0 && errno == EINTR);
  if (r <= 0) return -1;
  ssize_t n;
  do n = recv(sock, buf, len, 0);
  while (n < 0 && errno == EINTR);
  return n > 0 ? n : -1;
}

/* The zygote is gone or useless: close it, kill and reap it. */
static void zygote_end(nr_pool *p) {
  if (p->zy_sock >= 0) close(p->zy_sock);
  p->zy_sock = -1;
  if (p->zy_pid > 0) {
    kill(p->zy_pid, SIGKILL); /* our unreaped child: the pid is still its own */
    while (waitpid(p->zy_pid, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  p->zy_pid = 0;
}

static bool zygote_wanted(void) {
#ifdef NR_ZYGOTE_SANITIZED
  return false;
#else
  const char *z = getenv("NETRUN_ZYGOTE");
  if (z && !strcmp(z, "0")) return false;
  const char *t = getenv("OPENBLAS_NUM_THREADS");
  return !t || !strcmp(t, "1");
#endif
}

/* Starts the zygote and waits for its 'R'. 0 or -1 (and the pool stops trying when the
 * zygote said it cannot work here). */
static int zygote_start(nr_pool *p) {
  if (p->zy_starts >= NR_ZYGOTE_MAX_STARTS || !zygote_wanted()) {
    p->zy_state = -1;
    return -1;
  }
  p->zy_starts++;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return -1;
  char ppid[32];
  snprintf(ppid, sizeof ppid, "%d", (int)getpid());
  const char *pre = getenv("NETRUN_ZYGOTE_PRELOAD");
  const bool preload = p->zy_module && !(pre && !strcmp(pre, "0"));
  char *argv[] = {p->worker_path, (char *)"--zygote", ppid,
                  p->layer_types ? p->layer_types : (char *)"",
                  preload ? p->zy_module : NULL, preload ? p->zy_dir : NULL, NULL};
  pid_t pid = 0;
  int e = nr__spawn_process(p, argv, &sv[1], 1, true, &pid);
  close(sv[1]);
  if (e) {
    close(sv[0]);
    p->zy_state = -1;
    return -1;
  }
  p->zy_sock = sv[0];
  p->zy_pid = pid;
  char c = 0;
  if (recv_within(p->zy_sock, &c, 1, NR_ZYGOTE_READY_MS) != 1 || c != 'R') {
    /* 'E', 'T', or it never got ready: it cannot work here, do not retry */
    zygote_end(p);
    p->zy_state = -1;
    return -1;
  }
  p->zy_state = 1;
  return 0;
}

/* One request to a ready zygote: 1 with *pid set; 0: it could not clone (start directly);
 * -1: it died or hung (replace it). */
static int zygote_ask(nr_pool *p, const int fds[3], pid_t *pid) {
  char data[4] = {0};
  char cbuf[CMSG_SPACE(3 * sizeof(int))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov = {data, sizeof data};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                     .msg_controllen = sizeof cbuf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(3 * sizeof(int));
  memcpy(CMSG_DATA(c), fds, 3 * sizeof(int));
  int32_t got = 0;
  ssize_t n;
  do n = sendmsg(p->zy_sock, &m, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)sizeof data ||
      recv_within(p->zy_sock, &got, sizeof got, NR_ZYGOTE_CLONE_MS) != (ssize_t)sizeof got)
    return -1;
  if (got <= 0) {
    /* it could not clone (no more processes, or it is no longer alone): start directly,
     * and for good when it is no longer single-threaded */
    if (got == -EAGAIN) {
      zygote_end(p);
      p->zy_state = -1;
    }
    return 0;
  }
  *pid = (pid_t)got;
  return 1;
}

int nr__zygote_clone(nr_pool *p, const int fds[3], pid_t *pid) {
  pthread_mutex_lock(&p->zy_mu);
  int got = 0;
  /* A pool that may stay at one worker (one worker, or sized by its layers) starts its first
   * directly: it is not slower for the zygote, and a second worker's zygote then starts
   * beside it. A pool of a fixed size above one clones them all: one interpreter imports
   * NumPy and caffe instead of two (see the comment at the top). */
  if (p->zy_requests++ == 0 && p->o.nworkers <= 1) {
    pthread_mutex_unlock(&p->zy_mu);
    return -1;
  }
  /* a zygote that died (or hung) is replaced at once, at most NR_ZYGOTE_MAX_STARTS in all */
  for (int tries = 0; tries < 2 && got == 0; tries++) {
    if (p->zy_state == 0) zygote_start(p);
    if (p->zy_state != 1) break;
    got = zygote_ask(p, fds, pid);
    if (got < 0) {
      zygote_end(p);
      p->zy_state = 0;
      got = 0;
    } else if (got == 0) {
      break;
    }
  }
  pthread_mutex_unlock(&p->zy_mu);
  return got == 1 ? 0 : -1;
}

void nr__zygote_stop(nr_pool *p) {
  pthread_mutex_lock(&p->zy_mu);
  zygote_end(p);
  p->zy_state = -1;
  free(p->zy_module);
  free(p->zy_dir);
  p->zy_module = p->zy_dir = NULL;
  pthread_mutex_unlock(&p->zy_mu);
}

void nr__zygote_note_layer(nr_pool *p, const nr_layer *l) {
  const Caffe__PythonParameter *pp = l->param ? l->param->python_param : NULL;
  if (!pp || !pp->module || !pp->module[0]) return;
  pthread_mutex_lock(&p->zy_mu);
  if (!p->zy_module) {
    const char *dir = l->ctx && l->ctx->source_dir ? l->ctx->source_dir : "";
    p->zy_module = strdup(pp->module);
    p->zy_dir = strdup(dir);
    if (!p->zy_module || !p->zy_dir) { /* out of memory: no preload, nothing else lost */
      free(p->zy_module);
      free(p->zy_dir);
      p->zy_module = p->zy_dir = NULL;
    }
  }
  pthread_mutex_unlock(&p->zy_mu);
}
