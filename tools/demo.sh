#!/usr/bin/env bash
# The main job, end to end on loopback: install, build, then run a real ferro tunnel —
# hello-world origin, tunnel server, tunnel client — and send requests through the public side.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup-debian.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build -j "$(nproc)" --target tunnelctl tunnelkit_plugins

bin=build/bin/tunnelctl
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {  # wait_for FILE TEXT
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "demo: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

origin_port=$(free_port); control_port=$(free_port); public_port=$(free_port)
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

echo "== tunnelctl backends"
$bin backends

echo "== hello-world origin on 127.0.0.1:$origin_port"
$bin hello --listen "127.0.0.1:$origin_port" >"$work/origin.log" 2>&1 & pids+=($!)
wait_for "$work/origin.log" "listening"

echo "== ferro server: control 127.0.0.1:$control_port, public HTTP 127.0.0.1:$public_port"
$bin serve --backend ferro --listen "127.0.0.1:$control_port" --http "127.0.0.1:$public_port" \
  --token "$token" >"$work/server.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$control_port) 2>/dev/null && break; sleep 0.1; done

echo "== ferro client exposing http://127.0.0.1:$origin_port as tunnel 'demo'"
$bin --backend ferro --server "127.0.0.1:$control_port" --token "$token" \
  --url "http://127.0.0.1:$origin_port" --tunnel-id demo >"$work/client.log" 2>&1 & pids+=($!)
wait_for "$work/client.log" "demo"
sleep 0.3

echo "== GET http://127.0.0.1:$public_port/ with Host: demo (through the tunnel)"
curl -sS --max-time 10 -H "Host: demo" "http://127.0.0.1:$public_port/" | head -20
echo
echo "== POST /echo through the tunnel"
curl -sS --max-time 10 -H "Host: demo" --data "hello through tunnelkit" "http://127.0.0.1:$public_port/echo"
echo
echo "== 10 MB from /bytes through the tunnel vs. direct (SHA-256)"
curl -sS --max-time 30 -H "Host: demo" "http://127.0.0.1:$public_port/bytes/10485760" | sha256sum
curl -sS --max-time 30 "http://127.0.0.1:$origin_port/bytes/10485760" | sha256sum
echo "== unknown host"
curl -sS --max-time 10 -o /dev/null -w "%{http_code}\n" -H "Host: nope" "http://127.0.0.1:$public_port/"
echo "== client log"
cat "$work/client.log"
