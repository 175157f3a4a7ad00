/* errors.c: an engine status as a Python exception, with the CLI's message (ext.h); the
 * exception classes are made when the module is imported (module.c). */
#include "ext.h"

PyObject *ext_LayerError, *ext_LayerRaised, *ext_WorkerError;

PyObject *ext_raise(nr_status s, const nr_error *err) {
  PyObject *cls;
  switch (s) {
    case NR_ERR_PYTHON: cls = ext_LayerRaised; break;
    case NR_ERR_WORKER: cls = ext_WorkerError; break;
    case NR_ERR_NOMEM: cls = PyExc_MemoryError; break;
    case NR_ERR_IO: cls = PyExc_OSError; break;
    case NR_ERR_INTERRUPT: cls = PyExc_KeyboardInterrupt; break;
    case NR_ERR_INPUT: cls = PyExc_ValueError; break;
    default: cls = PyExc_RuntimeError; break;
  }
  PyErr_SetString(cls, err && err->msg[0] ? err->msg : nr_status_str(s));
  return NULL;
}
