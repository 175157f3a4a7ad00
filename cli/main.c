/* main.c: `netrun`, the command-line tool (Caffe's `caffe` tool, plus the Python worker pool
 * flags). Only this file and the other cli_*.c files turn statuses into exit codes. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "descendants.h"
#include "glog.h"
#include "runtime.h"

nr_global_opts nr_cli_global = {-1, 0, 0, 3, NULL, 0, NULL, NULL};
static int log_file_fd = -1; /* -log_dir's file (owned by the log stream once it exists) */

/* Commands that build nets: their help lists the Python-runtime flags. */
static bool runs_nets(const char *cmd) {
  return !strcmp(cmd, "train") || !strcmp(cmd, "test") || !strcmp(cmd, "time") ||
         !strcmp(cmd, "check");
}

static const nr_flag global_flags[] = {
    {"gpu", NR_FLAG_STR, &nr_cli_global.gpu,
     "accepted for Caffe compatibility: netrun runs on the CPU (a note says so)"},
    {"log_dir", NR_FLAG_STR, &nr_cli_global.log_dir,
     "also write the log to a file in this folder, named as glog names it "
     "(netrun.<host>.<user>.log.INFO.<date>-<time>.<pid>, and a netrun.INFO link)"},
    {"py-workers", NR_FLAG_INT, &nr_cli_global.py_workers,
     "Python worker processes, 0 to 64 (default -1: one for the Python layers the net calls "
     "in step, others for prefetched data layers, up to the core count; 0 = run Python "
     "layers inside netrun)"},
    {"py-timeout", NR_FLAG_DOUBLE, &nr_cli_global.py_timeout,
     "seconds a Python layer call may take before its worker is ended (0 or inf = no limit)"},
    {"py-restarts", NR_FLAG_INT, &nr_cli_global.py_restarts,
     "restart a dead or hung worker up to this many times and retry the call (default 0)"},
    {"py-prefetch", NR_FLAG_INT, &nr_cli_global.py_prefetch,
     "batches a Python data layer computes ahead of the net, 0 to 64 (default 3)"},
    {"py-replicas", NR_FLAG_STR, &nr_cli_global.py_replicas,
     "LAYER=R[,LAYER2=R2]: run these Python data layers on R workers each (as "
     "python_param.replicas, which Caffe's own tools cannot read)"},
    {"py-max-blob-bytes", NR_FLAG_DOUBLE, &nr_cli_global.py_max_blob_bytes,
     "largest blob (count x 4 bytes) a Python layer may grow a blob to (ValueError in the "
     "layer) or a worker may report (the worker is killed as faulty); default 4294967296 = "
     "4 GiB"},
    {NULL, 0, NULL, NULL}};

/* ---- logging ---------------------------------------------------------------------------- */

static FILE *cli_log;
static bool cli_log_closed;

/* At exit, whichever way main ends: flushes the log and frees its stream. */
static void close_cli_log(void) {
  if (cli_log) fclose(cli_log);
  cli_log = NULL;
  cli_log_closed = true;
}

FILE *nr_cli_log(void) {
  if (cli_log) return cli_log;
  if (cli_log_closed || !(cli_log = nr_glog_open(2, log_file_fd))) return stderr;
  atexit(close_cli_log);
  return cli_log;
}

/* -log_dir: create the log file before anything is logged (flags are all read by then). */
static int open_log_file(const char *cmd) {
  if (!nr_cli_global.log_dir || log_file_fd >= 0) return 0;
  char path[4200];
  log_file_fd = nr_glog_create_file(nr_cli_global.log_dir, "netrun", path, sizeof path);
  if (log_file_fd < 0) {
    nr_cli_error("%s: -log_dir: cannot create a log file in '%s': %s", cmd,
                 nr_cli_global.log_dir, strerror(errno));
    return 2;
  }
  return 0;
}

void nr_cli_error(const char *fmt, ...) {
  fflush(nr_cli_log());
  va_list ap;
  va_start(ap, fmt);
  char msg[NR_ERROR_MAX + 64];
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "netrun: error: %s\n", msg);
  if (log_file_fd >= 0) dprintf(log_file_fd, "E netrun: error: %s\n", msg);
}

/* ---- flags ------------------------------------------------------------------------------ */

static void print_flags(FILE *f, const nr_flag *flags) {
  for (int i = 0; flags && flags[i].name; i++)
    fprintf(f, "  --%-16s %s\n", flags[i].name, flags[i].help);
}

