#!/usr/bin/env bash
# Everything a fresh Debian 12 machine needs to run tunnelkit's tests: install the packages,
# configure, build, run ctest. Set TUNNELKIT_SANITIZE=1 to also run the suite under
# ASan+UBSan in build-asan/. A short fuzz smoke (tools/fuzz.sh) runs last.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup-debian.sh

jobs=$(nproc)
build() {
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DTUNNELKIT_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

build build
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 300

if [ "${TUNNELKIT_SANITIZE:-0}" = 1 ]; then
  build build-asan -DTUNNELKIT_SANITIZE=ON -DTUNNELKIT_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug
  # Full stacks for allocations: with fast unwinding they stop inside libcrypto (no frame
  # pointers) and the libwebsockets suppressions never match.
  ASAN_OPTIONS="fast_unwind_on_malloc=0" LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp" \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 600
fi

# Fuzz smoke: every libFuzzer target (tests/fuzz, clang) for TUNNELKIT_FUZZ_SECONDS each, one per
# core at a time; any finding fails the run. TUNNELKIT_FUZZ_SMOKE=0 skips it.
if [ "${TUNNELKIT_FUZZ_SMOKE:-1}" = 1 ]; then
  bash tools/fuzz.sh -t "${TUNNELKIT_FUZZ_SECONDS:-20}" -j "$jobs"
fi
