/* nr_status.h: the one error convention of netrun.
 *
 * Every fallible function returns an nr_status and takes an nr_error *. The innermost
 * failure writes the message with nr_err_set(); each caller on the way up may prepend
 * where it was with nr_err_prefix(), so the user reads a chain such as
 *   net 'LeNet': layer 1 'conv1' (Convolution): bottom has 3 axes, expected 4
 * Only main() turns a status into an exit code. This header sits in proto/ because proto
 * is the lowest module: every other module depends on it.
 *
 * Thread safety: an nr_error belongs to one thread at a time.
 */
#ifndef NR_STATUS_H
#define NR_STATUS_H

#include <stddef.h>

typedef enum nr_status {
  NR_OK = 0,
  NR_ERR_INPUT,    /* bad user input: prototxt, model file, flags, shapes */
  NR_ERR_NOMEM,    /* an allocation failed */
  NR_ERR_IO,       /* a file or socket operation failed */
  NR_ERR_PYTHON,   /* a Python layer raised */
  NR_ERR_WORKER,   /* a Python worker died, hung or sent garbage */
  NR_ERR_INTERRUPT,/* the user asked to stop (SIGINT/SIGHUP with effect stop) */
  NR_ERR_INTERNAL  /* a "cannot happen" branch happened */
} nr_status;

#define NR_ERROR_MAX 16384

typedef struct nr_error {
  nr_status status;
  char msg[NR_ERROR_MAX];
} nr_error;

/* Replaces the message with the formatted text; returns s so callers can
 * `return nr_err_set(err, NR_ERR_INPUT, "...")`. err may be NULL. */
nr_status nr_err_set(nr_error *err, nr_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "<formatted>: " to the existing message; returns err->status (or NR_OK if
 * err is NULL). Truncates from the end when the buffer is full. */
nr_status nr_err_prefix(nr_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A short constant name for a status ("input error", "out of memory", ...). */
const char *nr_status_str(nr_status s);

/* Evaluate a fallible call and return its status on failure. */
#define NR_TRY(expr)                  \
  do {                                \
    nr_status nr__s = (expr);         \
    if (nr__s != NR_OK) return nr__s; \
  } while (0)

#endif
