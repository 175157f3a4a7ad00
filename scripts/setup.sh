#!/usr/bin/env bash
# Installs the Debian packages netrun needs (only the missing ones; quiet when all are
# present) and builds netrun into build/. Usage: scripts/setup.sh [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config
  libprotobuf-c-dev protobuf-c-compiler libmsgpack-dev libopenblas-dev
  python3 python3-dev python3-numpy libpython3.11
  dataset-fashion-mnist liblmdb-dev libhdf5-dev zlib1g-dev python3-matplotlib valgrind
  libjpeg62-turbo-dev libpng-dev # ImageData reads JPEG and PNG images (core/image_io.c)
  libopencv-imgproc-dev # tests only: test_resize_opencv checks the resize against OpenCV's
  python3-pil # examples/tutorial: the image-list data layer reads images with PIL
  # pycaffe's pure-Python half (python/caffe: caffe_pb2, io, draw; tests/pycaffe_py; six:
  # Caffe's own pycaffe test suite)
  protobuf-compiler python3-protobuf python3-six python3-skimage python3-pydot graphviz
  python3-h5py # pycaffe: Net.save_hdf5 / load_hdf5
  libopenmpi-dev openmpi-bin # mpirun -np K netrun train (docs/distributed.md; tests/mpi)
)
# Optional extras by environment variable: NR_WITH_BENCH=1 (PyTorch peer), NR_WITH_CLANG=1.
[ "${NR_WITH_BENCH:-0}" = 1 ] && PACKAGES+=(python3-torch)
[ "${NR_WITH_CLANG:-0}" = 1 ] && PACKAGES+=(clang libclang-rt-14-dev)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD_DIR=${NR_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
