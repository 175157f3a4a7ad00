#!/usr/bin/env bash
# End-to-end: `netrun convert-mnist` on Debian's Fashion-MNIST test set, then Caffe's own
# lenet_train_test.prototxt (only its source paths rewritten) scored with `netrun test`.
# Usage: data_e2e.sh CASE (convert_and_test | convert_errors | missing_source)
set -u
: "${NETRUN:?}" "${NR_SOURCE_DIR:?}" "${NR_CAFFE_DATA:?}"
FMNIST=${NR_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
LENET="$NR_CAFFE_DATA/mnist-lenet_train_test.prototxt"
# $WORK (the current directory), fail, run (also: nothing left behind), expect_err
# shellcheck source=../lib/cli_test.sh
. "$NR_SOURCE_DIR/tests/lib/cli_test.sh"

need_fmnist() {
  if [ ! -f "$FMNIST/t10k-images-idx3-ubyte.gz" ]; then
    echo "SKIP: $FMNIST/t10k-images-idx3-ubyte.gz missing (apt-get install dataset-fashion-mnist)"
    exit 0
  fi
}

case_convert_and_test() {
  need_fmnist
  run 0 "$NETRUN" convert-mnist "$FMNIST/t10k-images-idx3-ubyte.gz" \
    "$FMNIST/t10k-labels-idx1-ubyte.gz" "$WORK/fmnist_test_lmdb"
  expect_err "A total of 10000 items."; expect_err "Rows: 28 Cols: 28"
  [ -f "$WORK/fmnist_test_lmdb/data.mdb" ] || fail "no data.mdb written"
  sed -e "s#examples/mnist/mnist_train_lmdb#$WORK/fmnist_test_lmdb#" \
      -e "s#examples/mnist/mnist_test_lmdb#$WORK/fmnist_test_lmdb#" "$LENET" > lenet.prototxt
  run 0 "$NETRUN" test --verbose --model lenet.prototxt --iterations 2
  expect_err "output data size: 100,1,28,28"
  expect_err "Batch 1, accuracy = "
  grep -qE "\] accuracy = [0-9.]+$" "$WORK/err" || fail "no final 'accuracy =' line: $(tail -c 1500 "$WORK/err")"
  # The TRAIN net reads the same database (batch 64).
  run 0 "$NETRUN" test --model lenet.prototxt --iterations 1 --phase TRAIN
  expect_err "output data size: 64,1,28,28"
}

case_convert_errors() {
  need_fmnist
  local im="$FMNIST/t10k-images-idx3-ubyte.gz" lb="$FMNIST/t10k-labels-idx1-ubyte.gz"
  run 0 "$NETRUN" convert-mnist "$im" "$lb" db
  run 1 "$NETRUN" convert-mnist "$im" "$lb" db; expect_err "LMDB 'db' already exists"
  run 1 "$NETRUN" convert-mnist "$lb" "$im" db2; expect_err "magic number 2049, expected 2051"
  [ ! -e db2 ] || fail "a failed conversion left db2 behind"
  run 1 "$NETRUN" convert-mnist missing.gz "$lb" db3; expect_err "cannot open 'missing.gz': No such file or directory"
  run 2 "$NETRUN" convert-mnist "$im" "$lb"; expect_err "expected IMAGES LABELS DB"
  run 2 "$NETRUN" convert-mnist "$im" "$lb" db4 --backend leveldb; expect_err "--backend leveldb is not supported"
  run 0 "$NETRUN" convert-mnist --help
}

case_missing_source() {
  sed -e "s#examples/mnist/mnist_test_lmdb#$WORK/nowhere_lmdb#" "$LENET" > lenet.prototxt
  run 1 "$NETRUN" test --model lenet.prototxt --iterations 1
  expect_err "layer 0 'mnist' (Data): cannot open LMDB '$WORK/nowhere_lmdb': No such file or directory"
}

# Caffe's CIFAR-10 recipe from its unchanged cifar10_quick_train_test.prototxt, run from a
# folder laid out as Caffe's root: convert-cifar on generated batches in CIFAR-10's binary
# format (a class is a colour plus noise), compute-image-mean, then Caffe's quick solver
# (shortened) trains and tests.
case_cifar10_quick() {
  mkdir -p data/cifar10 examples/cifar10
  /usr/bin/python3 - <<'PY' || fail "generating CIFAR batches"
import numpy as np
rng = np.random.default_rng(7)
colours = np.array([[r, g, b] for r in (110, 145) for g in (110, 145) for b in (110, 145)] +
                   [[128, 128, 128], [128, 110, 145]])
def batch(path, n):
    labels = rng.integers(0, 10, size=n)
    img = colours[labels][:, :, None] + rng.normal(0, 25, size=(n, 3, 1024))
    rec = np.concatenate([labels[:, None], np.clip(img, 0, 255).reshape(n, 3072)], axis=1)
    rec.astype(np.uint8).tofile(path)
for i in range(1, 6):
    batch('data/cifar10/data_batch_%d.bin' % i, 200)
batch('data/cifar10/test_batch.bin', 200)
PY
  run 0 "$NETRUN" convert-cifar data/cifar10 examples/cifar10
  expect_err "Writing Training data"; expect_err "Training Batch 5"; expect_err "Writing Testing data"
  run 0 "$NETRUN" compute-image-mean examples/cifar10/cifar10_train_lmdb \
    examples/cifar10/mean.binaryproto
  expect_err "Processed 1000 files."; expect_err "Number of channels: 3"
  expect_err "mean_value channel [2]: "
  cp "$NR_CAFFE_DATA/cifar10-cifar10_quick_train_test.prototxt" \
    examples/cifar10/cifar10_quick_train_test.prototxt
  # Caffe's cifar10_quick_solver.prototxt, with max_iter 4000 -> 60 and test_iter 100 -> 2
  cat > examples/cifar10/cifar10_quick_solver.prototxt <<'S'
net: "examples/cifar10/cifar10_quick_train_test.prototxt"
test_iter: 2
test_interval: 60
base_lr: 0.001
momentum: 0.9
weight_decay: 0.004
lr_policy: "fixed"
display: 20
max_iter: 60
snapshot: 60
snapshot_prefix: "examples/cifar10/cifar10_quick"
solver_mode: GPU
S
  run 0 "$NETRUN" train --solver examples/cifar10/cifar10_quick_solver.prototxt
  expect_err "Iteration 60, Testing net (#0)"
  [ -f examples/cifar10/cifar10_quick_iter_60.caffemodel ] || fail "no snapshot written"
  local acc
  acc=$(grep -oE "Test net output #0: accuracy = [0-9.]+" "$WORK/err" | tail -1 | grep -oE "[0-9.]+$")
  awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 0.5) }' \
    || fail "cifar10_quick reached test accuracy ${acc:-none} after 60 iterations (want >= 0.5)"
  # broken inputs: a truncated batch, a folder without batches
  head -c 5000 data/cifar10/test_batch.bin > data/cifar10/short.bin
  mkdir bad; cp data/cifar10/data_batch_*.bin bad/; cp data/cifar10/short.bin bad/test_batch.bin
  run 1 "$NETRUN" convert-cifar bad out_bad
  expect_err "bad/test_batch.bin' is truncated: record 1 has 1927 of 3073 bytes"
  [ ! -e out_bad/cifar10_train_lmdb ] || fail "a failed convert-cifar left cifar10_train_lmdb"
  run 1 "$NETRUN" convert-cifar nowhere out2
  expect_err "cannot open 'nowhere/data_batch_1.bin'"
}

