#!/usr/bin/env bash
# Everything a fresh Debian 12 machine needs to run tunnelkit's tests: install the packages,
# configure, build, run ctest; then build the suite again with ASan+UBSan in build-asan/
# (clang 14, -O0, no benchmarks) and run the whole of it there: any sanitizer report, also from
# a child process (tunnelctl, cfedge), fails the run. TUNNELKIT_SANITIZE=0 skips that part.
# Then a fuzz smoke: every libFuzzer target for TUNNELKIT_FUZZ_SECONDS (default 20) under
# ASan+UBSan (tools/fuzz.sh -s, clang, -O0); TUNNELKIT_FUZZ_SMOKE=0 skips it.
# Each phase prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."

phase_start=$SECONDS
phase_done() {  # phase_done NAME: how long the phase that ends here took
  echo "run-tests: $1 took $((SECONDS - phase_start)) s"
  phase_start=$SECONDS
}

bash tools/setup-debian.sh
phase_done setup

jobs=$(nproc)
status=0
configure() {
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja -DTUNNELKIT_WERROR=ON "$@" >/dev/null
}

# --- normal build and tests
# -O2 without debug information: the tests need an optimised build, not a debuggable one, and
# g++ spends about a quarter of the build on -g (sanitizer reports get file:line from
# build-asan's -g1).
configure build "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -DNDEBUG" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -DNDEBUG"
cmake --build build -j "$jobs"
phase_done build
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 300
phase_done tests

# --- the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
if [ "${TUNNELKIT_SANITIZE:-1}" = 1 ]; then
  # clang 14 at -O0: g++'s UBSan alone triples a source's compile time, and clang's -O1 costs
  # 2.4 times its -O0; the -O0 tree took 29 CPU minutes cold here, and the whole suite passes
  # in it (tests that bound latency or memory allow for it, tests/support/sanitizer.hpp).
  # -gline-tables-only keeps file:line in reports.
  # A tree configured with another compiler (g++, before) is configured afresh.
  if [ -f build-asan/CMakeCache.txt ] && ! grep -q '^CMAKE_CXX_COMPILER:.*clang++-14' build-asan/CMakeCache.txt; then
    rm -rf build-asan/CMakeCache.txt build-asan/CMakeFiles
  fi
  CC=clang-14 CXX=clang++-14 configure build-asan -DTUNNELKIT_SANITIZE=ON \
    -DTUNNELKIT_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug \
    "-DCMAKE_CXX_FLAGS_DEBUG=-O0 -gline-tables-only" "-DCMAKE_C_FLAGS_DEBUG=-O0 -gline-tables-only"
  cmake --build build-asan -j "$jobs"
  phase_done "sanitizer build"
  # Reports go to files as well as failing the process: a child process's report would
  # otherwise only reach a log that its test may not read.
  reports="$PWD/build-asan/sanitizer-reports"
  rm -rf "$reports"
  mkdir -p "$reports"
  # ASan's default fast unwinding: the slow unwinder (fast_unwind_on_malloc=0) made every TLS
  # set-up take seconds and the zlayer tests 10x slower; tests/lsan.supp says what that costs.
  ASAN_OPTIONS="log_path=$reports/asan" \
    LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS="print_stacktrace=1:log_path=$reports/ubsan" \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 600 || status=$?
  if compgen -G "$reports/*" >/dev/null; then
    echo "sanitizer reports:"
    for report in "$reports"/*; do
      echo "=== $report"
      cat "$report"
    done
    status=1
  fi
  phase_done "sanitizer tests"
fi

# Fuzz smoke: every libFuzzer target (tests/fuzz, clang) for TUNNELKIT_FUZZ_SECONDS each, one per
# core at a time, from the committed corpora; any crash, leak, sanitizer report or timeout fails
# the run (the input is kept in build-fuzz-smoke/artifacts/). The -O0 smoke build compiles in
# about half the CPU time of the campaign build (docs/reliability.md, "Fuzzing").
if [ "${TUNNELKIT_FUZZ_SMOKE:-1}" = 1 ]; then
  bash tools/fuzz.sh -s -t "${TUNNELKIT_FUZZ_SECONDS:-20}" -j "$jobs" || status=$?
  phase_done "fuzz smoke"
fi
exit "$status"
