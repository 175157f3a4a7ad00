#!/usr/bin/env bash
# End-to-end cases of Python layers through the netrun CLI, one per invocation:
# py_test.sh CASE. Each case runs `netrun train` / `netrun test` the way a user would and
# asserts on exit codes, messages, files and — after every run — that the run left no
# process behind (each run gets a session of its own; nothing of that session may survive
# it) and no new entry in /dev/shm.
set -u
: "${NETRUN:?}" "${NR_SOURCE_DIR:?}"
HERE="$NR_SOURCE_DIR/tests/e2e_py"
NETS="$HERE/nets"
# $WORK (the current directory), fail, run, check_clean, shm_list, session_left, expect_*
# shellcheck source=../lib/cli_test.sh
. "$NR_SOURCE_DIR/tests/lib/cli_test.sh"
# Python layers are found in the current directory (as Caffe's tutorial says).
cp "$HERE/layers/nr_e2e_layers.py" .

# fault_net PARAM_STR: net.prototxt + solver.prototxt for the Fault layer.
fault_net() {
  sed "s|@PARAM@|$1|" "$NETS/fault_net.prototxt" > net.prototxt
  cp "$NETS/fault_solver.prototxt" solver.prototxt
  rm -rf snap; mkdir -p snap
}

# Value of the last "NAME = V" line of a log file.
last_value() { grep -E "$1 = " "$2" | tail -n 1 | sed -E "s/.*$1 = ([-0-9.eE+]+).*/\1/"; }

# ---- faults outside the fault matrix ------------------------------------------------------
# The matrix itself ({raise, segfault, os._exit, hang, MemoryError, SystemExit, import error,
# syntax error, wrong class, absurd reshape} x {setup, reshape, forward, backward, data
# prefetch}) is tests/faults/fault_matrix.sh.

# fault_in KIND METHOD WANT... : runs the Fault layer with KIND in METHOD through train (and
# through test for setup/forward) and expects each WANT in the message.
fault_in() {
  local kind=$1 method=$2; shift 2
  local at=3
  [ "$method" = setup ] && at=0
  fault_net "$method:$kind:$at"
  run 1 "$NETRUN" train --solver solver.prototxt
  expect_err "netrun: error: "
  expect_err "layer 'faulty'"; expect_err "nr_e2e_layers.Fault.$method"
  expect_err "phase TRAIN"
  for w in "$@"; do expect_err "$w"; done
  if [ "$method" = setup ]; then
    reject_err "Snapshotting"
  else
    expect_err "iteration 3)"
    expect_err "Error at iteration 3: writing a snapshot"
    [ -f snap/f_iter_3.solverstate ] && [ -f snap/f_iter_3.caffemodel ] ||
      fail "$kind in $method: no snapshot at iteration 3 (snap/: $(ls snap))"
    expect_err "resume with --snapshot"
  fi
  [ "$method" = backward ] && return
  local tat=0
  [ "$method" = forward ] && tat=1
  sed -i "s|param_str: \"[^\"]*\"|param_str: \"$method:$kind:$tat\"|" net.prototxt
  run 1 "$NETRUN" test --model net.prototxt --iterations 3
  expect_err "layer 'faulty'"; expect_err "nr_e2e_layers.Fault.$method"
  expect_err "phase TEST"
  [ "$method" = forward ] && expect_err "test: batch 1: "
  for w in "$@"; do expect_err "$w"; done
}

# A layer that indexes a top it does not have (a wrong blob count).
case_wrong_counts() {
  local m
  for m in setup forward backward; do fault_in counts "$m" "IndexError" "Traceback (most recent call last)"; done
  # A layer that checks its counts, as the tutorial's layers do.
  cat > net.prototxt <<'P'
name: "counts"
layer { name: "data" type: "DummyData" top: "data" dummy_data_param { shape { dim: 2 dim: 3 } } }
layer { name: "two" type: "Python" bottom: "data" top: "out"
  python_param { module: "nr_e2e_layers" layer: "TwoInputs" } }
P
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "layer 'two'"; expect_err "nr_e2e_layers.TwoInputs.setup"; expect_err "phase TEST"
  expect_err "Exception: Need two inputs, got 1"
}

