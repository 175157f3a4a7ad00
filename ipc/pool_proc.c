/* pool_proc.c: the pool's worker processes — starting one (its socket, control block and
 * faulthandler file; the zygote clones it, else pool_spawn.c spawns it), signalling it
 * (through its pidfd only), reaping it, failing it for good, and the text that says how it
 * died. The watcher thread polls every worker's pidfd and wakes a core waiting on a worker
 * that died. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool_int.h"

unsigned nr__pool_watcher_delay_us;

/* Why a thread with pidfds rather than a SIGCHLD handler: a library must not own the
 * process's SIGCHLD disposition, and a pidfd becomes readable the moment the process
 * exits. The thread marks the worker dead and wakes the reply word, so a core sleeping on
 * it returns at once; the core (not the thread) reaps.
 * The core may kill, reap and replace a worker (a timeout, a bad reply) while this thread
 * is between poll and the lock; the spawn generation it polled tells that death apart from
 * the new process's, which is alive. */
void *nr__watcher_main(void *arg) {
  nr_pool *p = arg;
  for (;;) {
    struct pollfd fds[NR_POOL_MAX_WORKERS + 1];
    int who[NR_POOL_MAX_WORKERS + 1];
    uint64_t gen[NR_POOL_MAX_WORKERS + 1];
    int n = 0;
    fds[n] = (struct pollfd){p->wake[0], POLLIN, 0};
    who[n++] = -1;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->nstarted; i++) {
      worker *w = &p->w[i];
      if (!w->pid || atomic_load(&w->dead)) continue;
      fds[n] = w->pidfd >= 0 ? (struct pollfd){w->pidfd, POLLIN, 0}
                             : (struct pollfd){w->sock, POLLRDHUP, 0};
      gen[n] = w->gen;
      who[n++] = i;
    }
    pthread_mutex_unlock(&p->mu);
    int r = poll(fds, (nfds_t)n, -1);
    if (r < 0 && errno != EINTR) break;
    if (fds[0].revents) {
      char c[64];
      ssize_t k = read(p->wake[0], c, sizeof c);
      if (k == 0 || (k > 0 && memchr(c, 'q', (size_t)k))) break;
      if (k > 0 && memchr(c, 's', (size_t)k)) nr__run_spawn_job(p);
    }
    if (nr__pool_watcher_delay_us) usleep(nr__pool_watcher_delay_us);
    pthread_mutex_lock(&p->mu);
    for (int j = 1; j < n; j++) {
      if (!fds[j].revents) continue;
      worker *w = &p->w[who[j]];
      if (w->pid && w->gen == gen[j] && !atomic_load(&w->dead)) {
        atomic_store(&w->dead, 1);
        nr_wire_wake_all(&w->ctl->rep_seq); /* the waiter sees `dead` and returns */
      }
    }
    pthread_mutex_unlock(&p->mu);
  }
  return NULL;
}

static void watcher_kick(nr_pool *p) {
  char c = 'k';
  ssize_t r = write(p->wake[1], &c, 1);
  (void)r;
}

static int fd_high(int fd) { /* move fd to >= 10 so dup2 onto 3..5 cannot clobber it */
  if (fd >= 10) return fd;
  int n = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return n;
}

void nr__worker_close(nr_pool *p, worker *w) {
  pthread_mutex_lock(&p->mu);
  if (w->ctl) munmap(w->ctl, NR_CTL_SIZE);
  w->ctl = NULL;
  if (w->pidfd >= 0) close(w->pidfd);
  if (w->sock >= 0) close(w->sock);
  if (w->fault_fd >= 0) close(w->fault_fd);
  w->pidfd = w->sock = w->fault_fd = -1;
  w->pid = 0;
  pthread_mutex_unlock(&p->mu);
  watcher_kick(p);
  nr__seg_drop_worker(p, w);
}

/* Signals w's process through its pidfd, so a process that was reaped (its pid free for
 * another) is never hit; without a pidfd (old kernel) only while not reaped. */
void nr__worker_signal(const worker *w, int sig) {
  if (!w->pid) return;
  if (w->pidfd >= 0) (void)pidfd_send_signal(w->pidfd, sig, NULL, 0);
  else if (!w->reaped) kill(w->pid, sig);
}

/* Reaps a worker that died or was killed. First its process group (each worker leads its
 * own): what its layers started that did not leave the group (os.fork, subprocess) ends
 * with it; the worker cannot end them itself when it was killed. Before the reap, while the
 * pid is still held by the (dead) worker, so the group id cannot be another's. */
void nr__worker_reap(worker *w) {
  if (!w->pid || w->reaped) return;
  kill(-w->pid, SIGKILL);
  int st = 0;
  pid_t r;
  do r = waitpid(w->pid, &st, 0);
  while (r < 0 && errno == EINTR);
  w->reaped = true;
  w->wstatus = st;
}

