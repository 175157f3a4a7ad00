/* snapshot_prefix.c: the snapshot prefix's lock and stale temp files (snapshot_prefix.h). */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot_prefix.h"

static char *lock_path(const char *prefix) {
  size_t n = strlen(prefix) + 8;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s.lock", prefix);
  return p;
}

nr_status nr_snapshot_lock(const char *prefix, int *fd, nr_error *err) {
  char *path = lock_path(prefix);
  if (!path) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  nr_status st = NR_OK;
retry:;
  int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (f < 0) {
    st = nr_err_set(err, NR_ERR_IO, "cannot create the snapshot lock '%s': %s", path,
                    strerror(errno));
    goto out;
  }
  if (flock(f, LOCK_EX | LOCK_NB) != 0) {
    char holder[32] = "?";
    ssize_t got = pread(f, holder, sizeof holder - 1, 0);
    holder[got > 0 ? got : 1] = '\0';
    holder[strcspn(holder, "\n")] = '\0';
    st = nr_err_set(err, NR_ERR_INPUT,
                    "snapshot_prefix \"%s\" is in use by another running training (pid %s, "
                    "lock %s): two runs with one prefix would overwrite each other's "
                    "snapshots; give this run another snapshot_prefix", prefix, holder, path);
    close(f);
    goto out;
  }
  /* The holder we waited out may have unlinked the file we opened: then lock the new one. */
  struct stat mine, now;
  if (fstat(f, &mine) != 0 || stat(path, &now) != 0 || mine.st_ino != now.st_ino ||
      mine.st_dev != now.st_dev) {
    close(f);
    goto retry;
  }
  char pid[32];
  int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(f, 0) != 0 || pwrite(f, pid, (size_t)len, 0) != len) {
    /* the pid is only for the message of a second run; the lock holds without it */
  }
  *fd = f;
out:
  free(path);
  return st;
}

void nr_snapshot_unlock(const char *prefix, int fd) {
  if (fd < 0) return;
  char *path = lock_path(prefix);
  if (path) unlink(path); /* while still holding it: a waiting run makes a new one */
  free(path);
  close(fd);
}

/* "<base>_iter_<digits>.<ext>.tmp.<pid>" with ext caffemodel or solverstate: its pid. */
static long stale_pid(const char *name, const char *base, size_t blen) {
  if (strncmp(name, base, blen) != 0 || strncmp(name + blen, "_iter_", 6) != 0) return -1;
  const char *p = name + blen + 6;
  if (!isdigit((unsigned char)*p)) return -1;
  while (isdigit((unsigned char)*p)) p++;
  const char *exts[] = {".caffemodel.tmp.", ".solverstate.tmp."};
  for (int i = 0; i < 2; i++) {
    size_t el = strlen(exts[i]);
    if (strncmp(p, exts[i], el) != 0) continue;
    char *end;
    long pid = strtol(p + el, &end, 10);
    return *end == '\0' && pid > 0 ? pid : -1;
  }
  return -1;
}

nr_status nr_snapshot_remove_stale(const char *prefix, FILE *log, nr_error *err) {
  const char *slash = strrchr(prefix, '/');
  const size_t dlen = slash ? (slash == prefix ? 1 : (size_t)(slash - prefix)) : 1;
  char *dir = malloc(dlen + 1);
  if (!dir) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  memcpy(dir, slash ? prefix : ".", dlen);
  dir[dlen] = '\0';
  const char *base = slash ? slash + 1 : prefix;
  const size_t blen = strlen(base);
  DIR *d = opendir(dir);
  if (!d) {
    free(dir);
    return errno == ENOMEM ? nr_err_set(err, NR_ERR_NOMEM, "out of memory") : NR_OK;
  }
  struct dirent *de;
  while ((de = readdir(d))) {
    long pid = stale_pid(de->d_name, base, blen);
    if (pid <= 0 || pid == (long)getpid()) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* that run is alive */
    if (unlinkat(dirfd(d), de->d_name, 0) == 0 && log)
      fprintf(log, "Removed %s/%s, a snapshot left unfinished by a run that ended (pid %ld)\n",
              dir, de->d_name, pid);
  }
  closedir(d);
  free(dir);
  return NR_OK;
}