# A module or class that is not there: an error of setup, with the Python traceback (a
# module that fails to import or has a syntax error, a class that is not a Layer: the fault
# matrix).
bad_module() { # MODULE CLASS WANT...
  local mod=$1 cls=$2; shift 2
  fault_net x
  sed -i "s|module: \"nr_e2e_layers\" layer: \"Fault\"|module: \"$mod\" layer: \"$cls\"|" net.prototxt
  run 1 "$NETRUN" train --solver solver.prototxt
  expect_err "layer 'faulty'"; expect_err "$mod.$cls.setup"; expect_err "phase TRAIN"
  for w in "$@"; do expect_err "$w"; done
  run 1 "$NETRUN" test --model net.prototxt
  expect_err "layer 'faulty'"; expect_err "$mod.$cls.setup"; expect_err "phase TEST"
  for w in "$@"; do expect_err "$w"; done
}

case_bad_modules() {
  bad_module nr_e2e_layers NoSuchClass "NoSuchClass"
  bad_module nr_e2e_not_there Fault "ModuleNotFoundError" "nr_e2e_not_there"
}

# ---- training through faults --------------------------------------------------------------

# A failure mid-training writes a snapshot; resuming from it gives the weights of an
# undisturbed run.
case_resume_after_failure() {
  # the same net both times (a .caffemodel carries the prototxt): the marker file decides
  fault_net "backward:segv:3:$WORK/once"
  touch "$WORK/once"
  run 0 "$NETRUN" train --solver solver.prototxt
  cp snap/f_iter_6.caffemodel straight.caffemodel
  rm -rf snap "$WORK/once"; mkdir snap
  run 1 "$NETRUN" train --solver solver.prototxt
  expect_err "SIGSEGV"; expect_err "f_iter_3.solverstate (resume with --snapshot)"
  [ -f snap/f_iter_3.solverstate ] || fail "no snapshot at iteration 3"
  run 0 "$NETRUN" train --solver solver.prototxt --snapshot snap/f_iter_3.solverstate
  expect_err "Optimization Done."
  cmp -s straight.caffemodel snap/f_iter_6.caffemodel ||
    fail "resuming after the failure did not reproduce the undisturbed run's weights"
  # a failure in the TEST net's Python layer during a test pass: snapshot too
  cp "$NETS/scale_solver.prototxt" solver.prototxt
  sed 's|^layer { name: "loss"|layer { name: "f" type: "Python" bottom: "y" top: "yy" include { phase: TEST }\n  python_param { module: "nr_e2e_layers" layer: "Fault" param_str: "forward:raise:1" } }\n&|' \
    "$NETS/scale_net.prototxt" > net.prototxt
  rm -rf snap; mkdir snap
  run 1 "$NETRUN" train --solver solver.prototxt
  expect_err "nr_e2e_layers.Fault.forward (layer 'f', phase TEST, iteration 2) raised ValueError"
  expect_err "testing net #0"
  [ -f snap/s_iter_2.solverstate ] || fail "a failing test pass wrote no snapshot (snap/: $(ls snap))"
}

