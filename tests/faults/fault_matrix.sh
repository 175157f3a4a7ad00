#!/usr/bin/env bash
# The fault matrix of Python layers through the netrun CLI: fault_matrix.sh KIND runs every
# cell of one kind (ctest fault_matrix_KIND; `ctest -R fault_matrix` is the whole matrix).
#
# Kinds (what the layer does; fm_layers.fault() has them all):
#   raise           raise ValueError
#   segfault        ctypes.string_at(0)
#   os_exit         os._exit(7)
#   hang            a busy loop; the runs use --py-timeout 0.5
#   memory_error    np.empty of 4 PiB: a real failed allocation, NumPy's MemoryError
#   sysexit         sys.exit(3)
#   import_error    a module that is not installed
#   syntax_error    a module with a syntax error
#   wrong_class     a class that is not what the code needs
#   absurd_reshape  top[0] reshaped to 2^60 elements (the core refuses: ValueError)
# Columns (where it happens):
#   setup, reshape, forward, backward  in fm_layers.Fault, a Python layer (y = 10 x) in a
#            small regression net, on a later call: iteration 3 of `netrun train`, batch 1 of
#            `netrun test` (setup: when the net is built)
#   prefetch in fm_layers.Source, a Python data layer (no bottoms) with replicas: 2 and
#            --py-workers 2, in the forward of batch 5: replica 1 makes it on the second
#            worker, in a prefetch thread, ahead of the net (reported at iteration / test
#            batch 5, when the net needs the batch)
# The module-level kinds (import, syntax, wrong class) mean in each column what they mean in
# real code:
#   setup    the layer's own module or class: python_param.module names a module whose
#            import fails (fm_import_layer: `import fm_no_such_module` at its top) or that has
#            a syntax error (fm_syntax_layer), or python_param.layer names a class that is
#            not a caffe.Layer (fm_layers.NotALayer)
#   reshape, forward, backward  a lazy import inside the method, of a module that is not
#            installed / of a helper module next to the layer that has a syntax error
#            (fm_syntax_helper); wrong class: the method builds its helper from the class
#            name in param_str (a config typo naming fm_layers.Source, a Layer, instead of
#            the helper fm_layers.Scaler) and calls it: TypeError, not callable
#   prefetch the same, in the setup of replica 1 (the one set up on the second worker, after
#            replica 0 set up fine): module-level code runs once per instance, at setup
# Each cell runs `netrun train` and — but for backward, which `netrun test` never calls —
# `netrun test`, each as the leader of a new session, and asserts:
#   - exit status 1 and the message: "netrun: error:", the layer's name,
#     module.Class.method, the phase, the iteration (train, after setup) or "test: batch N:",
#     the exception type and text with a Python traceback that reaches the fault, or the
#     signal / exit status / timeout with the faulthandler stack (a death) and the worker
#     (worker 1 in the prefetch column);
#   - train after setup: a snapshot at the failed iteration, named in the message; in setup
#     none;
#   - the time from start to exit: at most FM_MAX_MS (default 10000) ms, for hang at most
#     FM_HANG_MAX_MS (default 6500: the 0.5 s timeout + 6 s). Measured on 2 shared cores
#     with ctest -j2: a run takes 0.1-0.6 s plain (hang 0.6-1.1 s) and 0.2-1.3 s under ASan,
#     where workers start slower (hang 0.8-1.8 s), the high ends at load 7: the bounds
#     leave room for a slower CI machine, and still catch a report that waits on something;
#   - no new /dev/shm entry, nothing of the run's session left, no sanitizer report.
set -u
: "${NETRUN:?}" "${NR_SOURCE_DIR:?}"
HERE="$NR_SOURCE_DIR/tests/faults"
# shellcheck source=../lib/cli_test.sh
. "$NR_SOURCE_DIR/tests/lib/cli_test.sh"
kind=${1:?usage: fault_matrix.sh KIND}

# Python modules are found in the current directory. The broken ones are written here.
cp "$HERE/fm_layers.py" .
printf 'import numpy\nimport fm_no_such_module\n\n\nclass Layer(object):\n    pass\n' > fm_import_layer.py
printf 'import caffe\n\n\nclass L(caffe.Layer):\n    def setup(self, bottom, top)\n        pass\n' > fm_syntax_layer.py
printf 'def scale(x)\n    return 10 * x\n' > fm_syntax_helper.py

cat > solver.prototxt <<'S'
net: "net.prototxt"
base_lr: 0.001 momentum: 0.9 lr_policy: "fixed"
display: 1 max_iter: 8
snapshot_prefix: "snap/f"
random_seed: 5
S

# fault_net MODULE CLASS PARAM / data_net PARAM: the cell's net.prototxt.
fault_net() {
  cat > net.prototxt <<P
name: "fm_regression"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 3 }
    data_filler { type: "constant" value: 0.5 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "faulty" type: "Python" bottom: "ip" top: "py"
  python_param { module: "$1" layer: "$2" param_str: "$3" } }
