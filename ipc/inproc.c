/* inproc.c: --py-workers 0. Finds libnetrun-pyinproc.so and hands it the few engine
 * functions it needs (inproc_abi.h), so netrun itself never links libpython. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inproc_abi.h"
#include "locate.h"
#include "pool.h"

#define NR_INPROC_LIB "libnetrun-pyinproc.so"

static const nr_inproc_so *loaded;

void nr_inproc_use(const nr_inproc_so *so) { loaded = so; }

static nr_status load(nr_error *err) {
  if (loaded) return NR_OK;
  const char *const where[] = {"$EXE/" NR_INPROC_LIB, "$EXE/../lib/netrun/" NR_INPROC_LIB,
                               "$LIB/netrun/" NR_INPROC_LIB, NR_INPROC_BUILD_PATH,
                               NR_INPROC_INSTALL_PATH};
  char *path = nr__locate(where, 5, F_OK);
  if (!path)
    return nr_err_set(err, NR_ERR_IO, "--py-workers 0 needs %s (next to this program, in "
                      "../lib/netrun, the build tree or " NR_INPROC_INSTALL_PATH "): not "
                      "found", NR_INPROC_LIB);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    nr_status s = nr_err_set(err, NR_ERR_IO, "--py-workers 0: cannot load %s: %s", path,
                             dlerror());
    free(path);
    return s;
  }
  free(path);
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
  nr_inproc_host h = {NR_INPROC_ABI, {nr_blob_reshape, nr_layer_add_param, nr_blob_shape_str},
                      types};
  return loaded->create(&h, out, err);
}

void nr_inproc_destroy(nr_py_backend *b) {
  if (b && loaded) loaded->destroy(b);
}