# --py-restarts recovers a one-time crash (segfault, exit, hang) in forward or backward and
# the trained weights equal an undisturbed run's, bit for bit.
case_restarts() {
  cp "$NETS/chain_solver.prototxt" solver.prototxt
  local i=0
  # fault in py1, workers: with 1 worker the restarted one also holds py2's parameter
  for fw in forward:segv:4/2 backward:exit:6/1 forward:hang:2/2 backward:raise:0/2; do
    local f=${fw%/*} nw=${fw#*/}
    i=$((i + 1))
    # the undisturbed run uses the same prototxt (a .caffemodel carries it), marker present
    sed -e "s|@PARAM1@|$f:$WORK/once$i|" "$NETS/chain_net.prototxt" > net.prototxt
    touch "$WORK/once$i"
    rm -rf snap; mkdir snap
    run 0 "$NETRUN" --py-workers "$nw" train --solver solver.prototxt
    cp snap/c_iter_10.caffemodel straight.caffemodel
    rm -rf snap "$WORK/once$i"; mkdir snap
    if [ "${f#*:}" = "raise:0" ]; then
      # an exception is the layer's answer, not a death: no restart, stop with a snapshot
      run 1 "$NETRUN" --py-workers "$nw" --py-restarts 2 train --solver solver.prototxt
      expect_err "raised ValueError"; reject_err "restarting"
      continue
    fi
    run 0 "$NETRUN" --py-workers "$nw" --py-restarts 1 --py-timeout 1 train --solver solver.prototxt
    expect_err "restarting Python worker"; expect_err "(restart 1 of 1)"
    expect_err "nr_e2e_layers.Fault.${f%%:*} (layer 'py1', phase TRAIN"
    expect_err "Optimization Done."
    cmp -s straight.caffemodel snap/c_iter_10.caffemodel ||
      fail "training through a restarted $f gave other weights than an undisturbed run"
  done
  # A second crash with one restart allowed stops the run.
  sed -e "s|@PARAM1@|forward:segv:4|" "$NETS/chain_net.prototxt" > net.prototxt
  sed -i 's|layer: "Fault" param_str: "none:none" } }|layer: "Fault" param_str: "forward:exit:5" } }|' net.prototxt
  rm -rf snap; mkdir snap
  run 1 "$NETRUN" --py-workers 4 --py-restarts 1 train --solver solver.prototxt
  expect_err "restarting Python worker"; expect_err "exited with status 7"
}

# --py-workers 0, 1, 2 and 4 train to the same weights and print the same outputs.
case_workers_identical() {
  sed -e "s|@PARAM1@|none:none|" "$NETS/chain_net.prototxt" > net.prototxt
  cp "$NETS/chain_solver.prototxt" solver.prototxt
  for n in 0 1 2 4; do
    rm -rf snap; mkdir snap
    run 0 "$NETRUN" --py-workers $n train --solver solver.prototxt
    cp snap/c_iter_10.caffemodel w$n.caffemodel
    grep -E 'loss = |accuracy = ' err | sed -E 's/^[^]]*\] //; s/\([0-9.e+-]+ iter\/s.*\)//' > log$n
    run 0 "$NETRUN" --py-workers $n test --model net.prototxt --weights w$n.caffemodel --iterations 2
    grep -E 'Batch|loss = |accuracy = ' err | sed -E 's/^[^]]*\] //' > test$n
  done
  for n in 1 2 4; do
    cmp -s w0.caffemodel w$n.caffemodel || fail "--py-workers $n trained other weights than --py-workers 0"
    cmp -s log0 log$n || fail "--py-workers $n printed other losses: $(diff log0 log$n | head -5)"
    cmp -s test0 test$n || fail "--py-workers $n tested differently: $(diff test0 test$n | head -5)"
  done
  [ -s log0 ] && [ -s test0 ] || fail "no loss lines to compare"
}

