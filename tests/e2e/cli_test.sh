#!/usr/bin/env bash
# End-to-end cases of the netrun CLI, one per invocation: cli_test.sh CASE.
# Each case runs netrun the way a user would and asserts on exit codes and what is printed.
set -u
: "${NETRUN:?}" "${NR_SOURCE_DIR:?}" "${NR_CAFFE_DATA:?}"
HERE="$NR_SOURCE_DIR/tests/e2e"
CAFFE="$NR_CAFFE_DATA"
# $WORK (the current directory), fail, run (also: nothing left behind), expect_*
# shellcheck source=../lib/cli_test.sh
. "$NR_SOURCE_DIR/tests/lib/cli_test.sh"

case_help() {
  run 0 "$NETRUN" --help; expect_out "usage: netrun"; expect_out "train"
  run 0 "$NETRUN" train --help; expect_out "--solver"; expect_out "--py-workers"
  run 0 "$NETRUN" check -help; expect_out "--model"
}

# What a Caffe user types: --version, help [command], device_query, -gpu on every command
# (noted, ignored), per-command help listing only the flags that command takes, and
# `netrun test` printing per-batch lines only with --verbose.
case_caffe_cli() {
  run 0 "$NETRUN" --version; expect_out "netrun "
  run 0 "$NETRUN" help; expect_out "usage: netrun"
  run 0 "$NETRUN" help train; expect_out "--solver"; expect_out "--py-workers"
  run 0 "$NETRUN" help upgrade; expect_out "netrun upgrade"
  grep -q -- "--py-workers" "$WORK/out" && fail "upgrade's help lists the Python-layer flags"
  run 2 "$NETRUN" help frobnicate; expect_err "unknown command 'frobnicate'"
  run 0 "$NETRUN" device_query; expect_err "CPU only"; expect_err "Cores online: "
  expect_err "SIMD: "
  cp "$HERE"/nets/lenet_dummy_*.prototxt .
  run 0 "$NETRUN" test -gpu 0 --model lenet_dummy_train.prototxt --iterations 2
  expect_err "netrun runs on the CPU; ignoring -gpu 0"; expect_err "loss = "
  grep -q "Batch 1, " "$WORK/err" && fail "netrun test printed per-batch lines without --verbose"
  run 0 "$NETRUN" test --verbose --model lenet_dummy_train.prototxt --iterations 2
  expect_err "Batch 1, loss = "
  run 0 "$NETRUN" time -gpu all --model lenet_dummy_train.prototxt --iterations 1
  expect_err "ignoring -gpu all"; expect_err "Average Forward-Backward"
  # -log_dir: glog's file name, the log lines in it, a netrun.INFO link
  mkdir -p logs snap
  run 0 "$NETRUN" train -log_dir logs --solver lenet_dummy_solver.prototxt
  local f; f=$(ls logs/netrun.*.log.INFO.* 2>/dev/null | head -1)
  [ -n "$f" ] || fail "-log_dir wrote no netrun.<host>.<user>.log.INFO.<date>.<pid> file"
  grep -q "Optimization Done." "$f" || fail "the log file lacks the training log"
  grep -q "Progress: iteration 10 of 40" "$f" || fail "no progress line in a log off a terminal"
  [ -L logs/netrun.INFO ] || fail "no netrun.INFO link"
  run 2 "$NETRUN" test -log_dir /nonexistent/logs --model lenet_dummy_train.prototxt
  expect_err "-log_dir: cannot create a log file in '/nonexistent/logs'"
}

# Caffe's AutoTopBlobs: a loss layer written without a top gets one (it was refused with
# "takes 1 to 2 top blobs, got 0"), its loss counted with weight 1.
case_auto_top() {
  cat > auto.prototxt <<'P'
name: "auto"
layer { name: "d" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 }
    data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "y" }
layer { name: "l2" type: "EuclideanLoss" bottom: "ip" bottom: "ip" }
P
  run 0 "$NETRUN" test --model auto.prototxt --iterations 2
  expect_err "] (automatic) = "; expect_err "] (automatic)#2 = 0 (* 1 = 0 loss)"
  reject_err "top blobs, got 0"
  run 0 "$NETRUN" check --model auto.prototxt; expect_out "(automatic)"
}

case_usage_errors() {
  run 2 "$NETRUN"
  run 2 "$NETRUN" frobnicate; expect_err "unknown command 'frobnicate'"
  run 2 "$NETRUN" test --model x.prototxt --bogus 1; expect_err "unknown flag '--bogus'"
  run 2 "$NETRUN" test; expect_err "--model is required"
  run 2 "$NETRUN" time --model x --iterations zero; expect_err "bad value 'zero' for --iterations"
  run 2 "$NETRUN" train; expect_err "--solver is required"
  run 2 "$NETRUN" train --solver s --weights a --snapshot b; expect_err "not both"
  run 2 "$NETRUN" --py-workers; expect_err "needs a value"
}

