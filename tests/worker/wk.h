/* wk.h: helpers of the worker tests — a hand-built chain of Python layers (no net.c
 * needed), leak probes (/dev/shm entries, child processes, open descriptors). */
#ifndef NR_WK_H
#define NR_WK_H

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "layer.h"
#include "pool.h"

#define WK_MAX 16

/* A chain bottom b[0] -> layer 0 -> b[1] -> ... -> layer n-1 -> b[n]. */
typedef struct wk_chain {
  nr_layer_ctx ctx;
  Caffe__LayerParameter lp[WK_MAX];
  Caffe__PythonParameter pp[WK_MAX];
  char name[WK_MAX][32];
  nr_layer *l[WK_MAX];
  nr_blob *b[WK_MAX + 1];
  int n;
  int64_t iter;
} wk_chain;

static inline const char *wk_fixtures(void) {
  static char dir[1024];
  const char *src = getenv("NR_SOURCE_DIR");
  snprintf(dir, sizeof dir, "%s/tests/fixtures/pylayers", src ? src : ".");
  return dir;
}

/* Creates the blobs and layers (no setup). cls[i]/ps[i] per layer; module for all. */
static inline nr_status wk_chain_init(wk_chain *c, nr_py_backend *py, const nr_allocator *a,
                                      int n, const char *module, const char *const *cls,
                                      const char *const *ps, int phase, nr_error *err) {
  memset(c, 0, sizeof *c);
  c->n = n;
  c->ctx.alloc = a;
  c->ctx.py = py;
  c->ctx.iter = &c->iter;
  c->ctx.source_dir = wk_fixtures();
  for (int i = 0; i <= n; i++) {
    char bn[32];
    snprintf(bn, sizeof bn, "b%d", i);
    NR_TRY(nr_blob_create(bn, a, &c->b[i], err));
  }
  for (int i = 0; i < n; i++) {
    caffe__layer_parameter__init(&c->lp[i]);
    caffe__python_parameter__init(&c->pp[i]);
    snprintf(c->name[i], sizeof c->name[i], "py%d", i);
    c->lp[i].name = c->name[i];
    c->lp[i].type = (char *)"Python";
    c->lp[i].has_phase = 1;
    c->lp[i].phase = (Caffe__Phase)phase;
    c->pp[i].module = (char *)module;
    c->pp[i].layer = (char *)cls[i];
    c->pp[i].param_str = (char *)(ps && ps[i] ? ps[i] : "");
    c->lp[i].python_param = &c->pp[i];
    NR_TRY(nr_layer_create(&c->lp[i], &c->ctx, &c->b[i], 1, &c->b[i + 1], 1, &c->l[i], err));
  }
  return NR_OK;
}

static inline nr_status wk_chain_setup(wk_chain *c, nr_error *err) {
  for (int i = 0; i < c->n; i++) {
    nr_status s = nr_layer_setup(c->l[i], err);
    if (s != NR_OK) return nr_err_prefix(err, "layer %d '%s'", i, c->l[i]->name);
  }
  return NR_OK;
}

static inline nr_status wk_chain_forward(wk_chain *c, nr_error *err) {
  for (int i = 0; i < c->n; i++) {
    nr_status s = c->l[i]->type->reshape(c->l[i], err);
    if (s == NR_OK) s = c->l[i]->type->forward(c->l[i], err);
    if (s != NR_OK) return nr_err_prefix(err, "layer %d '%s'", i, c->l[i]->name);
  }
  return NR_OK;
}

static inline nr_status wk_chain_backward(wk_chain *c, nr_error *err) {
  for (int i = c->n - 1; i >= 0; i--) {
    c->l[i]->prop_down[0] = true;
    nr_status s = c->l[i]->type->backward(c->l[i], err);
    if (s != NR_OK) return nr_err_prefix(err, "layer %d '%s'", i, c->l[i]->name);
  }
  return NR_OK;
}

static inline void wk_chain_free(wk_chain *c) {
  for (int i = 0; i < c->n; i++) nr_layer_destroy(c->l[i]);
  for (int i = 0; i <= c->n; i++) nr_blob_destroy(c->b[i]);
  memset(c, 0, sizeof *c);
}

/* Leak probes. */
static inline int wk_count_dir(const char *path) {
  DIR *d = opendir(path);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}
/* /dev/shm entries, minus those other programs on a shared machine are known to make (Open
 * MPI's shared-memory transport: a concurrent mpirun test; as tests/lib/cli_test.sh). */
static inline int wk_shm_entries(void) {
  DIR *d = opendir("/dev/shm");
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.' && strncmp(e->d_name, "vader_segment.", 14) != 0 &&
        strncmp(e->d_name, "sm_segment.", 11) != 0)
      n++;
  closedir(d);
  return n;
}
static inline int wk_open_fds(void) { return wk_count_dir("/proc/self/fd"); }

/* /proc/PID/stat of pid into buf (len bytes, NUL-terminated): a pointer to the ')' that
 * ends the name (the fields after it start 2 bytes on), or NULL when pid is gone. */
static inline char *wk_read_stat(pid_t pid, char *buf, size_t len) {
  char p[64];
  snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(p, "r");
  if (!f) return NULL;
  size_t k = fread(buf, 1, len - 1, f);
  fclose(f);
  buf[k] = '\0';
  return strrchr(buf, ')');
}

/* Process pid's name (comm, at most clen - 1 bytes) and parent, from /proc/PID/stat.
 * 0, or -1 when it is gone. */
static inline int wk_stat(pid_t pid, char *comm, size_t clen, int *ppid) {
  char buf[512];
  char *rp = wk_read_stat(pid, buf, sizeof buf);
  if (!rp) return -1;
  char *lp = strchr(buf, '('), st;
  if (!lp || rp < lp || sscanf(rp + 2, "%c %d", &st, ppid) != 2) return -1;
  snprintf(comm, clen, "%.*s", (int)(rp - lp - 1), lp + 1);
  return 0;
}

/* Children of this process (running or zombie) named comm (NULL: any): how many, and the
 * last one seen in *one (may be NULL). */
static inline int wk_children_named(const char *comm, pid_t *one) {
  DIR *d = opendir("/proc");
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  pid_t me = getpid();
  while ((e = readdir(d))) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char name[64];
    int ppid = 0;
    pid_t pid = (pid_t)atoi(e->d_name);
    if (wk_stat(pid, name, sizeof name, &ppid) == 0 && ppid == me &&
        (!comm || !strcmp(name, comm))) {
      n++;
      if (one) *one = pid;
    }
  }
  closedir(d);
  return n;
}

static inline int wk_children(void) { return wk_children_named(NULL, NULL); }

static inline int wk_pid_alive(pid_t pid) {
  char p[64], buf[256];
  snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(p, "r");
  if (!f) return 0;
  size_t k = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[k] = '\0';
  char *rp = strrchr(buf, ')');
  return rp && rp[2] != 'Z' && rp[2] != 'X';
}

#endif
