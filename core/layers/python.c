/* python.c: the `Python` layer type (Caffe's PythonLayer).
 *
 * Each of setup / reshape / forward / backward becomes one call on the net's Python
 * backend (core/pylayer.h): the worker pool (ipc/pool.h) or the in-process embedding
 * (--py-workers 0). The core never embeds Python itself. Bottom/top counts are free, as in
 * Caffe; python_param { module layer } is required. No default loss_weight (Caffe's
 * Python loss layers need an explicit `loss_weight: 1`).
 */
#include <string.h>

#include "layer.h"
#include "pylayer.h"

static nr_status py_call(nr_layer *l, nr_py_method m, nr_error *err) {
  const Caffe__PythonParameter *pp = l->param->python_param;
  if (!pp || !pp->module || !*pp->module || !pp->layer || !*pp->layer)
    return nr_err_set(err, NR_ERR_INPUT,
                      "a Python layer needs python_param { module: \"<module name>\" layer: "
                      "\"<class name>\" }");
  if (!l->ctx || !l->ctx->py || !l->ctx->py->call)
    return nr_err_set(err, NR_ERR_INPUT,
                      "no Python backend to run %s.%s: Python layers run in netrun-worker "
                      "processes (--py-workers N, the default) or in process "
                      "(--py-workers 0); this net was built without either",
                      pp->module, pp->layer);
  return l->ctx->py->call(l->ctx->py->ctx, l, m, err);
}

static nr_status python_setup(nr_layer *l, nr_error *err) { return py_call(l, NR_PY_SETUP, err); }
static nr_status python_reshape(nr_layer *l, nr_error *err) {
  return py_call(l, NR_PY_RESHAPE, err);
}
static nr_status python_forward(nr_layer *l, nr_error *err) {
  return py_call(l, NR_PY_FORWARD, err);
}
static nr_status python_backward(nr_layer *l, nr_error *err) {
  return py_call(l, NR_PY_BACKWARD, err);
}

static void python_destroy(nr_layer *l) {
  if (l->priv && l->ctx && l->ctx->py && l->ctx->py->release)
    l->ctx->py->release(l->ctx->py->ctx, l);
}

const nr_layer_type nr_layer_python = {
    .name = "Python",
    .min_bottoms = 0,
    .max_bottoms = -1,
    .min_tops = 0,
    .max_tops = -1,
    .setup = python_setup,
    .reshape = python_reshape,
    .forward = python_forward,
    .backward = python_backward,
    .destroy = python_destroy,
};