# The checkout stands alone: no source, script or build file reads outside it (a user's
# clone has no sibling folders; .ci/run also runs the whole suite in a lone copy).
case_standalone() {
  local hits
  hits=$(grep -rlE '\.\./(shared|\.\./)' "$NR_SOURCE_DIR" --exclude='*.md' \
           --exclude-dir='.git' --exclude-dir='build*' --exclude-dir=corpus 2>/dev/null)
  [ -z "$hits" ] || fail "files read outside the checkout: $hits"
  [ -f "$CAFFE/LICENSE-caffe" ] || fail "Caffe's files are in the project without their license"
  local n; n=$(ls "$CAFFE"/*.prototxt | wc -l)
  [ "$n" -ge 16 ] || fail "expected Caffe's 16 nets and solvers in $CAFFE, found $n"
}

case_check_caffe_nets() {
  for f in "$CAFFE"/*deploy.prototxt "$CAFFE/mnist-lenet.prototxt"; do
    run 0 "$NETRUN" check --model "$f"
    grep -q "^total:" "$WORK/out" || fail "check $f printed no total"
  done
  run 0 "$NETRUN" check --model "$CAFFE/mnist-lenet.prototxt"
  expect_out "conv1"; expect_out "64x20x24x24"; expect_out "431080"
  # Every net Caffe ships here, in both phases (the autoencoder's TEST net with the stage its
  # solver names): their data files are not here, so the data layers become Input layers of
  # the shapes they would produce (data_as_input.py). linreg's Python loss is pylayers/pyloss.
  local f n phase stage
  for f in "$CAFFE"/*.prototxt; do
    case "$f" in *solver*) continue ;; esac
    n=$(basename "$f")
    # in the current format first (finetune_flickr_style is a V1 net)
    run 0 "$NETRUN" upgrade "$f" "$WORK/upgraded.prototxt"
    PYTHONPATH="$NR_PROTO_PY" "$NR_PYTHON" "$HERE/data_as_input.py" "$WORK/upgraded.prototxt" "$n" || { fail "data_as_input.py $n"; continue; }
    for phase in TRAIN TEST; do
      # a net without phase rules is the same net in both phases
      [ $phase = TEST ] && ! grep -q "phase: *TEST" "$f" && continue
      stage=()
      [ "$n/$phase" = mnist-mnist_autoencoder.prototxt/TEST ] && stage=(--stage test-on-test)
      PYTHONPATH="$HERE/pylayers" run 0 "$NETRUN" check --model "$n" --phase $phase "${stage[@]}"
      grep -q "^total:" "$WORK/out" || fail "check $n ($phase) printed no total"
    done
  done
}

case_check_errors() {
  # MemoryData: its shapes come from memory_data_param; without arrays handed over (pycaffe's
  # set_input_arrays, nr_net_set_input_arrays) a forward says how to give them
  cat > memdata.prototxt <<'P'
name: "x"
layer { name: "m" type: "MemoryData" top: "d" top: "l" memory_data_param { batch_size: 5 channels: 3 height: 4 width: 2 } }
P
  run 0 "$NETRUN" check --model memdata.prototxt; expect_out "5x3x4x2"
  run 1 "$NETRUN" test --model memdata.prototxt --iterations 1; expect_err "MemoryData has no arrays"
  sed 's/width: 2/width: 0/' memdata.prototxt > memdata0.prototxt
  run 1 "$NETRUN" check --model memdata0.prototxt; expect_err "must be specified and positive"
  printf 'name: "x"\nlayer { name: "a" type: "Frobnicate" top: "t" }\n' > unknown.prototxt
  run 1 "$NETRUN" check --model unknown.prototxt
  expect_err "unknown layer type 'Frobnicate'"; expect_err "Convolution"
  printf 'name: "x"\nlayer { name: "r" type: "ReLU" bottom: "missing" top: "r" }\n' > bottom.prototxt
  run 1 "$NETRUN" check --model bottom.prototxt; expect_err "unknown bottom blob 'missing'"
  cat > nonum.prototxt <<'P'
name: "x"
layer { name: "in" type: "Input" top: "d" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "d" top: "c" convolution_param { kernel_size: 3 } }
P
  run 1 "$NETRUN" check --model nonum.prototxt; expect_err "'conv' (Convolution)"; expect_err "num_output"
  cat > bigkernel.prototxt <<'P'
name: "x"
layer { name: "in" type: "Input" top: "d" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "d" top: "c" convolution_param { num_output: 2 kernel_size: 7 } }
P
  run 1 "$NETRUN" check --model bigkernel.prototxt; expect_err "'conv' (Convolution)"; expect_err "kernel"
  cat > huge.prototxt <<'P'
name: "x"
layer { name: "in" type: "Input" top: "d" input_param { shape { dim: 100000 dim: 100000 dim: 100000 } } }
P
  run 1 "$NETRUN" check --model huge.prototxt; expect_err "too large"
  run 1 "$NETRUN" check --model does-not-exist.prototxt; expect_err "does-not-exist.prototxt"
}

case_upgrade_fixed_point() {
  for f in "$CAFFE"/*.prototxt; do
    run 0 "$NETRUN" upgrade "$f" once.prototxt
    run 0 "$NETRUN" upgrade once.prototxt twice.prototxt
    cmp -s once.prototxt twice.prototxt || fail "upgrade of $f is not a fixed point"
  done
  printf 'name: "v1"\nlayers { name: "ip" type: INNER_PRODUCT bottom: "x" top: "y" inner_product_param { num_output: 3 } }\n' > v1.prototxt
  run 0 "$NETRUN" upgrade v1.prototxt; expect_out 'type: "InnerProduct"'
  run 0 "$NETRUN" upgrade - < v1.prototxt; expect_out 'layer {'
}

case_bad_prototxt_location() {
  printf 'name: "x"\nlayer {\n  name: "a"\n  colour: 3\n}\n' > bad.prototxt
  run 1 "$NETRUN" check --model bad.prototxt; expect_err "bad.prototxt:4:3"; expect_err "colour"
  printf 'name: "x"\nlayer {\n  name: "a\n' > unterminated.prototxt
  run 1 "$NETRUN" check --model unterminated.prototxt; expect_err "unterminated.prototxt:3:"
}

case_test_without_weights() {
  cp "$HERE/nets/lenet_dummy_train.prototxt" net.prototxt
  run 0 "$NETRUN" test --verbose --model net.prototxt --iterations 3
  expect_err "Batch 0, accuracy = "; expect_err "Batch 2, loss = "
  expect_err "] accuracy = "; expect_err "loss = "; expect_err "(* 1 = "
}

# One small net per layer family (tests/e2e/nets/layers_*.prototxt) builds, shapes, runs
# forward (test) and forward-backward (time) through the CLI; constant inputs give
# known outputs.
case_layer_family_nets() {
  local fam
  for fam in neuron normalization utility loss vision recurrent; do
    cp "$HERE/nets/layers_$fam.prototxt" net.prototxt
    run 0 "$NETRUN" check --model net.prototxt; expect_out "total:"
    run 0 "$NETRUN" test --model net.prototxt --iterations 1; expect_err "Loss: "
    cp "$WORK/err" "test_$fam.log"
    run 0 "$NETRUN" time --model net.prototxt --iterations 1; expect_err "Average Forward-Backward: "
  done
  local want
  for want in "clip_mean = 2" "swish_mean = 1.76159" "thr_mean = 1"; do
    grep -qF "] $want" test_neuron.log || fail "neuron net: no '$want'"
  done
  for want in "tsum = 36 (" "rsum = 13.5 (" "fsum = 18 (" "psq = 0 ("; do
    grep -qF "] $want" test_utility.log || fail "utility net: no '$want'"
  done
  grep -qE '\] mvn_sq = (8|7\.9999[0-9]*) \(' test_normalization.log || fail "normalization net: mvn_sq is not 8"
  for want in "mll = " "hinge = " "info = " "contrast = "; do
    grep -qF "] $want" test_loss.log || fail "loss net: no '$want'"
  done
  for want in "spp_sq = " "cols_sq = "; do
    grep -qF "] $want" test_vision.log || fail "vision net: no '$want'"
  done
  for want in "rnn_sq = " "lstm_sq = " "c_sum = " "h_sum = "; do
    grep -qF "] $want" test_recurrent.log || fail "recurrent net: no '$want'"
  done
  "$NETRUN" check --model "$HERE/nets/layers_vision.prototxt" 2>&1 | grep -q "2x20 " \
    || fail "vision net: SPP top is not 2x20"
}

case_time_lines() {
  cp "$HERE/nets/lenet_dummy_train.prototxt" net.prototxt
  run 0 "$NETRUN" time --model net.prototxt --iterations 3
  expect_err "conv1	forward: "; expect_err "conv1	backward: "
  expect_err "Average Forward pass: "; expect_err "Average Forward-Backward: "
  expect_err "*** Benchmark ends ***"
  # a deploy net (no loss): as Caffe's `caffe time`, the layers with parameters still run
  # their backward (the weights' gradients), so the backward pass is not empty
  run 0 "$NETRUN" time --model "$CAFFE/mnist-lenet.prototxt" --iterations 3
  local f b
  f=$(sed -nE 's/.*Average Forward pass: ([0-9.e+-]+) ms.*/\1/p' "$WORK/err")
  b=$(sed -nE 's/.*Average Backward pass: ([0-9.e+-]+) ms.*/\1/p' "$WORK/err")
  awk -v f="$f" -v b="$b" 'BEGIN { exit !(b > 0.2 * f) }' ||
    fail "deploy LeNet: backward pass $b ms against forward $f ms: the weights' gradients were not computed"
}

loss_at() { grep -E "Iteration $1 .*loss = " "$2" | sed -E 's/.*loss = ([-0-9.eE+]+).*/\1/' | head -n 1; }

case_train_dummy_lenet() {
  cp "$HERE"/nets/lenet_dummy_*.prototxt .
  mkdir -p snap
  run 0 "$NETRUN" train --solver lenet_dummy_solver.prototxt
  cp "$WORK/err" train.log
  expect_err "Iteration 0, Testing net (#0)"; expect_err "Test net output #0: accuracy = "
  expect_err "Iteration 10 ("; expect_err "Iteration 20, lr = 0.01"
  expect_err "Snapshotting to binary proto file snap/lenet_dummy_iter_20.caffemodel"
  expect_err "Optimization Done."
  [ -f snap/lenet_dummy_iter_40.caffemodel ] && [ -f snap/lenet_dummy_iter_40.solverstate ] ||
    fail "no final snapshot"
  first=$(loss_at 0 train.log); last=$(loss_at 30 train.log)
  awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a / 4) }' ||
    fail "loss did not fall: iteration 0 loss $first, iteration 30 loss $last"
  run 0 "$NETRUN" test --model lenet_dummy_train.prototxt --weights snap/lenet_dummy_iter_40.caffemodel --iterations 2
  expect_err "] accuracy = 1"
}

