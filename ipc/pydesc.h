/* pydesc.h: how errors name a Python layer call, shared by the pool and the in-process
 * backend so both say exactly the same thing:
 *   "pyloss.EuclideanLoss.forward (layer 'loss', phase TRAIN, iteration 12)" */
#ifndef NR_PYDESC_H
#define NR_PYDESC_H

#include <stdio.h>

#include "layer.h"
#include "pylayer.h"

static inline void nr__py_describe(const nr_layer *l, int m, char *buf, size_t len) {
  const Caffe__PythonParameter *pp = l->param ? l->param->python_param : NULL;
  char iter[48] = "";
  if (l->ctx && l->ctx->iter) snprintf(iter, sizeof iter, ", iteration %lld", (long long)*l->ctx->iter);
  snprintf(buf, len, "%s.%s.%s (layer '%s', phase %s%s)",
           pp && pp->module ? pp->module : "?", pp && pp->layer ? pp->layer : "?",
           nr_py_method_name((nr_py_method)m), l->name ? l->name : "",
           l->phase == NR_TEST ? "TEST" : "TRAIN", iter);
}

#endif
