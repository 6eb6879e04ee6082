#!/usr/bin/env bash
# The end-to-end benchmark in one command (docs/benchmarks.md):
#   bench/run-e2e.sh [harness flags...]      e.g. --runs 5 --duration 10 --paths direct,ferro-tls
# 1. installs the Debian packages it drives (iperf3 wrk openssh-server openssh-client
#    nginx-light) if any is missing — services are not started: the harness runs its own
#    sshd and nginx with private configs in a temp dir;
# 2. builds tunnelctl, the backend plugins and cfedge in build/ (Release; nice, -j2 at most);
# 3. runs bench/e2e/bench_e2e.py, which prints the table and writes it to build/bench-e2e.md
#    (raw figures: build/bench-e2e.json).
# Environment: BUILD_DIR (default build), JOBS (default 2), SKIP_BUILD=1 to use the build as is.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
jobs="${JOBS:-2}"

packages=(iperf3 wrk openssh-server openssh-client nginx-light)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "run-e2e: installing ${missing[*]}" >&2
  as_root=()
  [[ $(id -u) -eq 0 ]] || as_root=(sudo)
  # Installing openssh-server or nginx must not start the system's services: where no
  # policy-rc.d forbids it already, one is put in place for the install only.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    added_policy=1
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${missing[@]}" || {
    "${as_root[@]}" apt-get update
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y \
      --no-install-recommends "${missing[@]}"
  }
  if ((added_policy)); then "${as_root[@]}" rm -f "$policy"; fi
fi

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  if [[ ! -f "$build/build.ninja" ]]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DTUNNELKIT_BUILD_TESTS=OFF -DTUNNELKIT_BUILD_BENCH=OFF >&2
  fi
  nice ninja -C "$build" -j "$jobs" tunnelctl cfedge tunnelkit_plugins >&2
fi

exec python3 "$root/bench/e2e/bench_e2e.py" --build "$build" --out "$build/bench-e2e.md" \
  --json "$build/bench-e2e.json" "$@"
