#!/usr/bin/env bash
# Hostile Python layers and bad input through the netrun CLI, one case per invocation:
# hostile_test.sh CASE. Each case runs netrun as a careless or hostile user would and
# asserts what the user sees (exit status, message), that the run left no process behind
# and nothing in /dev/shm (tests/lib/cli_test.sh's run), and, under ASan, no report.
set -u
: "${NETRUN:?}" "${NR_SOURCE_DIR:?}"
HERE="$NR_SOURCE_DIR/tests/hostile"
# shellcheck source=../lib/cli_test.sh
. "$NR_SOURCE_DIR/tests/lib/cli_test.sh"
cp "$HERE/nr_hostile_layers.py" .

# py_net LAYER [PARAM_STR]: net.prototxt of one Python layer with no bottom and one top.
py_net() {
  cat > net.prototxt <<P
name: "hostile"
layer { name: "h" type: "Python" top: "out"
        python_param { module: "nr_hostile_layers" layer: "$1" param_str: "${2:-}" } }
P
}

# netrun test must size every score from the current shapes: an output that grows between
# batches is refused with its name and both sizes, never read past the end (ASan/valgrind
# would report the over-read; before, the run printed garbage means and exited 0).
case_growing_output() {
  py_net GrowingOutput
  for w in 1 0; do
    run 1 "$NETRUN" --py-workers $w test --model net.prototxt --iterations 3
    expect_err "output 'out' has 3 elements in batch 1 but had 2 in batch 0"
    reject_err "e-310"
  done
}

# Every numeric flag is range-checked and parsed strictly: a usage error (exit 2) naming the
# flag; an infinite or huge timeout means no limit (it overflowed to a negative deadline and
# every worker was killed during setup, blamed on the worker).
case_flags() {
  py_net Ones
  local bad
  for bad in "--py-workers -5" "--py-workers 65" "--py-timeout -1" "--py-timeout nan" \
             "--py-restarts -1" "--py-prefetch -1" "--py-max-blob-bytes -1" \
             "--py-max-blob-bytes 1.5" "--py-workers 2x" "--py-timeout 1s" \
             "--py-replicas h" "--py-replicas h=0" "--py-replicas =2" "--py-replicas h=2," \
             "--py-replicas h=2x"; do
    # shellcheck disable=SC2086
    run 2 "$NETRUN" $bad test --model net.prototxt --iterations 1
    expect_err "bad value '${bad#* }' for ${bad%% *}"
    # after the command too
    # shellcheck disable=SC2086
    run 2 "$NETRUN" test --model net.prototxt --iterations 1 $bad
    expect_err "bad value '${bad#* }' for ${bad%% *}"
  done
  for t in inf 1e300 0; do
    run 0 "$NETRUN" --py-timeout $t test --model net.prototxt --iterations 2
    expect_err "out = 1"; reject_err "killed"
  done
}

# A non-numeric value assigned to a blob raises TypeError in the layer (NumPy stored NaN and
# the run exited 0); a scalar assigned to a top never reshaped names the cause.
case_assign_non_numeric() {
  local v
  for v in none str obj; do
    py_net AssignNone $v
    for w in 1 0; do
      run 1 "$NETRUN" --py-workers $w test --model net.prototxt --iterations 1
      expect_err "TypeError: cannot assign a value of type"; expect_err "to blob data"
      expect_err "nr_hostile_layers.AssignNone.forward"
    done
  done
  py_net ScalarToUnshaped
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "the blob has no shape yet"; reject_err "does not broadcast"
}

# An exception class with a 2 000-character name: the layer's message arrives, the name cut.
case_long_exception_name() {
  py_net LongExceptionName
  for w in 1 0; do
    run 1 "$NETRUN" --py-workers $w test --model net.prototxt --iterations 1
    expect_err "the layer said why"; expect_err "EEEEEEEE"
    reject_err "invalid"; reject_err "killed"
  done
}

# lenet_solver MAX_ITER: the e2e DummyData LeNet (no Python) with snapshots under snap/.
lenet_solver() {
  cp "$NR_SOURCE_DIR"/tests/e2e/nets/lenet_dummy_*.prototxt .
  sed -i "s/^max_iter: .*/max_iter: $1/" lenet_dummy_solver.prototxt
  mkdir -p snap
}

