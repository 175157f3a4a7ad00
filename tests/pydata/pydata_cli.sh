#!/usr/bin/env bash
# CLI-level checks of Python data layers (run by ctest from tests/pydata/CMakeLists.txt):
#   identical  trains the Fashion-MNIST example (examples/fashion_mnist, --py-replicas
#              fmnist=2, the form a Caffe-readable prototxt uses) for
#              $ITERS iterations with --py-workers 1, 2 and 4 and compares the .caffemodel
#              bytes: the batch sequence must not depend on the number of workers
#   time       `netrun time` on the example prints the data wait line
# Skips (exit 77) when Debian's dataset-fashion-mnist is not installed.
set -euo pipefail
case_=${1:?case}
src=${NR_SOURCE_DIR:?}
bin=${NR_BUILD_DIR:?}/netrun
data=/usr/share/datasets/fashion-mnist
[ -e "$data/train-images-idx3-ubyte.gz" ] || { echo "skip: $data not installed"; exit 77; }
tmp=$(mktemp -d /tmp/nr_pydata_cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
net=$src/examples/fashion_mnist/lenet_train_test.prototxt
# the example stays readable by Caffe's own tools: no netrun-only field in it
! grep -qE "^[^#]*replicas" "$net" || { echo "FAIL: $net uses python_param.replicas"; exit 1; }
fail() { echo "FAIL: $*"; exit 1; }

case $case_ in
identical)
  ITERS=${ITERS:-300}
  for w in 1 2 4; do
    cat > "$tmp/solver$w.prototxt" <<S
net: "$net"
base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005
lr_policy: "inv" gamma: 0.0001 power: 0.75
display: $(( ITERS < 100 ? ITERS : 100 )) max_iter: $ITERS snapshot: $ITERS
snapshot_prefix: "$tmp/w$w"
random_seed: 1701
S
    "$bin" --py-workers $w --py-replicas fmnist=2 train --solver "$tmp/solver$w.prototxt" \
      > "$tmp/log$w" 2>&1 ||
      { tail -20 "$tmp/log$w"; fail "training with --py-workers $w"; }
    grep -q "Iteration $ITERS, loss = " "$tmp/log$w" || fail "no final loss line with $w workers"
  done
  grep -q "Python data layer 'fmnist' (phase TRAIN): 1 replica on worker 0" "$tmp/log1" ||
    fail "1 worker: expected one replica"
  grep -q "replicas: 2 capped at the pool size (1 Python worker)" "$tmp/log1" ||
    fail "1 worker: the cap is not logged"
  grep -q "Python data layer 'fmnist' (phase TRAIN): 2 replicas on workers 0, 1" "$tmp/log2" ||
    fail "2 workers: expected two replicas"
  for w in 2 4; do
    cmp "$tmp/w1_iter_${ITERS}.caffemodel" "$tmp/w${w}_iter_${ITERS}.caffemodel" ||
      fail "the weights after $ITERS iterations differ between 1 and $w workers"
  done
  grep "Iteration $ITERS, loss" "$tmp/log1" "$tmp/log2" "$tmp/log4"
  echo "ok: 1, 2 and 4 workers trained bit-identical weights"
  ;;
time)
  "$bin" --py-workers 2 time --model "$net" --iterations 5 > "$tmp/log" 2>&1 ||
    { cat "$tmp/log"; fail "netrun time"; }
  grep -E "data wait: [0-9.e+-]+ ms per iteration \(forward of fmnist\)" "$tmp/log" ||
    fail "no data wait line"
  ;;
*) fail "unknown case $case_" ;;
esac
