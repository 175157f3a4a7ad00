/* inproc.c: --py-workers 0. Finds libnetrun-pyinproc.so and hands it the few engine
 * functions it needs (inproc_abi.h), so netrun itself never links libpython. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "inproc_abi.h"
#include "pool.h"

#define NR_INPROC_LIB "libnetrun-pyinproc.so"

static const nr_inproc_so *loaded;

static void *try_open(const char *path, char *why, size_t len) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h && access(path, F_OK) == 0) snprintf(why, len, "%s", dlerror());
  return h;
}

static nr_status load(nr_error *err) {
  if (loaded) return NR_OK;
  char why[1024] = "";
  char exe[PATH_MAX], path[PATH_MAX + 64];
  void *h = NULL;
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    snprintf(path, sizeof path, "%s/%s", exe, NR_INPROC_LIB);
    h = try_open(path, why, sizeof why);
    if (!h) {
      snprintf(path, sizeof path, "%s/../lib/netrun/%s", exe, NR_INPROC_LIB);
      h = try_open(path, why, sizeof why);
    }
  }
#ifdef NR_INPROC_BUILD_PATH
  if (!h) h = try_open(NR_INPROC_BUILD_PATH, why, sizeof why);
#endif
  if (!h)
    return nr_err_set(err, NR_ERR_IO,
                      "--py-workers 0 needs %s (next to netrun, in ../lib/netrun or the build "
                      "tree)%s%s", NR_INPROC_LIB, *why ? ": " : ": not found", why);
  nr_inproc_entry_fn entry;
  *(void **)&entry = dlsym(h, NR_INPROC_ENTRY);
  if (!entry) {
    dlclose(h);
    return nr_err_set(err, NR_ERR_IO, "%s has no %s", NR_INPROC_LIB, NR_INPROC_ENTRY);
  }
  loaded = entry(); /* the library stays loaded: Python cannot be unloaded */
  return NR_OK;
}

nr_status nr_inproc_create(nr_py_backend **out, nr_error *err) {
  NR_TRY(load(err));
  static char types[4096];
  nr_layer_type_list(types, sizeof types);
  nr_inproc_host h = {NR_INPROC_ABI, nr_blob_reshape, nr_layer_add_param, types};
  return loaded->create(&h, out, err);
}

void nr_inproc_destroy(nr_py_backend *b) {
  if (b && loaded) loaded->destroy(b);
}
