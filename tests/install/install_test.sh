#!/usr/bin/env bash
# `cmake --install` into a fresh prefix, then a user's C program built against the installed
# engine library alone (pkg-config netrun, <netrun/netrun.h>), shared and static, trains
# Caffe's LeNet for a few iterations; the installed netrun and netrun-worker run.
set -u
: "${NR_BUILD_DIR:?}" "${NR_SOURCE_DIR:?}" "${NR_CAFFE_DATA:?}"
. "$NR_SOURCE_DIR/tests/lib/cli_test.sh"
prefix="$WORK/prefix"
cmake --install "$NR_BUILD_DIR" --prefix "$prefix" >install.log 2>&1 ||
  { fail "cmake --install failed: $(tail -20 install.log)"; exit 1; }
for f in bin/netrun bin/netrun-worker lib/libnetrun.so lib/libnetrun.a \
         lib/pkgconfig/netrun.pc include/netrun/netrun.h include/netrun/caffe.pb-c.h \
         lib/netrun/libnetrun-pyinproc.so lib/netrun/python/caffe/__init__.py; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
flags=(-std=c11 -Wall -Wextra -Werror ${NR_SANITIZE_FLAGS:-})
# shared
cc "${flags[@]}" "$NR_SOURCE_DIR/tests/install/train_lenet.c" -o train_shared \
   $(pkg-config --cflags --libs netrun) -Wl,-rpath,"$prefix/lib" 2>cc.log ||
  fail "building against libnetrun.so failed: $(cat cc.log)"
# static: everything the library needs comes from pkg-config --static
cc "${flags[@]}" "$NR_SOURCE_DIR/tests/install/train_lenet.c" -o train_static \
   $(pkg-config --cflags netrun) "$prefix/lib/libnetrun.a" \
   $(pkg-config --static --libs-only-l --libs-only-L netrun | sed 's/-lnetrun//') 2>cc.log ||
  fail "building against libnetrun.a failed: $(cat cc.log)"
ldd train_static 2>/dev/null | grep -q libnetrun && fail "train_static links libnetrun.so"

for prog in train_shared train_static; do
  [ -x "$prog" ] || continue
  run 0 "./$prog" "$NR_CAFFE_DATA/mnist-lenet.prototxt" 30
  line=$(grep '^iterations' "$WORK/out")
  [ -n "$line" ] || { fail "$prog printed no result: $(tail -5 "$WORK/err")"; continue; }
  echo "$prog: $line"
  # iterations 30, first loss A, last loss B: B must be under half of A (chance is ln 10)
  echo "$line" | awk '{ gsub(",", ""); exit !($2 == 30 && $8 < $5 / 2) }' ||
    fail "$prog did not learn: $line"
done
run 0 "$prefix/bin/netrun" check --model "$NR_CAFFE_DATA/mnist-lenet.prototxt"
expect_out "431080"
# Python layers of the installed netrun import the installed caffe package (beside the
# installed worker and in-process library), not the build tree's: a moved install is whole.
mkdir -p pynet
cat > pynet/where_layer.py <<'PY'
import caffe

class Where(caffe.Layer):
    def setup(self, bottom, top):
        with open(self.param_str, "a") as f:
            f.write(caffe.__file__ + "\n")
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data
    def backward(self, top, propagate_down, bottom):
        pass
PY
for workers in 1 0; do
  rm -f "$WORK/where.txt"
  cat > pynet/net.prototxt <<P
name: "where"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "w" type: "Python" bottom: "x" top: "y"
  python_param { module: "where_layer" layer: "Where" param_str: "$WORK/where.txt" } }
P
  PYTHONPATH="$WORK/pynet" run 0 "$prefix/bin/netrun" --py-workers $workers time \
    --model pynet/net.prototxt --iterations 1
  got=$(head -1 "$WORK/where.txt" 2>/dev/null)
  case "$got" in
    "$prefix/lib/netrun/python/caffe/__init__.py") ;;
    *) fail "--py-workers $workers: the installed netrun's layer imported caffe from" \
            "'${got:-nowhere}', not $prefix/lib/netrun/python" ;;
  esac
done
if [ "$failures" -gt 0 ]; then echo "install: $failures failure(s)" >&2; exit 1; fi
echo "install: ok"
