#include "nr_status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

nr_status nr_err_set(nr_error *err, nr_status s, const char *fmt, ...) {
  if (!err) return s;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  err->status = s;
  return s;
}

nr_status nr_err_prefix(nr_error *err, const char *fmt, ...) {
  if (!err) return NR_OK;
  char head[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(head, sizeof head, fmt, ap);
  va_end(ap);
  if (n < 0) return err->status;
  if ((size_t)n >= sizeof head) n = (int)sizeof head - 1;
  size_t old = strnlen(err->msg, sizeof err->msg - 1);
  size_t add = (size_t)n + 2;
  if (add >= sizeof err->msg) return err->status;
  if (old + add >= sizeof err->msg) old = sizeof err->msg - 1 - add;
  memmove(err->msg + add, err->msg, old);
  err->msg[add + old] = '\0';
  memcpy(err->msg, head, (size_t)n);
  err->msg[n] = ':';
  err->msg[n + 1] = ' ';
  return err->status;
}

const char *nr_status_str(nr_status s) {
  switch (s) {
    case NR_OK: return "ok";
    case NR_ERR_INPUT: return "input error";
    case NR_ERR_NOMEM: return "out of memory";
    case NR_ERR_IO: return "I/O error";
    case NR_ERR_PYTHON: return "Python error";
    case NR_ERR_WORKER: return "worker failure";
    case NR_ERR_INTERRUPT: return "interrupted";
    case NR_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}
