#define _GNU_SOURCE
#include "wire.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

int64_t nr_wire_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Why sem_trywait for the spin: glibc's semaphores post without a syscall when nobody
 * sleeps on them, and trywait is one CAS, so the spin costs no syscalls on either side;
 * only a sleeper pays a futex wake (~10 us each way here).
 * Adaptation: the budget follows the observed answer time. A wait that had to sleep but
 * was answered within max_spin_ns sets the budget to twice that time (a longer spin would
 * have caught it); one answered later halves it, so a peer busy for long stretches (slow
 * Python, C layers between Python layers) costs little CPU. */
int nr_wire_wait(sem_t *s, int64_t *spin_ns, int64_t max_spin_ns, int64_t deadline_ns,
                 _Atomic int *my_cpu, const _Atomic int *peer_cpu) {
  if (sem_trywait(s) == 0) goto got;
  int64_t budget = *spin_ns;
  int64_t start = nr_wire_now_ns();
  if (budget > 0) {
    for (unsigned i = 1;; i++) {
      cpu_relax();
      if (sem_trywait(s) == 0) goto got;
      if ((i & 15) == 0) {
        if (nr_wire_now_ns() - start > budget) break;
        /* The peer last ran on this very CPU (a loaded machine, wake-affine scheduling):
         * spinning would only keep it off the CPU. Let it run. */
        if (peer_cpu && atomic_load_explicit(peer_cpu, memory_order_relaxed) == sched_getcpu())
          sched_yield();
      }
    }
  }
  for (;;) {
    int r;
    if (deadline_ns) {
      struct timespec ts = {(time_t)(deadline_ns / 1000000000), (long)(deadline_ns % 1000000000)};
      r = sem_clockwait(s, CLOCK_MONOTONIC, &ts);
    } else {
      r = sem_wait(s);
    }
    if (r == 0) {
      int64_t waited = nr_wire_now_ns() - start;
      int64_t nb = waited < max_spin_ns ? 2 * waited : budget / 2;
      if (nb > max_spin_ns) nb = max_spin_ns;
      *spin_ns = nb < 1000 ? 1000 : nb;
      goto got;
    }
    if (errno == EINTR) continue;
    *spin_ns = budget / 2 < 1000 ? 1000 : budget / 2;
    return errno;
  }
got:
  if (my_cpu) atomic_store_explicit(my_cpu, sched_getcpu(), memory_order_relaxed);
  return 0;
}

int nr_wire_send_fds(int sock, const int *fds, const uint32_t *ids, int n) {
  while (n > 0) {
    int k = n > 200 ? 200 : n;
    union {
      struct cmsghdr h;
      char space[CMSG_SPACE(sizeof(int) * 200)];
    } cbuf;
    memset(&cbuf, 0, sizeof cbuf);
    struct iovec iov = {(void *)ids, sizeof(uint32_t) * (size_t)k};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.space;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)k);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)k);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)k);
    ssize_t r;
    do r = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0) return errno;
    /* SOCK_SEQPACKET: one message per sendmsg, never split. */
    fds += k;
    ids += k;
    n -= k;
  }
  return 0;
}

int nr_wire_recv_fds(int sock, int *fds, uint32_t *ids, int n) {
  int got = 0;
  while (got < n) {
    union {
      struct cmsghdr h;
      char space[CMSG_SPACE(sizeof(int) * 200)];
    } cbuf;
    struct iovec iov = {ids + got, sizeof(uint32_t) * 200};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.space;
    msg.msg_controllen = sizeof cbuf.space;
    ssize_t r;
    do r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r < 0) return errno;
    if (r == 0) return EPIPE;
    int k = (int)((size_t)r / sizeof(uint32_t));
    int nfd = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        int cnt = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        if (nfd + cnt > k || got + nfd + cnt > n) return EPROTO;
        memcpy(fds + got + nfd, CMSG_DATA(c), sizeof(int) * (size_t)cnt);
        nfd += cnt;
      }
    }
    if (nfd != k || (msg.msg_flags & MSG_CTRUNC)) return EPROTO;
    got += k;
  }
  return 0;
}

int nr_wbuf_write(void *data, const char *buf, size_t len) {
  nr_wbuf *w = data;
  if (w->overflow || len > w->cap - w->len) {
    w->overflow = true;
    return -1;
  }
  memcpy(w->p + w->len, buf, len);
  w->len += len;
  return 0;
}