nr_status nr__worker_spawn(nr_pool *p, worker *w, nr_error *err) {
  int sv[2] = {-1, -1}, ctlfd = -1, fault = -1;
  nr_ctl *ctl = MAP_FAILED;
  nr_status s = NR_OK;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) goto io;
  sv[1] = fd_high(sv[1]);
  ctlfd = fd_high(nr__pool_memfd("netrun-ctl"));
  fault = nr__pool_memfd("netrun-fault");
  if (sv[1] < 0 || ctlfd < 0 || fault < 0) goto io;
  fault = fd_high(fault);
  if (fault < 0 || ftruncate(ctlfd, NR_CTL_SIZE) < 0) goto io;
  ctl = mmap(NULL, NR_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ctlfd, 0);
  if (ctl == MAP_FAILED) goto io;
  atomic_store(&ctl->req_seq, 0);
  atomic_store(&ctl->rep_seq, UINT32_MAX); /* the hello answers message 0 */
  w->seq = 0;
  atomic_store(&ctl->core_cpu, -1);
  atomic_store(&ctl->worker_cpu, -2);
  const int fds[3] = {sv[1], ctlfd, fault};
  pid_t pid = 0;
  if (nr__zygote_clone(p, fds, &pid) != 0) {
    char ppid[32];
    snprintf(ppid, sizeof ppid, "%d", (int)getpid());
    char *argv[] = {p->worker_path, ppid, p->layer_types ? p->layer_types : (char *)"", NULL};
    int e = nr__spawn_process(p, argv, fds, 3, false, &pid);
    if (e) {
      errno = e;
      goto io;
    }
  }
  close(sv[1]);
  close(ctlfd);
  pthread_mutex_lock(&p->mu);
  w->pid = pid;
  w->gen++;
  w->pidfd = pidfd_open(pid, 0); /* -1 (old kernel): the watcher polls the socket */
  w->sock = sv[0];
  w->fault_fd = fault;
  w->ctl = ctl;
  atomic_store(&w->dead, 0);
  w->hello = false;
  w->reaped = false;
  w->spin_ns = 20000;
  pthread_mutex_unlock(&p->mu);
  watcher_kick(p);
  if (nr__pool_log(p))
    fprintf(nr__pool_log(p), "netrun: Python worker %d started (pid %d)\n", w->idx, (int)pid);
  return NR_OK;
io:
  s = nr_err_set(err, NR_ERR_IO, "cannot start Python worker %d (%s): %s", w->idx,
                 p->worker_path, strerror(errno));
  if (ctl != MAP_FAILED) munmap(ctl, NR_CTL_SIZE);
  for (int i = 0; i < 2; i++)
    if (sv[i] >= 0) close(sv[i]);
  if (ctlfd >= 0) close(ctlfd);
  if (fault >= 0) close(fault);
  return s;
}

/* "was killed by signal SIGSEGV (Segmentation fault)" / "exited with status 3" */
void nr__worker_death_text(const worker *w, char *buf, size_t len) {
  int st = w->wstatus;
  if (WIFSIGNALED(st)) {
    const char *ab = sigabbrev_np(WTERMSIG(st));
    snprintf(buf, len, "was killed by signal SIG%s (%s)", ab ? ab : "?", strsignal(WTERMSIG(st)));
  } else if (WIFEXITED(st)) {
    snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
  } else {
    snprintf(buf, len, "ended (wait status 0x%x)", st);
  }
}

/* What faulthandler wrote (the last Python stack), at most len-1 bytes, "" if nothing. */
void nr__worker_fault_text(const worker *w, char *buf, size_t len) {
  buf[0] = '\0';
  if (w->fault_fd < 0) return;
  struct stat st;
  if (fstat(w->fault_fd, &st) < 0 || st.st_size <= 0) return;
  off_t off = st.st_size > (off_t)len - 1 ? st.st_size - (off_t)len + 1 : 0;
  ssize_t n = pread(w->fault_fd, buf, len - 1, off);
  buf[n > 0 ? n : 0] = '\0';
}

/* Kill a worker that overran its time: SIGUSR1 first (faulthandler dumps the stack), then
 * SIGKILL; reap. */
static void worker_kill_hung(worker *w) {
  nr__worker_signal(w, SIGUSR1);
  for (int i = 0; i < 50; i++) { /* up to 0.5 s for the stack */
    struct stat st;
    if (fstat(w->fault_fd, &st) == 0 && st.st_size > 0) {
      usleep(20000);
      break;
    }
    usleep(10000);
  }
  nr__worker_signal(w, SIGKILL);
  nr__worker_reap(w);
}

/* After a death or timeout: make sure the process is gone and reaped. */
void nr__worker_finish(worker *w, wres r) {
  if (r == WR_TIMEOUT) worker_kill_hung(w);
  else {
    nr__worker_signal(w, SIGKILL); /* a worker that "died" by a broken socket may still run */
    nr__worker_reap(w);
  }
}

/* A worker died for good: close it (under its io lock) so calls on its layers fail; why is
 * the message of that failure, repeated by every later call on its layers. */
void nr__worker_fail(nr_pool *p, worker *w, const char *why) {
  pthread_mutex_lock(&w->io);
  if (w->pid && !w->reaped) { /* still running (a restart whose setup raised) */
    nr__worker_signal(w, SIGKILL);
    nr__worker_reap(w);
  }
  nr__worker_close(p, w);
  if (!w->failed && !w->first_err && why) w->first_err = strdup(why);
  w->failed = true;
  pthread_mutex_unlock(&w->io);
}