# kill -9 during a snapshot leaves <prefix>_iter_N.caffemodel.tmp.PID: the next run with that
# prefix removes it (and says so); a temp file of a live process is left alone.
case_stale_snapshot_temps() {
  lenet_solver 20
  (exit 0) & local dead=$!; wait $dead   # a pid that has just ended
  echo partial > snap/lenet_dummy_iter_10.caffemodel.tmp.$dead
  echo partial > snap/lenet_dummy_iter_10.solverstate.tmp.$dead
  echo mine > snap/lenet_dummy_iter_10.caffemodel.tmp.$$   # this shell: alive
  echo other > snap/other_iter_10.caffemodel.tmp.$dead    # another prefix
  run 0 "$NETRUN" train --solver lenet_dummy_solver.prototxt
  expect_err "Removed snap/lenet_dummy_iter_10.caffemodel.tmp.$dead"
  [ ! -e snap/lenet_dummy_iter_10.caffemodel.tmp.$dead ] || fail "stale .caffemodel temp kept"
  [ ! -e snap/lenet_dummy_iter_10.solverstate.tmp.$dead ] || fail "stale .solverstate temp kept"
  [ -e snap/lenet_dummy_iter_10.caffemodel.tmp.$$ ] || fail "a live process's temp file removed"
  [ -e snap/other_iter_10.caffemodel.tmp.$dead ] || fail "another prefix's file removed"
  [ -e snap/lenet_dummy_iter_20.caffemodel ] || fail "no final snapshot"
}

# Two trainings with one snapshot_prefix: the second fails at start naming the first's pid;
# after the first ends (even by SIGKILL) the prefix is free again.
case_snapshot_prefix_lock() {
  lenet_solver 100000
  setsid "$NETRUN" train --solver lenet_dummy_solver.prototxt >first.out 2>first.err &
  local first=$! i
  for i in $(seq 1 200); do grep -q "Solver scaffolding done" first.err && break; sleep 0.05; done
  run 1 "$NETRUN" train --solver lenet_dummy_solver.prototxt
  expect_err "snapshot_prefix \"snap/lenet_dummy\" is in use by another running training (pid $first"
  reject_err "Iteration 0"
  kill -9 $first; wait $first 2>/dev/null
  sed -i "s/^max_iter: .*/max_iter: 5/" lenet_dummy_solver.prototxt
  run 0 "$NETRUN" train --solver lenet_dummy_solver.prototxt
  expect_err "Optimization Done."
  [ ! -e snap/lenet_dummy.lock ] || fail "the lock file outlived its run"
}

# Weights that copy nothing say so (a renamed layer silently kept its random start values;
# an empty .caffemodel was accepted without a word); copied and ignored layers are logged.
case_weights_match_nothing() {
  lenet_solver 5
  run 0 "$NETRUN" train --solver lenet_dummy_solver.prototxt
  local model=snap/lenet_dummy_iter_5.caffemodel
  run 0 "$NETRUN" test --model lenet_dummy_train.prototxt --weights $model --iterations 1
  expect_err "Copying source layer conv1"; reject_err "copied no weights"
  sed 's/"conv1"/"convA"/g; s/"ip1"/"ipA"/g; s/"ip2"/"ipB"/g' lenet_dummy_train.prototxt > renamed.prototxt
  run 0 "$NETRUN" test --model renamed.prototxt --weights $model --iterations 1
  expect_err "Ignoring source layer conv1"
  expect_err "Warning: $model copied no weights into net 'LeNetDummy'"; expect_err "renamed layers?"
  : > empty.caffemodel
  run 0 "$NETRUN" test --model lenet_dummy_train.prototxt --weights empty.caffemodel --iterations 1
  expect_err "empty.caffemodel copied no weights"; expect_err "the file holds no layer (is it empty?)"
  run 0 "$NETRUN" train --solver lenet_dummy_solver.prototxt --weights empty.caffemodel
  expect_err "empty.caffemodel copied no weights"
}