static const nr_flag *find_flag(const nr_flag *flags, const char *name, size_t len) {
  for (int i = 0; flags && flags[i].name; i++)
    if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
      return &flags[i];
  /* accept underscores for dashes and back (--py_workers, --sigint-effect) */
  char norm[128];
  if (len >= sizeof norm) return NULL;
  for (size_t k = 0; k < len; k++) norm[k] = name[k] == '_' ? '-' : name[k];
  norm[len] = 0;
  for (int i = 0; flags && flags[i].name; i++) {
    char fn[128];
    size_t fl = strlen(flags[i].name);
    if (fl >= sizeof fn) continue;
    for (size_t k = 0; k <= fl; k++) fn[k] = flags[i].name[k] == '_' ? '-' : flags[i].name[k];
    if (strcmp(fn, norm) == 0) return &flags[i];
  }
  return NULL;
}

static int set_flag(const char *cmd, const nr_flag *f, const char *v) {
  char *end = NULL;
  errno = 0;
  switch (f->kind) {
    case NR_FLAG_STR:
      *(const char **)f->value = v;
      return 0;
    case NR_FLAG_INT: {
      long x = strtol(v, &end, 10);
      if (errno || !*v || *end || x < -2147483647L || x > 2147483647L) break;
      *(int *)f->value = (int)x;
      return 0;
    }
    case NR_FLAG_DOUBLE: {
      double x = strtod(v, &end);
      if (errno || !*v || *end) break;
      *(double *)f->value = x;
      return 0;
    }
    case NR_FLAG_BOOL:
      if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) {
        *(bool *)f->value = true;
        return 0;
      }
      if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) {
        *(bool *)f->value = false;
        return 0;
      }
      break;
  }
  nr_cli_error("%s: bad value '%s' for --%s (%s)", cmd, v, f->name,
               f->kind == NR_FLAG_INT ? "expected an integer"
               : f->kind == NR_FLAG_DOUBLE ? "expected a number"
                                           : "expected true or false");
  return 2;
}

static bool replicas_ok(const char *s) {
  while (*s) {
    const char *eq = strchr(s, '=');
    const char *comma = strchr(s, ',');
    if (!eq || eq == s || (comma && comma < eq)) return false;
    char *end;
    long r = strtol(eq + 1, &end, 10);
    if (end == eq + 1 || r < 1 || r > 4096 || (*end && *end != ',')) return false;
    s = *end ? end + 1 : end;
    if (*end && !*s) return false;
  }
  return true;
}

/* The global flags' ranges, checked once every flag is read (they may come before or after
 * the command). Decision: a timeout of inf, or of 1e9 s (31 years) and more, means no limit,
 * as 0 does; negative or NaN values are usage errors. */
static int check_global_flags(const char *cmd) {
  const nr_global_opts *g = &nr_cli_global;
  const char *bad = NULL, *want = NULL;
  char value[64] = "";
  if (g->py_workers < -1 || g->py_workers > NR_POOL_MAX_WORKERS) {
    bad = "py-workers", want = "0 to 64, or -1 for a pool sized by the layers";
    snprintf(value, sizeof value, "%d", g->py_workers);
  } else if (!(g->py_timeout >= 0)) {
    bad = "py-timeout", want = "seconds, 0 or more; 0 or inf = no limit";
    snprintf(value, sizeof value, "%g", g->py_timeout);
  } else if (g->py_restarts < 0) {
    bad = "py-restarts", want = "0 or more";
    snprintf(value, sizeof value, "%d", g->py_restarts);
  } else if (g->py_replicas && !replicas_ok(g->py_replicas)) {
    bad = "py-replicas", want = "LAYER=R[,LAYER2=R2] with R from 1 to 4096";
    snprintf(value, sizeof value, "%.60s", g->py_replicas);
  } else if (g->py_prefetch < 0 || g->py_prefetch > 64) {
    bad = "py-prefetch", want = "0 to 64";
    snprintf(value, sizeof value, "%d", g->py_prefetch);
  } else if (!(g->py_max_blob_bytes >= 0 && g->py_max_blob_bytes <= 9.2e18) ||
             g->py_max_blob_bytes != (double)(long long)g->py_max_blob_bytes) {
    bad = "py-max-blob-bytes", want = "a whole number of bytes, 0 for the default 4 GiB";
    snprintf(value, sizeof value, "%g", g->py_max_blob_bytes);
  }
  if (!bad) return 0;
  nr_cli_error("%s: bad value '%s' for --%s (expected %s)", cmd, value, bad, want);
  return 2;
}