case_train_resume_matches() {
  cp "$HERE"/nets/lenet_dummy_*.prototxt .
  mkdir -p snap
  run 0 "$NETRUN" train --solver lenet_dummy_solver.prototxt
  cp snap/lenet_dummy_iter_40.caffemodel straight.caffemodel
  run 0 "$NETRUN" train --solver lenet_dummy_solver.prototxt --snapshot snap/lenet_dummy_iter_20.solverstate
  cmp -s straight.caffemodel snap/lenet_dummy_iter_40.caffemodel ||
    fail "resuming from iteration 20 did not reproduce the uninterrupted run's weights"
}

case_weights_mismatch() {
  cp "$HERE"/nets/lenet_dummy_*.prototxt .
  mkdir -p snap
  run 0 "$NETRUN" train --solver lenet_dummy_solver.prototxt
  sed 's/num_output: 32/num_output: 16/' lenet_dummy_train.prototxt > other.prototxt
  run 1 "$NETRUN" test --model other.prototxt --weights snap/lenet_dummy_iter_40.caffemodel --iterations 1
  expect_err "ip1"; expect_err "shape mismatch"
  run 1 "$NETRUN" test --model lenet_dummy_train.prototxt --weights snap/lenet_dummy_iter_40.solverstate
  expect_err "this file is a .solverstate, not weights"; expect_err "--snapshot"
  run 1 "$NETRUN" test --model lenet_dummy_solver.prototxt
  expect_err "this file is a solver, not a net"; expect_err "--solver"
  run 1 "$NETRUN" train --solver lenet_dummy_train.prototxt
  expect_err "this file is a net, not a solver"
  head -c 1000 snap/lenet_dummy_iter_40.caffemodel > truncated.caffemodel
  run 1 "$NETRUN" test --model lenet_dummy_train.prototxt --weights truncated.caffemodel --iterations 1
  expect_err "truncated.caffemodel"
}

case_plot() {
  cp "$HERE"/nets/lenet_dummy_*.prototxt .
  mkdir -p snap
  run 0 "$NETRUN" train --solver lenet_dummy_solver.prototxt
  cp "$WORK/err" train.log
  run 0 "$NETRUN" plot train.log -o curves.png
  expect_out "wrote curves.png (4 training points, 3 test points)"
  [ "$(head -c 4 curves.png | od -An -c | tr -d ' ')" = "211PNG" ] || fail "curves.png is not a PNG"
  run 1 "$NETRUN" plot missing.log; expect_err "cannot read missing.log"
  run 1 "$NETRUN" plot train.log --test-output nosuch -o x.png
  expect_err "has no test output named 'nosuch' (it has: accuracy, loss)"
  [ -e x.png ] && fail "plot wrote a picture of nothing"
  run 1 "$NETRUN" plot train.log -o /nonexistent/dir/c.png
  expect_err "cannot write /nonexistent/dir/c.png"; reject_err "Traceback"
  run 2 "$NETRUN" plot; expect_err "give the training log"
}

"case_$1"
if [ "$failures" -gt 0 ]; then echo "$1: $failures failure(s)" >&2; exit 1; fi
echo "$1: ok"