# Weights and solver states that are not regular files are refused before reading (a device
# such as /dev/urandom was read to the 2 GB limit: 16 s and 4 GB of memory).
case_weights_not_a_file() {
  lenet_solver 5
  run 1 "$NETRUN" test --model lenet_dummy_train.prototxt --weights /dev/urandom
  expect_err "'/dev/urandom' is a character device, not a .caffemodel file"
  [ "$run_ms" -lt 5000 ] || fail "refusing /dev/urandom took $run_ms ms"
  mkdir adir
  run 1 "$NETRUN" train --solver lenet_dummy_solver.prototxt --snapshot adir
  expect_err "'adir' is a directory, not a .solverstate file"
  mkfifo fifo
  run 1 "$NETRUN" test --model lenet_dummy_train.prototxt --weights fifo
  expect_err "'fifo' is a pipe"
}

# Processes a layer starts (fork, double fork, setsid) end with the run, in a worker and in
# netrun itself (--py-workers 0): they outlived a run that exited 0.
case_descendants() {
  py_net Forker fork,double,setsid
  local w m pid
  for w in 1 0; do
    rm -f ./*.pid
    run 0 "$NETRUN" --py-workers $w test --model net.prototxt --iterations 2
    for m in fork double setsid; do
      [ -s $m.pid ] || { fail "workers $w: the layer wrote no $m.pid"; continue; }
      pid=$(cat $m.pid)
      if kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' /proc/"$pid"/status 2>/dev/null; then
        fail "workers $w: the $m process $pid outlived the run"
        kill -9 "$pid"
      fi
    done
  done
}

# A layer that writes over its worker's control block (it is mapped in the worker): netrun
# reports the worker as faulty and ends it, with or without --py-timeout, in seconds. With
# 0xFF bytes, netrun died of SIGABRT in glibc's sem_wait (or hung without a timeout).
case_scribble_control_block() {
  local how t p
  for how in ff 00 random seq thread; do
    py_net ScribbleCtl $how
    for t in 3 0; do
      for p in 3 0; do
        if [ $how = thread ]; then
          run 1 "$NETRUN" --py-timeout $t --py-prefetch $p test --model net.prototxt --iterations 4
          # the call in flight when the core sees the garbage: reshape or forward
          expect_err "layer 'h'"; expect_err "nr_hostile_layers.ScribbleCtl."
          expect_err "worker 0"
        else
          # Every message rewrites the fields it uses, so the run may go on with right
          # results; or the core saw the garbage while a reply was pending and ended the
          # worker as faulty. Both are right; an abort, a hang or a wrong value are not.
          run any "$NETRUN" --py-timeout $t --py-prefetch $p test --model net.prototxt --iterations 4
          case $run_status in
            0) expect_err "] out = 1" ;;
            1) expect_err "worker 0"; expect_err "wrote over the block" ;;
            *) fail "$how (timeout $t, prefetch $p): exit status $run_status" ;;
          esac
        fi
        reject_err "futex facility"; reject_err "Aborted"
        [ "$run_ms" -lt 8000 ] || fail "$how (timeout $t, prefetch $p): took $run_ms ms"
      done
    done
  done
}

# A data layer that keeps a view of its top (from setup or reshape) and fills it in forward
# gets, with prefetch, what it wrote into each batch (it got buffers the layer never wrote
# into: 'batch 1 holds [0.]', silently).
case_prefetch_kept_view() {
  local where p
  for where in setup reshape; do
    py_net KeptView $where
    for p in 3 1 0; do
      run 0 "$NETRUN" --py-prefetch $p test --model net.prototxt --iterations 4
      # six outputs of one blob; each the mean of 1, 2, 3, 4
      [ "$(grep -c '\] out = 2.5$' "$WORK/err")" = 6 ] ||
        fail "kept view from $where, prefetch $p: $(grep '\] out = ' "$WORK/err" | head -3)"
    done
  done
}

# A layer forks and then its worker is killed (it cannot end its children itself): the
# child dies with the worker's process group.
case_descendants_of_killed_worker() {
  py_net ForkThenDie
  rm -f ./*.pid
  run 1 "$NETRUN" test --model net.prototxt --iterations 1
  expect_err "SIGKILL"
  [ -s fork.pid ] || { fail "the layer wrote no fork.pid"; return; }
  local pid; pid=$(cat fork.pid)
  sleep 0.2
  if kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' /proc/"$pid"/status 2>/dev/null; then
    fail "the child $pid of a killed worker outlived the run"
    kill -9 "$pid"
  fi
}

"case_$1"
if [ "$failures" -gt 0 ]; then echo "$1: $failures failure(s)" >&2; exit 1; fi
echo "$1: ok"
