/* pool_spawn.c: starting a process of the pool (a worker or the zygote): its descriptors,
 * signals and environment, and the posix_spawn itself, which the watcher thread makes
 * (see nr__spawn_process). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool_int.h"

extern char **environ;

/* A process to start, handed to the watcher thread (see nr__spawn_process). */
typedef struct spawn_job {
  char *const *argv, *const *envp;
  posix_spawn_file_actions_t *fa;
  posix_spawnattr_t *at;
  pid_t pid;
  int err;
  bool done;
} spawn_job;

/* Runs the spawn posted by nr__spawn_process, if any (the watcher thread, woken by an 's'
 * on its pipe). */
void nr__run_spawn_job(nr_pool *p) {
  pthread_mutex_lock(&p->mu);
  spawn_job *j = p->spawn_job;
  if (j && !j->done) {
    j->err = posix_spawn(&j->pid, p->worker_path, j->fa, j->at, j->argv, j->envp);
    j->done = true;
    pthread_cond_broadcast(&p->spawn_cv);
  }
  pthread_mutex_unlock(&p->mu);
}

/* Starts worker_path with argv, fds[i] as descriptor 3 + i, default signals and an empty
 * mask, and the environment with the pool's python_path first on PYTHONPATH (and, for the
 * zygote, OPENBLAS_NUM_THREADS=1 unless set: see pool_zygote.c). Spawned by the watcher
 * thread, which lives as long as the pool: a process's PR_SET_PDEATHSIG follows the thread
 * that spawned it, and the caller's thread may end long before the pool (a Python thread
 * that made a net). 0, or an errno. */
int nr__spawn_process(nr_pool *p, char *const argv[], const int *fds, int nfds, bool zygote,
                      pid_t *pid) {
  posix_spawn_file_actions_t fa;
  if (posix_spawn_file_actions_init(&fa)) return ENOMEM;
  for (int i = 0; i < nfds; i++)
    if (posix_spawn_file_actions_adddup2(&fa, fds[i], NR_FD_SOCK + i)) {
      posix_spawn_file_actions_destroy(&fa);
      return ENOMEM;
    }
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  sigset_t none, def;
  sigemptyset(&none);
  sigemptyset(&def);
  sigaddset(&def, SIGPIPE);
  sigaddset(&def, SIGCHLD);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &def);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  /* The caller's sys.path first on the worker's PYTHONPATH (o.python_path). */
  bool pypath_set = p->o.python_path && *p->o.python_path;
  bool blas1 = zygote && !getenv("OPENBLAS_NUM_THREADS");
  char **envp = environ, **own_env = NULL, *pypath = NULL;
  int e = 0;
  if (pypath_set || blas1) {
    size_t n = 0;
    const char *old = getenv("PYTHONPATH");
    while (environ[n]) n++;
    own_env = calloc(n + 3, sizeof *own_env);
    size_t plen = (pypath_set ? strlen(p->o.python_path) : 0) + (old ? strlen(old) : 0) + 16;
    pypath = malloc(plen);
    if (!own_env || !pypath) {
      e = ENOMEM;
      goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
      if (!pypath_set || strncmp(environ[i], "PYTHONPATH=", 11) != 0) own_env[k++] = environ[i];
    if (pypath_set) {
      snprintf(pypath, plen, "PYTHONPATH=%s%s%s", p->o.python_path, old && *old ? ":" : "",
               old ? old : "");
      own_env[k++] = pypath;
    }
    if (blas1) own_env[k++] = (char *)"OPENBLAS_NUM_THREADS=1";
    envp = own_env;
  }
  spawn_job job = {argv, envp, &fa, &at, 0, 0, false};
  pthread_mutex_lock(&p->mu);
  while (p->spawn_job) pthread_cond_wait(&p->spawn_cv, &p->mu); /* one job at a time */
  p->spawn_job = &job;
  pthread_mutex_unlock(&p->mu);
  {
    char c = 's';
    ssize_t r = write(p->wake[1], &c, 1);
    (void)r;
  }
  pthread_mutex_lock(&p->mu);
  while (!job.done) pthread_cond_wait(&p->spawn_cv, &p->mu);
  p->spawn_job = NULL;
  pthread_cond_broadcast(&p->spawn_cv);
  pthread_mutex_unlock(&p->mu);
  *pid = job.pid;
  e = job.err;
out:
  free(own_env);
  free(pypath);
  posix_spawnattr_destroy(&at);
  posix_spawn_file_actions_destroy(&fa);
  return e;
}
