/* cli.h: the `netrun` command line.
 *
 * One table of subcommands (main.c). Each subcommand declares its flags in an nr_flag table;
 * the parser accepts Caffe's `-flag value` and `--flag value`, `--flag=value`, `-flag=value`,
 * with global flags (the Python worker pool's) before or after the subcommand. Subcommands
 * return an exit code: 0 ok, 1 runtime error, 2 usage.
 */
#ifndef NR_CLI_H
#define NR_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "net.h"
#include "nr_status.h"
#include "runtime.h"

typedef enum { NR_FLAG_STR, NR_FLAG_INT, NR_FLAG_DOUBLE, NR_FLAG_BOOL } nr_flag_kind;

typedef struct nr_flag {
  const char *name;
  nr_flag_kind kind;
  void *value; /* const char **, int *, double *, bool * */
  const char *help;
} nr_flag;

/* Options shared by every subcommand: the Python layer runtime. */
typedef struct nr_global_opts {
  int py_workers;    /* -1 = auto */
  double py_timeout; /* seconds; 0 = none */
  int py_restarts;
  int py_prefetch;
  const char *log_dir;      /* glog's -log_dir: also write the log to a file there */
  double py_max_blob_bytes; /* largest blob a worker may ask for/report; 0 = default 4 GiB */
  const char *gpu;          /* Caffe's -gpu: accepted everywhere, noted, ignored */
  const char *py_replicas;  /* --py-replicas layer=R[,layer2=R2] */
} nr_global_opts;

extern nr_global_opts nr_cli_global;

/* The Caffe-style log: each line gets a glog-like prefix ("I1125 19:21:00.123456  4242
 * netrun] ") so existing log parsers read it. Writes to stderr. */
FILE *nr_cli_log(void);
/* Prints "netrun: <msg>" style errors on stderr. */
void nr_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The Python-layer runtime for the global options (ipc/runtime.h): a worker pool, or the
 * in-process backend for --py-workers 0. */
nr_status nr_cli_py_start(nr_runtime **out, nr_error *err);
/* The same with the pool's log lines going to `log` (borrowed; outlives the runtime). */
nr_status nr_cli_py_start_log(FILE *log, nr_runtime **out, nr_error *err);

/* Parses "TRAIN"/"TEST" (any case). */
int nr_cli_phase(const char *s, int *phase);
/* Splits a comma-separated stage list into a NULL-terminated array (new; free each). */
char **nr_cli_split(const char *s, int *n);
void nr_cli_free_split(char **v);
/* Directory part of a path (new string). */
char *nr_cli_dirname(const char *path);

/* Data-parallel training (cli_mpi.c): joins the MPI job when an MPI launcher started this
 * process, filling *out with this rank's hooks (core/dist.h); otherwise (or in a build
 * without MPI) *out is one process, size 1. nr_cli_dist_end finalizes MPI after a
 * successful run; nr_cli_dist_abort ends every rank of the job with exit code `code` (it
 * returns only when MPI is not running). */
struct nr_dist;
nr_status nr_cli_dist_start(struct nr_dist *out, nr_error *err);
void nr_cli_dist_end(void);
void nr_cli_dist_abort(int code);

int nr_cmd_train(int argc, char **argv);
int nr_cmd_test(int argc, char **argv);
int nr_cmd_time(int argc, char **argv);
int nr_cmd_check(int argc, char **argv);
int nr_cmd_upgrade(int argc, char **argv);
int nr_cmd_convert_mnist(int argc, char **argv);
int nr_cmd_convert_cifar(int argc, char **argv);
int nr_cmd_compute_image_mean(int argc, char **argv);
int nr_cmd_plot(int argc, char **argv);
int nr_cmd_device_query(int argc, char **argv);

/* Parses argv against flags (and the global flags); positional arguments are returned in
 * pos (borrowed from argv). Returns 0, or 2 after printing a usage error. --help prints the
 * command's help and returns 3. */
int nr_cli_parse(const char *cmd, const char *usage, const nr_flag *flags, int argc,
                 char **argv, const char **pos, int *npos, int maxpos);

#endif
