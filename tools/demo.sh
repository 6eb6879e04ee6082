#!/usr/bin/env bash
# The main job, end to end on loopback: set up, build, and show what tunnelkit does today.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup-debian.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build -j "$(nproc)" --target tunnelctl tunnelkit_plugins

echo "== tunnelctl backends"
build/bin/tunnelctl backends