int nr_cli_parse(const char *cmd, const char *usage, const nr_flag *flags, int argc,
                 char **argv, const char **pos, int *npos, int maxpos) {
  *npos = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || a[1] == '\0') {
      if (*npos >= maxpos) {
        nr_cli_error("%s: unexpected argument '%s' (see netrun %s --help)", cmd, a, cmd);
        return 2;
      }
      pos[(*npos)++] = a;
      continue;
    }
    const char *name = a + 1 + (a[1] == '-');
    if (!strcmp(name, "help") || !strcmp(name, "h")) {
      printf("usage: %s\n\nflags:\n", usage);
      print_flags(stdout, flags);
      printf("\nglobal flags (before or after the command):\n");
      for (int k = 0; k < 2; k++) /* -gpu, -log_dir: every command */
        printf("  --%-16s %s\n", global_flags[k].name, global_flags[k].help);
      if (runs_nets(cmd)) {
        printf("\nPython-layer flags (before or after the command):\n");
        print_flags(stdout, global_flags + 2);
      }
      return 3;
    }
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const nr_flag *f = find_flag(flags, name, len);
    if (!f) f = find_flag(global_flags, name, len);
    if (!f) {
      nr_cli_error("%s: unknown flag '%.*s' (see netrun %s --help)", cmd,
                   (int)(name - a + (ptrdiff_t)len), a, cmd);
      return 2;
    }
    const char *v = eq ? eq + 1 : NULL;
    if (!v && f->kind == NR_FLAG_BOOL) {
      /* a bare boolean flag means true unless a literal boolean follows */
      if (i + 1 < argc && (!strcmp(argv[i + 1], "true") || !strcmp(argv[i + 1], "false")))
        v = argv[++i];
      else
        v = "true";
    }
    if (!v) {
      if (i + 1 >= argc) {
        nr_cli_error("%s: flag --%s needs a value", cmd, f->name);
        return 2;
      }
      v = argv[++i];
    }
    int r = set_flag(cmd, f, v);
    if (r) return r;
  }
  if (open_log_file(cmd)) return 2;
  if (nr_cli_global.gpu) {
    fprintf(nr_cli_log(), "netrun runs on the CPU; ignoring -gpu %s\n", nr_cli_global.gpu);
    nr_cli_global.gpu = NULL; /* said once */
  }
  return check_global_flags(cmd);
}

/* ---- helpers shared by commands ---------------------------------------------------------- */

int nr_cli_phase(const char *s, int *phase) {
  if (!strcasecmp(s, "TRAIN") || !strcmp(s, "0")) {
    *phase = NR_TRAIN;
    return 0;
  }
  if (!strcasecmp(s, "TEST") || !strcmp(s, "1")) {
    *phase = NR_TEST;
    return 0;
  }
  return -1;
}

char **nr_cli_split(const char *s, int *n) {
  *n = 0;
  size_t cap = 1;
  for (const char *p = s ? s : ""; *p; p++) cap += *p == ',';
  char **v = calloc(cap + 1, sizeof *v);
  if (!v) return NULL;
  if (!s || !*s) return v;
  const char *p = s;
  while (1) {
    const char *c = strchr(p, ',');
    size_t len = c ? (size_t)(c - p) : strlen(p);
    if (len) v[(*n)++] = strndup(p, len);
    if (!c) break;
    p = c + 1;
  }
  return v;
}

void nr_cli_free_split(char **v) {
  for (int i = 0; v && v[i]; i++) free(v[i]);
  free(v);
}

char *nr_cli_dirname(const char *path) {
  const char *s = strrchr(path, '/');
  if (!s) return strdup(".");
  if (s == path) return strdup("/");
  return strndup(path, (size_t)(s - path));
}

/* ---- the Python runtime ---------------------------------------------------------------- */

nr_status nr_cli_py_start(nr_runtime **out, nr_error *err) {
  return nr_cli_py_start_log(nr_cli_log(), out, err);
}

