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

"case_$1"
[ "$failures" = 0 ] || exit 1
echo "ok: $1"
