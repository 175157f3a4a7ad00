#!/usr/bin/env bash
# Runs BVLC Caffe's own pycaffe test suite (python/caffe/test/test_*.py of a Caffe checkout,
# unchanged) against netrun's caffe package: scripts/caffe_pytest.sh DIR [unittest args].
# DIR holds the test_*.py files. The suite is a peer's, not the project's: it is not carried
# here, so give its folder. It runs twice: Python layers in workers (the default), then in
# this interpreter (NR_PYCAFFE_WORKERS=0 -> caffe.set_py_workers(0) through sitecustomize).
# test_draw walks models/ and examples/ three levels above the tests, as in Caffe's tree:
# they are filled with the project's copy of Caffe's nets (tests/data/caffe).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=${1:?usage: scripts/caffe_pytest.sh DIR_OF_CAFFE_TEST_FILES [unittest args]}
shift
src=$(cd "$src" && pwd)
pkg=${NR_PYTHON_DIR:-$here/build/python}
[ -f "$pkg/caffe/pycaffe.py" ] || { echo "no built package in $pkg (build first)" >&2; exit 2; }
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/python/caffe/test" "$t/models" "$t/examples" "$t/site"
cp "$src"/test_*.py "$t/python/caffe/test/"
cp "$here"/tests/data/caffe/*.prototxt "$t/models/"
cat > "$t/site/sitecustomize.py" <<'PY'
import os
if os.environ.get('NR_PYCAFFE_WORKERS'):
    import caffe
    caffe.set_py_workers(int(os.environ['NR_PYCAFFE_WORKERS']))
PY
cd "$t/python/caffe/test"
status=0
for workers in "" 0; do
  if [ -n "$workers" ]; then where="in this interpreter"; else where="in workers"; fi
  echo "== Caffe's pycaffe suite, Python layers $where"
  NR_PYCAFFE_WORKERS=$workers PYTHONPATH="$pkg:$t/site:." /usr/bin/python3 -m unittest "$@" ||
    status=1
done
exit $status