nr_status nr_cli_py_start_log(FILE *log, nr_runtime **out, nr_error *err) {
  nr_pool_opts o = {0};
  o.nworkers = nr_cli_global.py_workers;
  o.timeout_sec = nr_cli_global.py_timeout >= 1e9 ? 0 : nr_cli_global.py_timeout;
  o.max_restarts = nr_cli_global.py_restarts;
  o.prefetch = nr_cli_global.py_prefetch;
  o.log = log;
  o.max_blob_bytes = (long long)nr_cli_global.py_max_blob_bytes;
  o.replicas = nr_cli_global.py_replicas;
  return nr_runtime_create(&o, out, err);
}

/* ---- the command table ------------------------------------------------------------------ */

typedef struct nr_command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} nr_command;

static const nr_command commands[] = {
    {"train", nr_cmd_train, "train or fine-tune a model from a solver"},
    {"test", nr_cmd_test, "score a model over a number of batches"},
    {"time", nr_cmd_time, "benchmark a model's forward and backward, per layer"},
    {"check", nr_cmd_check, "build a net and print its layers, shapes and memory"},
    {"upgrade", nr_cmd_upgrade, "rewrite an old net or solver prototxt in the current format"},
    {"convert-mnist", nr_cmd_convert_mnist, "write an IDX data set (MNIST format) into an LMDB"},
    {"convert-cifar", nr_cmd_convert_cifar, "write CIFAR-10's binary batches into two LMDBs"},
    {"compute-image-mean", nr_cmd_compute_image_mean,
     "write the mean image of an LMDB as a mean_file (.binaryproto)"},
    {"plot", nr_cmd_plot, "draw training loss and test accuracy from a training log"},
    {"device_query", nr_cmd_device_query, "describe the processor netrun computes on"},
    {NULL, NULL, NULL}};

static void usage(FILE *f) {
  fprintf(f,
          "netrun: a Caffe-compatible runtime whose Python layers run in worker processes\n\n"
          "usage: netrun [global flags] <command> [flags]\n\ncommands:\n");
  for (int i = 0; commands[i].name; i++)
    fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nglobal flags (before or after the command):\n");
  print_flags(f, global_flags);
  fprintf(f, "\n`netrun help <command>` (or `netrun <command> --help`) lists a command's flags;"
             " `netrun --version` says which netrun this is.\n");
}

static int run_main(int argc, char **argv);

/* netrun adopts what its Python layers start (with --py-workers 0 they run here; orphans of
 * a worker that was killed come back here too) and ends all of it before it exits: nothing
 * a layer started outlives the run (ipc/descendants.h). */
int main(int argc, char **argv) {
  nr_adopt_descendants();
  int r = run_main(argc, argv);
  fflush(NULL);
  nr_end_descendants();
  return r;
}

static int run_main(int argc, char **argv) {
  /* Global flags may come before the command: consume them here. */
  int i = 1;
  while (i < argc && argv[i][0] == '-') {
    const char *a = argv[i];
    const char *name = a + 1 + (a[1] == '-');
    if (!strcmp(name, "help") || !strcmp(name, "h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(name, "version")) {
      printf("netrun %s (Caffe 1.0 compatible: caffe.proto, prototxt, caffemodel, CLI)\n",
             NR_VERSION);
      return 0;
    }
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const nr_flag *f = find_flag(global_flags, name, len);
    if (!f) {
      nr_cli_error("unknown global flag '%s' (see netrun --help)", a);
      return 2;
    }
    const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
    if (!v) {
      nr_cli_error("flag --%s needs a value", f->name);
      return 2;
    }
    if (set_flag("netrun", f, v)) return 2;
    i++;
  }
  if (i >= argc) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[i];
  if (!strcmp(cmd, "help")) { /* netrun help [command] */
    if (i + 1 >= argc) {
      usage(stdout);
      return 0;
    }
    cmd = argv[++i];
    for (int c = 0; commands[c].name; c++)
      if (!strcmp(commands[c].name, cmd)) {
        char *help[] = {(char *)"--help", NULL};
        int r = commands[c].run(1, help);
        return r == 3 ? 0 : r;
      }
    nr_cli_error("help: unknown command '%s' (see netrun help)", cmd);
    return 2;
  }
  for (int c = 0; commands[c].name; c++)
    if (!strcmp(commands[c].name, cmd)) {
      int r = commands[c].run(argc - i - 1, argv + i + 1);
      fflush(nr_cli_log());
      return r == 3 ? 0 : r;
    }
  nr_cli_error("unknown command '%s' (commands: train, test, time, check, upgrade, plot, "
               "convert-mnist, convert-cifar, compute-image-mean, device_query, help)", cmd);
  return 2;
}
