#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang, -DTUNNELKIT_FUZZ=ON) in build-fuzz/ and runs
# each for a while, then prints one line per target: executions, seconds, coverage (cov = edges,
# ft = features), corpus size. A crash, leak, sanitizer report or timeout fails the run; the
# input is left in build-fuzz/artifacts/<target>/ (add it to tests/fuzz/corpus/<target>/ once
# fixed, so the replay tests keep it).
#
#   tools/fuzz.sh [-t SECONDS] [-r RUNS] [-j JOBS] [-p] [-s] [TARGET...]
#     -t SECONDS  per target (default 20; with -r, the most a target may take)
#     -r RUNS     per target: stop after this many executions (e.g. -r 10000000)
#     -j JOBS     targets built and run at the same time (default: the number of cores)
#     -p          plain build (build-fuzz-plain/: coverage only, no ASan/UBSan, several times
#                 the executions per second) for long campaigns; check each target under the
#                 sanitizers too
#     TARGET      names like ferro_codec_fuzz (default: every tests/fuzz/*_fuzz.cpp)
# New inputs found go to <build>/corpus/<target>/ (the seeds in tests/fuzz/corpus/ are only
# read), so successive runs start from what earlier ones found. Set FUZZ_NICE=19 to run the
# fuzzers at low priority, FUZZ_BUILD_DIR=<dir> to build elsewhere. The CI smoke is
# `tools/fuzz.sh -t 10 -j 2`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=""
runs=""
jobs=$(nproc)
dir=${FUZZ_BUILD_DIR:-build-fuzz}
sanitize=ON
build_type=RelWithDebInfo
while getopts "t:r:j:ps" opt; do
  case $opt in
    t) seconds=$OPTARG ;;
    r) runs=$OPTARG ;;
    j) jobs=$OPTARG ;;
    p) dir=${FUZZ_BUILD_DIR:-build-fuzz-plain} sanitize=OFF ;;
    s) dir=${FUZZ_BUILD_DIR:-build-fuzz-smoke} build_type=Debug ;;
    *) sed -n '2,22p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for source in tests/fuzz/*_fuzz.cpp; do targets+=("$(basename "$source" .cpp)"); done
fi

started=$SECONDS
CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DTUNNELKIT_FUZZ=ON \
  -DTUNNELKIT_FUZZ_SANITIZE=$sanitize -DCMAKE_BUILD_TYPE=$build_type >/dev/null
cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
echo "fuzz: built ${#targets[@]} targets in $((SECONDS - started)) s ($dir)"
started=$SECONDS

limit=()
if [ -n "$runs" ]; then limit+=(-runs="$runs"); fi
if [ -n "$seconds" ] || [ -z "$runs" ]; then limit+=(-max_total_time="${seconds:-20}"); fi

# One target: its log in build-fuzz/logs/<target>.log, a summary line on stdout.
run_one() {
  local name=$1
  local corpus=$dir/corpus/$name artifacts=$dir/artifacts/$name/ log=$dir/logs/$name.log
  mkdir -p "$corpus" "$artifacts" "$dir/logs"
  local options=()
  case $name in
    ferro_http_head_fuzz | admin_request_fuzz | hello_request_fuzz | origin_response_fuzz | \
      zlayer_front_door_fuzz) options+=(-dict=tests/fuzz/http.dict) ;;
    config_loader_fuzz) options+=(-dict=tests/fuzz/config.dict) ;;
  esac
  local status=0
  nice -n "${FUZZ_NICE:-0}" "$dir/tests/fuzz/$name" "${limit[@]}" "${options[@]}" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts" \
    "$corpus" "tests/fuzz/corpus/$name" >"$log" 2>&1 || status=$?
  local execs secs last cov ft corp
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep ' cov: ' | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
  local verdict=ok
  if [ "$status" -ne 0 ]; then verdict="FAILED (exit $status, see $log and $artifacts)"; fi
  printf '%-36s execs %-10s seconds %-6s cov %-6s ft %-6s corpus %-12s %s\n' \
    "$name" "${execs:-?}" "${secs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$verdict"
  return "$status"
}

mkdir -p "$dir/logs"
for name in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run_one "$name" >"$dir/logs/$name.summary" 2>&1 &
done
wait || true
echo "fuzz: ran ${#targets[@]} targets in $((SECONDS - started)) s, $jobs at a time"
failed=0
for name in "${targets[@]}"; do
  cat "$dir/logs/$name.summary"
  grep -q FAILED "$dir/logs/$name.summary" && failed=1
done
if [ "$failed" -ne 0 ]; then
  echo "fuzz: a target failed" >&2
  exit 1
fi
