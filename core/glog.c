/* glog.c: the glog-prefixed log stream (glog.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "glog.h"

typedef struct glog {
  int fd;
  int at_line_start;
} glog;

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
    size_t off = 0;
    while (off < o) {
      ssize_t w = write(g->fd, out + off, o - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        return (ssize_t)size;
      }
      off += (size_t)w;
    }
  }
  return (ssize_t)size;
}

static int log_close(void *cookie) {
  free(cookie);
  return 0;
}

FILE *nr_glog_open(int fd) {
  glog *g = malloc(sizeof *g);
  if (!g) return NULL;
  *g = (glog){fd, 1};
  cookie_io_functions_t io = {NULL, log_write, NULL, log_close};
  FILE *f = fopencookie(g, "w", io);
  if (!f) {
    free(g);
    return NULL;
  }
  setvbuf(f, NULL, _IOLBF, 1 << 16);
  return f;
}
