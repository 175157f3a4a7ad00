/* glog.c: the glog-prefixed log stream (glog.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "glog.h"

typedef struct glog {
  int fd, tee_fd;
  int at_line_start;
} glog;

static void write_all(int fd, const char *p, size_t n) {
  size_t off = 0;
  while (off < n) {
    ssize_t w = write(fd, p + off, n - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    off += (size_t)w;
  }
}

static ssize_t log_write(void *cookie, const char *buf, size_t size) {
  glog *g = cookie;
  size_t i = 0;
  char out[8192];
  while (i < size) {
    size_t o = 0;
    if (g->at_line_start) {
      struct timeval tv;
      gettimeofday(&tv, NULL);
      struct tm tm;
      localtime_r(&tv.tv_sec, &tm);
      o = (size_t)snprintf(out, sizeof out, "I%02d%02d %02d:%02d:%02d.%06ld %5d netrun] ",
                           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                           (long)tv.tv_usec, (int)getpid());
      g->at_line_start = 0;
    }
    while (i < size && o < sizeof out - 1) {
      out[o++] = buf[i];
      if (buf[i++] == '\n') {
        g->at_line_start = 1;
        break;
      }
    }
    /* One write per line so lines from several processes never interleave mid-line. */
    write_all(g->fd, out, o);
    if (g->tee_fd >= 0) write_all(g->tee_fd, out, o);
  }
  return (ssize_t)size;
}

static int log_close(void *cookie) {
  glog *g = cookie;
  if (g->tee_fd >= 0) close(g->tee_fd);
  free(g);
  return 0;
}

FILE *nr_glog_open(int fd, int tee_fd) {
  glog *g = malloc(sizeof *g);
  if (!g) return NULL;
  *g = (glog){fd, tee_fd, 1};
  cookie_io_functions_t io = {NULL, log_write, NULL, log_close};
  FILE *f = fopencookie(g, "w", io);
  if (!f) {
    free(g);
    return NULL;
  }
  setvbuf(f, NULL, _IOLBF, 1 << 16);
  return f;
}

int nr_glog_create_file(const char *dir, const char *prog, char *path, size_t len) {
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = '\0';
  const char *user = getenv("USER");
  struct passwd *pw = user ? NULL : getpwuid(getuid());
  if (!user) user = pw ? pw->pw_name : "invalid-user";
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  char base[512];
  snprintf(base, sizeof base, "%s.%s.%s.log.INFO.%04d%02d%02d-%02d%02d%02d.%d", prog, host, user,
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           (int)getpid());
  snprintf(path, len, "%s/%s", dir, base);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  char link[4200];
  snprintf(link, sizeof link, "%s/%s.INFO", dir, prog);
  unlink(link);
  if (symlink(base, link) != 0) {
    /* the link is a convenience; the log file is what matters */
  }
  return fd;
}