# Python-layer parameters: saved by layer name, loaded by --weights, updated by the solver,
# shared with the test net (whose worker sees the trained value).
case_learnable_params() {
  cp "$NETS/scale_net.prototxt" net.prototxt
  cp "$NETS/scale_solver.prototxt" solver.prototxt
  for n in 0 1 2; do
    rm -rf snap; mkdir snap
    run 0 "$NETRUN" --py-workers $n train --solver solver.prototxt
    cp err train$n.log
    # test passes at iterations 0, 2, 4, 6: w starts at 2 and must move each time
    local ws; ws=$(grep -E 'Test net output #[0-9]+: w = ' train$n.log | sed -E 's/.*w = //')
    [ "$(echo "$ws" | wc -l)" = 4 ] || fail "--py-workers $n: expected 4 test passes, got: $ws"
    [ "$(echo "$ws" | head -n 1)" = 2 ] || fail "--py-workers $n: the test net's w starts at $(echo "$ws" | head -n 1), not 2"
    [ "$(echo "$ws" | sort -u | wc -l)" = 4 ] ||
      fail "--py-workers $n: the TEST net's worker did not see w change during training: $ws"
    local final; final=$(echo "$ws" | tail -n 1)
    awk -v w="$final" 'BEGIN { exit !(w > 2.6 && w < 3) }' || fail "w did not move towards 3: $final"
    [ -f snap/s_iter_6.caffemodel ] || { fail "no snapshot"; continue; }
    grep -qa scale snap/s_iter_6.caffemodel || fail "the caffemodel has no layer 'scale'"
    # loaded back by --weights, by layer name: the test net reports the trained w
    run 0 "$NETRUN" --py-workers $n test --model net.prototxt --weights snap/s_iter_6.caffemodel --iterations 1
    expect_err "] w = $final"
    run 0 "$NETRUN" --py-workers $n test --model net.prototxt --iterations 1
    expect_err "] w = 2"
    cp snap/s_iter_6.caffemodel s$n.caffemodel
    # fine-tuning from it: training starts from the trained w
    rm -rf snap; mkdir snap
    run 0 "$NETRUN" --py-workers $n train --solver solver.prototxt --weights s$n.caffemodel
    [ "$(grep -E 'Test net output #[0-9]+: w = ' err | head -n 1 | sed -E 's/.*w = //')" = "$final" ] ||
      fail "--weights: training did not start from the trained w $final"
  done
  cmp -s s0.caffemodel s1.caffemodel || fail "parameters differ between --py-workers 0 and 1"
  cmp -s s0.caffemodel s2.caffemodel || fail "parameters differ between --py-workers 0 and 2"
}

# ---- processes and signals ----------------------------------------------------------------

slow_net() { # DELAY
  sed "s|@DELAY@|$1|" "$NETS/slow_net.prototxt" > net.prototxt
  cp "$NETS/slow_solver.prototxt" solver.prototxt
  rm -rf snap; mkdir snap
}

