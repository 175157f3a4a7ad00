#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the whole test suite under ctest.
# NR_SANITIZE=1 also builds with ASan+UBSan into build-asan and runs the suite there.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=()
[ "${CI:-}" = true ] && extra+=(-DNR_WERROR=ON)
scripts/setup.sh "${extra[@]}"
# (includes the soak: 400 000 Python-layer calls through random worker kills, tests/soak;
# bench/run soak makes 1 000 000)
(cd build && ctest --output-on-failure -j2 --timeout 300 -LE valgrind)
# Valgrind memcheck over the core's unit tests (tests/valgrind; about 90 s of CPU).
(cd build && ctest --output-on-failure -j2 --timeout 900 -L valgrind)
if [ "${NR_SANITIZE:-0}" = 1 ]; then
  NR_BUILD_DIR=build-asan scripts/setup.sh -DNR_SANITIZE=ON "${extra[@]}"
  (cd build-asan && PYTHONMALLOC=malloc ctest --output-on-failure -j2 --timeout 600 -LE slow)
fi
