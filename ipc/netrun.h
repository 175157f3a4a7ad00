/* netrun.h: the engine library (libnetrun), one header for a program that uses it.
 *
 * The floors, each with its own header (read them for the rules of each type):
 *   proto   nr_status.h (errors), textformat.h (prototxt), binary.h (.caffemodel /
 *           .solverstate), upgrade.h (old formats), load.h (file loaders: read, parse,
 *           upgrade), caffe.pb-c.h (the schema)
 *   core    blob.h, layer.h, net.h (build, forward, backward), filler.h, weights.h,
 *           solver.h (train, test, snapshot, restore), pylayer.h (the Python-layer hook)
 *   ipc     pool.h (Python layers in worker processes), runtime.h (pool or in process)
 *
 * A program that trains: load a SolverParameter (nr_proto_load_solver_text), start a runtime
 * if its nets have Python layers (nr_runtime_create), create a solver with the runtime's
 * backend and allocator (nr_solver_create), nr_solver_step / nr_solver_solve, then destroy
 * the solver before the runtime. Every fallible call returns an nr_status and fills an
 * nr_error whose message names where and what; nothing in the library exits or aborts.
 * Include it as <netrun/netrun.h>; build with `pkg-config --cflags --libs netrun` (add
 * --static for libnetrun.a).
 */
#ifndef NR_NETRUN_H
#define NR_NETRUN_H

#include "binary.h"
#include "blob.h"
#include "filler.h"
#include "layer.h"
#include "load.h"
#include "net.h"
#include "nr_status.h"
#include "pool.h"
#include "pylayer.h"
#include "runtime.h"
#include "solver.h"
#include "textformat.h"
#include "upgrade.h"
#include "weights.h"

#endif