# HDF5Output: every forward appends its batch to "data" and "label"; h5py reads the file
# (Caffe's legacy 4-D shapes) and netrun's own HDF5Data layer reads it back row for row.
case_hdf5_output() {
  cat > out.prototxt <<'P'
name: "h5out"
layer { name: "d" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 }
    data_filler { type: "uniform" min: 0 max: 1 } data_filler { type: "uniform" min: 5 max: 6 } } }
layer { name: "copy" type: "Power" bottom: "data" top: "copy" }
layer { name: "out" type: "HDF5Output" bottom: "data" bottom: "label"
  hdf5_output_param { file_name: "out.h5" } }
P
  run 0 "$NETRUN" test --verbose --model out.prototxt --iterations 3
  expect_err "Successfully saved 2 rows"
  /usr/bin/python3 - <<'PY' || fail "h5py read of out.h5"
import h5py, re, numpy as np
f = h5py.File('out.h5', 'r')
assert f['data'].shape == (6, 3, 1, 1), f['data'].shape
assert f['label'].shape == (6, 1, 1, 1), f['label'].shape
assert f['data'].dtype == np.float32
d = f['data'][...].reshape(6, 3)
assert ((d >= 0) & (d <= 1)).all() and ((f['label'][...] >= 5) & (f['label'][...] <= 6)).all()
# the rows are the batches the net saw, in order ("Batch i, copy = v" lines)
want = [float(v) for v in re.findall(r'Batch \d+, copy = (\S+)', open('err').read())]
np.testing.assert_allclose(d.ravel(), want, rtol=1e-5)
PY
  echo out.h5 > list.txt
  cat > back.prototxt <<'P'
name: "back"
layer { name: "h" type: "HDF5Data" top: "data" top: "label" hdf5_data_param { source: "list.txt" batch_size: 6 } }
P
  run 0 "$NETRUN" test --verbose --model back.prototxt --iterations 1
  expect_err "Batch 0, data = "
  [ "$(grep -c "Batch 0, data = " "$WORK/err")" = 18 ] || fail "HDF5Data did not read 6 x 3 values"
  sed 's#out.h5#nowhere/out.h5#' out.prototxt > bad.prototxt
  run 1 "$NETRUN" test --model bad.prototxt --iterations 1
  expect_err "cannot create HDF5 file 'nowhere/out.h5'"
  # a second layer on a file the first holds open: refused with the likely reason
  { cat out.prototxt
    echo 'layer { name: "out2" type: "HDF5Output" bottom: "data" bottom: "label"'
    echo '  hdf5_output_param { file_name: "out.h5" } }'; } > twice.prototxt
  run 1 "$NETRUN" test --model twice.prototxt --iterations 1
  expect_err "cannot create HDF5 file 'out.h5' (is it open elsewhere?)"
}

"case_$1"
[ "$failures" = 0 ] || exit 1
echo "ok: $1"