# wait_for FILE PATTERN SECONDS: until FILE contains PATTERN.
wait_for() {
  local i
  for ((i = 0; i < $3 * 20; i++)); do
    grep -qF -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# kill -9 of the core during training: its workers are gone within 1 s.
case_kill_core() {
  slow_net 0.01
  local before; before=$(shm_list)
  setsid -w "$NETRUN" train --solver solver.prototxt >"$WORK/out" 2>"$WORK/err" &
  local core=$!
  wait_for "$WORK/err" "Iteration 5 " 30 || fail "training did not reach iteration 5"
  local pids; pids=$(workers_of "$core")
  # its two Python layers share one worker (a pool sized by its layers)
  [ "$(echo "$pids" | wc -w)" = 1 ] || fail "expected 1 worker, found: $pids"
  kill -9 "$core"
  wait "$core" 2>/dev/null
  local t0; t0=$(date +%s%N)
  local alive=x
  while [ -n "$alive" ] && [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 1000 ]; do
    alive=""
    for p in $pids; do
      [ -d /proc/$p ] && ! grep -q '^State:.*Z' /proc/$p/status 2>/dev/null && alive="$alive $p"
    done
    [ -n "$alive" ] && sleep 0.02
  done
  [ -z "$alive" ] || fail "workers$alive still alive 1 s after kill -9 of the core"
  check_clean "$core" "$before" "killed netrun train"
}

# Ctrl-C (SIGINT to the whole foreground group, as a terminal sends it) stops training after
# a snapshot; exit 0; no worker left; resuming continues from there.
case_ctrl_c() {
  slow_net 0.01
  local before; before=$(shm_list)
  setsid -w "$NETRUN" train --solver solver.prototxt >"$WORK/out" 2>"$WORK/err" &
  local core=$!
  wait_for "$WORK/err" "Iteration 5 " 30 || fail "training did not reach iteration 5"
  kill -INT -- -"$core"
  wait "$core"
  local got=$?
  [ "$got" = 0 ] || fail "Ctrl-C: exit status $got, expected 0: $(tail -c 2000 "$WORK/err")"
  check_clean "$core" "$before" "interrupted netrun train"
  expect_err "Optimization stopped early."
  local state; state=$(ls snap/*.solverstate 2>/dev/null | head -n 1)
  [ -n "$state" ] || { fail "Ctrl-C wrote no snapshot: $(tail -c 2000 "$WORK/err")"; return; }
  reject_err "was killed"; reject_err "error"
  local it; it=$(echo "$state" | sed -E 's/.*_iter_([0-9]+)\.solverstate/\1/')
  sed -i 's/max_iter: 100000/max_iter: '"$((it + 3))"'/' solver.prototxt
  run 0 "$NETRUN" train --solver solver.prototxt --snapshot "$state"
  expect_err "Optimization Done."; expect_err "Iteration $((it + 2)) "
  # `netrun test` keeps the default SIGINT action: Ctrl-C ends it, and its workers follow
  # within 1 s. (A shell starts background jobs with SIGINT ignored: restore the default.)
  before=$(shm_list)
  setsid -w /usr/bin/python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$NETRUN" test --verbose --model net.prototxt --iterations 100000 \
    >"$WORK/out" 2>"$WORK/err" &
  core=$!
  wait_for "$WORK/err" "Batch 5," 30 || fail "testing did not reach batch 5"
  kill -INT -- -"$core"
  wait "$core"
  got=$?
  [ "$got" = 130 ] || fail "Ctrl-C of netrun test: exit status $got, expected 130 (SIGINT)"
  local i
  for ((i = 0; i < 50; i++)); do [ -z "$(session_left "$core")" ] && break; sleep 0.02; done
  check_clean "$core" "$before" "interrupted netrun test"
}

# print() in layers on several workers reaches the output whole, one line per print.
case_print_whole() {
  sed "s|@DELAY@|0|" "$NETS/slow_net.prototxt" > net.prototxt
  sed -i 's|layer: "Slow" param_str: "0"|layer: "Printer" param_str: "B"|; s|layer: "Slow" param_str: "[0-9.]*"|layer: "Printer" param_str: "A"|' net.prototxt
  run 0 "$NETRUN" --py-workers 2 test --model net.prototxt --iterations 5
  local n; n=$(grep -c '^PRINT [AB] [0-9]* x\{2000\} END$' out)
  [ "$n" = 200 ] || fail "expected 200 whole printed lines, got $n (of $(wc -l < out) lines)"
  # through a pipe as well, stdout and stderr together
  setsid -w bash -c '"$0" --py-workers 2 test --model net.prototxt --iterations 5 2>&1 | cat > piped' "$NETRUN"
  n=$(grep -c '^PRINT [AB] [0-9]* x\{2000\} END$' piped)
  [ "$n" = 200 ] || fail "through a pipe: expected 200 whole printed lines, got $n"
  grep -v '^PRINT [AB] [0-9]* x\{2000\} END$' piped | grep -q 'PRINT' &&
    fail "a printed line was broken: $(grep -v '^PRINT [AB] [0-9]* x\{2000\} END$' piped | grep PRINT | head -c 300)"
}

# Modules are found on PYTHONPATH, in the current directory, and next to the prototxt.
case_module_search() {
  rm -f nr_e2e_layers.py
  mkdir -p a b c
  for d in a b c; do
    sed "s/class Fault(caffe.Layer):/FROM = '$d'\n\nclass Fault(caffe.Layer):/" "$HERE/layers/nr_e2e_layers.py" > $d/nr_e2e_mod_$d.py
  done
  fault_net none:none
  for d in a b c; do
    sed "s|module: \"nr_e2e_layers\"|module: \"nr_e2e_mod_$d\"|" net.prototxt > c/net_$d.prototxt
  done
  # PYTHONPATH
  run 0 env PYTHONPATH="$WORK/a" "$NETRUN" test --model c/net_a.prototxt --iterations 1
  # the current directory
  (cd b && run 0 "$NETRUN" test --model ../c/net_b.prototxt --iterations 1; exit "$failures") ||
    failures=$((failures + 1))
  # the prototxt's directory
  run 0 "$NETRUN" test --model c/net_c.prototxt --iterations 1
  # and not elsewhere
  run 1 "$NETRUN" test --model c/net_a.prototxt --iterations 1
  expect_err "ModuleNotFoundError"; expect_err "nr_e2e_mod_a"
  # a file path instead of a module name is refused with a hint
  sed "s|module: \"nr_e2e_layers\"|module: \"c/nr_e2e_mod_c.py\"|" net.prototxt > path.prototxt
  run 1 "$NETRUN" test --model path.prototxt --iterations 1
  expect_err "module: 'nr_e2e_mod_c'"
}

# --py-max-blob-bytes: a Python layer that reshapes a top past the limit gets an exception
# naming the blob, its size and the flag (in prefetched data layers and in synchronous ones);
# under the limit the same net runs.
case_max_blob_bytes() {
  cat > net.prototxt <<'P'
name: "sized"
layer { name: "big" type: "Python" top: "x"
  python_param { module: "nr_e2e_layers" layer: "Sized" param_str: "1000,1000" } }
layer { name: "quiet" type: "Silence" bottom: "x" }
P
  for pf in 3 0; do
    run 1 "$NETRUN" --py-prefetch "$pf" --py-max-blob-bytes 1000000 test --model net.prototxt --iterations 1
    expect_err "layer 'big'"; expect_err "nr_e2e_layers.Sized.reshape"
    expect_err "blob 'x' of 4000000 bytes is too large (the limit is 1000000 bytes, --py-max-blob-bytes)"
    run 0 "$NETRUN" --py-prefetch "$pf" --py-max-blob-bytes 4000000 test --model net.prototxt --iterations 1
    reject_err "too large"
  done
  run 2 "$NETRUN" --py-max-blob-bytes lots test --model net.prototxt
  expect_err "--py-max-blob-bytes"
}

# ---- the tutorial examples -----------------------------------------------------------------

case_tutorial() {
  local ex="$NR_SOURCE_DIR/examples/tutorial"
  cp "$ex"/*.py "$ex"/*.prototxt .
  /usr/bin/python3 "$ex/make_images.py" images 48 >/dev/null || fail "make_images.py failed"
  rm -rf snap; mkdir -p snap
  run 0 "$NETRUN" train --solver tutorial_solver.prototxt
  cp err train.log
  # measure layer: TRAIN outputs accuracy, TP, TN, FP, FN; TEST accuracy, FPR, FNR
  for o in accuracy TP TN FP FN; do
    grep -qE "Train net output #[0-9]+: $o = " train.log || fail "no train output $o"
  done
  for o in accuracy FPR FNR; do
    grep -qE "Test net output #[0-9]+: $o = " train.log || fail "no test output $o"
  done
  expect_err "Optimization Done."
  local acc; acc=$(grep -E 'Test net output #[0-9]+: accuracy = ' train.log | tail -n 1 | sed -E 's/.*= //')
  awk -v a="$acc" 'BEGIN { exit !(a >= 0.9) }' || fail "the tutorial net did not learn: test accuracy $acc"
  local m; m=$(ls snap/*.caffemodel | tail -n 1)
  run 0 "$NETRUN" test --model tutorial_net.prototxt --weights "$m" --iterations 4
  expect_err "] accuracy = "; expect_err "] FPR = "; expect_err "] FNR = "
  # the TRAIN counts add up to the images seen
  local tp tn fp fn
  tp=$(last_value TP train.log); tn=$(last_value TN train.log)
  fp=$(last_value FP train.log); fn=$(last_value FN train.log)
  awk -v a="$tp" -v b="$tn" -v c="$fp" -v d="$fn" 'BEGIN { exit !(a + b + c + d == 16) }' ||
    fail "TP+TN+FP+FN = $tp+$tn+$fp+$fn, expected the batch size 16"
}

"case_$1"
if [ "$failures" -gt 0 ]; then echo "$1: $failures failure(s)" >&2; exit 1; fi
echo "$1: ok"
