/* locate.c: see locate.h. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "locate.h"

/* The directory of the file that holds this code (the executable, or libnetrun.so). */
static void lib_dir(char *out, size_t len) {
  Dl_info info;
  out[0] = '\0';
  if (dladdr((void *)lib_dir, &info) && info.dli_fname && info.dli_fname[0] == '/') {
    snprintf(out, len, "%s", info.dli_fname);
    char *slash = strrchr(out, '/');
    if (slash) *slash = '\0';
  }
}

static void exe_dir(char *out, size_t len) {
  ssize_t n = readlink("/proc/self/exe", out, len - 1);
  out[n > 0 ? n : 0] = '\0';
  char *slash = strrchr(out, '/');
  if (slash) *slash = '\0';
}

char *nr__locate(const char *const *candidates, int n, int mode) {
  char exe[PATH_MAX], lib[PATH_MAX];
  exe_dir(exe, sizeof exe);
  lib_dir(lib, sizeof lib);
  for (int i = 0; i < n; i++) {
    const char *c = candidates[i];
    if (!c) continue;
    char path[2 * PATH_MAX];
    const char *base = !strncmp(c, "$EXE/", 5) ? exe : !strncmp(c, "$LIB/", 5) ? lib : NULL;
    if (base && !base[0]) continue;
    if (base) snprintf(path, sizeof path, "%s/%s", base, c + 5);
    else snprintf(path, sizeof path, "%s", c);
    if (access(path, mode) == 0) return strdup(path);
  }
  return NULL;
}
