/* server.h: how a netrun-worker answers the core — the worker's half of ipc/wire.h.
 *
 * A server owns what one worker knows: the segments the core sent it (id -> mapping) and
 * the Python layer objects it created (by layer id). It borrows the control block and the
 * socket the core sends segment descriptors on. netrun-worker (worker/main.c) makes one
 * from the descriptors it is started with; tests/fuzz/fuzz_worker_request.c from an
 * anonymous shared mapping and a socket pair.
 *
 * Every request gets exactly one final reply, NR_REP_OK or NR_REP_ERROR, whatever it
 * holds: a payload the decoder refuses, descriptors announced but not sent, a blob whose
 * capacity or shape does not fit its segment, an unknown segment, layer, method or opcode,
 * a layer created twice are error replies (RuntimeError, "netrun-worker: ..."), never a
 * crash. The core is trusted; the worker still never lets a bad request touch memory it
 * does not own. Only what cannot be answered (out of memory, a broken semaphore) ends
 * the process, and a wait that finds the core gone ends it quietly (exit 0).
 *
 * While a layer runs it may need memory: it sends the core a nested request (NR_REP_GROW,
 * NR_REP_ADD_PARAM) and waits for NR_OP_NESTED_OK/ERR; the runner reaches those through
 * nr_server_host. Threading: one thread, holding the GIL (released while waiting).
 */
#ifndef NR_SERVER_H
#define NR_SERVER_H

#include <sys/types.h>

#include "runner.h"
#include "wire.h"

typedef struct nr_server_layer nr_server_layer;

typedef struct nr_server {
  nr_ctl *ctl;        /* borrowed: the control block */
  int sock;           /* borrowed: the core's descriptor socket (made non-blocking) */
  pid_t parent;       /* the core: a wait that finds another parent ends the process */
  int64_t spin_ns;    /* nr_wire_wait's budget */
  PyObject *segs;     /* new, made on first use: dict segment id -> mapping */
  nr_server_layer **layers;
  int nlayers, cap;
  uint32_t seq;       /* the number of the last request taken (the next is seq + 1) */
  /* Waking ahead (nr_server_wait): the core's hint for the next request (ns after the
   * reply just posted; 0: none), when that reply was posted, and how early to get up. */
  int64_t hint_ns, replied_ns, lead_ns;
} nr_server;

/* Starts a server on ctl and sock (borrowed). Touches no Python object: it may run
 * before nr_rt_init, so a failed start can still be reported with nr_server_reply_error. */
void nr_server_init(nr_server *s, nr_ctl *ctl, int sock, pid_t parent);
/* Drops every layer object and segment (NumPy views Python still holds keep their
 * mapping). The server can be started again. GIL held. */
void nr_server_destroy(nr_server *s);

/* The runner's callbacks (for nr_rt_init): nested requests through server s. */
nr_rt_host nr_server_host(nr_server *s);

/* Blocks, GIL released, until the core posts a message. When the core said when it
 * expects to send it (the hint ctl->next_ns of the call just answered), the worker sleeps
 * until shortly before then and spins, yielding, a little past it, so that the core finds
 * it awake and pays no wake-up; otherwise (or when that window passes) it waits as
 * nr_wire_wait does. */
void nr_server_wait(nr_server *s);
/* Answers the message in the control block with one final reply. Returns false, posting
 * nothing, for NR_OP_EXIT (the caller leaves). */
bool nr_server_handle(nr_server *s);

/* Posts reply op with len bytes of payload already in the control block. */
void nr_server_post(nr_server *s, uint32_t op, size_t len);
/* Posts NR_REP_ERROR {type, msg, tb}, shortened to fit the control block. */
void nr_server_reply_error(nr_server *s, const nr_rt_err *e);

/* Ends the worker (exit 3) after printing what failed and errno. */
_Noreturn void nr_server_die(const char *what);

#endif
