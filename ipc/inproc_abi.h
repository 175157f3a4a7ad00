/* inproc_abi.h: the contract between ipc/inproc.c (linked into netrun) and
 * libnetrun-pyinproc.so (worker/inproc.c, which embeds Python). The library does not link
 * the engine: the few engine functions it needs come in this table, so netrun never links
 * libpython and the library never carries a second copy of the engine. */
#ifndef NR_INPROC_ABI_H
#define NR_INPROC_ABI_H

#include "blob.h"
#include "layer.h"
#include "pybind.h"
#include "pylayer.h"

#define NR_INPROC_ABI 2
#define NR_INPROC_ENTRY "nr_inproc_so_create"

typedef struct nr_inproc_host {
  int abi; /* NR_INPROC_ABI (first, whatever the version) */
  nr_pybind_engine engine;  /* the engine's blob_reshape, layer_add_param, blob_shape_str */
  const char *layer_types;  /* for caffe.layer_type_list() */
} nr_inproc_host;

/* Exported by the library. *out is new; destroy frees it (Python stays initialized: it
 * cannot be re-initialized safely with NumPy loaded). */
typedef struct nr_inproc_so {
  nr_status (*create)(const nr_inproc_host *h, nr_py_backend **out, nr_error *err);
  void (*destroy)(nr_py_backend *b);
} nr_inproc_so;

typedef const nr_inproc_so *(*nr_inproc_entry_fn)(void);

#endif