layer { name: "loss" type: "EuclideanLoss" bottom: "py" bottom: "label" top: "loss" }
P
}
data_net() {
  cat > net.prototxt <<P
name: "fm_data"
layer { name: "src" type: "Python" top: "data" top: "label"
  python_param { module: "fm_layers" layer: "Source" param_str: "$1" replicas: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "label" top: "loss" }
P
}

# What every cell of this kind prints (module-level kinds: in a method; setup: see below),
# and whether it is a worker's death.
TB="Traceback (most recent call last)"
FH="Last Python stack (faulthandler)"
death=0 helper="" max_ms=${FM_MAX_MS:-10000} flags=()
case $kind in
  raise) want=("raised ValueError: fault matrix failure" "$TB" ", in fault") ;;
  segfault) death=1; want=("was killed by signal SIGSEGV (Segmentation fault)" "$FH" " in fault") ;;
  os_exit) death=1; want=("exited with status 7") ;;
  hang)
    death=1; max_ms=${FM_HANG_MAX_MS:-6500}; flags=(--py-timeout 0.5)
    want=("did not return within 0.5 s (--py-timeout)" "was killed" "$FH" " in fault") ;;
  memory_error)
    want=("MemoryError: Unable to allocate 4.00 PiB for an array with shape (1125899906842624,)"
          "$TB" ", in fault") ;;
  sysexit) want=("raised SystemExit: SystemExit(3) raised in a layer (a layer cannot end netrun)"
                 "$TB" ", in fault") ;;
  import_error)
    want=("raised ModuleNotFoundError: No module named 'fm_no_such_module'" "$TB" ", in fault") ;;
  syntax_error)
    want=("raised SyntaxError: expected ':' (fm_syntax_helper.py, line 1)" "$TB" ", in fault") ;;
  wrong_class)
    helper=":Source" want=("raised TypeError: 'Source' object is not callable" "$TB" ", in fault") ;;
  absurd_reshape)
    want=("of 4611686018427387904 bytes is too large (the limit is 4294967296 bytes,"
          "--py-max-blob-bytes)" "$TB" ", in fault") ;;
  *) echo "unknown kind '$kind'" >&2; exit 2 ;;
esac

# check_run PHASE WHERE CELL: the run that just ended failed in the right place, soon
# enough. WHERE: "iteration N" (train after setup), "batch N" (test after setup) or "".
check_run() {
  local phase=$1 where=$2 cell=$3
  [ "$run_ms" -le "$max_ms" ] || fail "$cell: took $run_ms ms to report, the bound is $max_ms ms"
  echo "$cell: $run_ms ms" >&2
  expect_err "netrun: error: "
  expect_err "'$layer' (Python)"
  case $where in
    iteration*)
      expect_err "$qual (layer '$layer', phase $phase, $where)"
      local n=${where#iteration }
      expect_err "Error at iteration $n: writing a snapshot"
      expect_err "training state at iteration $n saved in snap/f_iter_$n.solverstate (resume with --snapshot)"
      [ -f "snap/f_iter_$n.solverstate" ] && [ -f "snap/f_iter_$n.caffemodel" ] ||
        fail "$cell: no snapshot at iteration $n (snap/: $(ls snap))" ;;
    batch*)
      expect_err "netrun: error: test: $where: "
      expect_err "$qual (layer '$layer', phase $phase)" ;;
    *)
      expect_err "$qual (layer '$layer', phase $phase"
      reject_err "Snapshotting"; reject_err "saved in snap/" ;;
  esac
  local w
  for w in "${cwant[@]}"; do expect_err "$w"; done
}

# cell COLUMN: one cell of the matrix.
cell() {
  local col=$1 layer=faulty qual="fm_layers.Fault.$col" nw=() at_train=3 at_test=1
  local where_train="iteration 3" where_test="batch 1" cwant=("${want[@]}")
  local testing=1 worker=0
  case $col in
    setup) where_train="" where_test="" at_train=0 at_test=0 ;;
    reshape) at_train=4 at_test=2 ;; # call 0 is at setup; forward n calls reshape n + 1
    backward) testing=0 ;;
    prefetch)
      layer=src qual="fm_layers.Source.forward" nw=(--py-workers 2) worker=1
      where_train="iteration 5" where_test="batch 5" ;;
  esac
  [ "$death" = 1 ] && cwant+=("worker $worker (pid")
  # the module-level kinds at setup: the layer's own module or class
  local mod=fm_layers cls=Fault
  if [ "$col" = setup ]; then
    case $kind in
      import_error) mod=fm_import_layer cls=Layer
        cwant=("raised ModuleNotFoundError: No module named 'fm_no_such_module'" "$TB"
               "fm_import_layer.py\", line 2") ;;
      syntax_error) mod=fm_syntax_layer cls=L
        cwant=("raised SyntaxError: expected ':' (fm_syntax_layer.py, line 5)" "$TB") ;;
      wrong_class) cls=NotALayer
        cwant=("raised TypeError: fm_layers.NotALayer is not a subclass of caffe.Layer" "$TB") ;;
    esac
    qual="$mod.$cls.setup"
  fi
  if [ "$col" = prefetch ]; then
    case $kind in
      import_error | syntax_error | wrong_class)
        qual="replica 1 of 2: fm_layers.Source.setup" where_train="" where_test="" ;;
    esac
  fi
  local c="$kind x $col"
  # train
  rm -rf snap; mkdir snap
  if [ "$col" = prefetch ]; then data_net "$kind$helper"
  else fault_net "$mod" "$cls" "$col:$kind:$at_train$helper"; fi
  run 1 "$NETRUN" "${nw[@]}" "${flags[@]}" train --solver solver.prototxt
  check_run TRAIN "$where_train" "$c, train"
  [ "$testing" = 1 ] || return 0
  # test
  [ "$col" = prefetch ] || fault_net "$mod" "$cls" "$col:$kind:$at_test$helper"
  run 1 "$NETRUN" "${nw[@]}" "${flags[@]}" test --model net.prototxt --iterations 8
  check_run TEST "$where_test" "$c, test"
}

for col in setup reshape forward backward prefetch; do cell "$col"; done
if [ "$failures" -gt 0 ]; then echo "fault_matrix $kind: $failures failure(s)" >&2; exit 1; fi
echo "fault_matrix $kind: ok"
