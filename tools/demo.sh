#!/usr/bin/env bash
# The main job, end to end on loopback: install, build, then run real tunnels and send requests
# through their public side: a ferro tunnel (hello-world origin, tunnel server, tunnel client),
# a zlayer node-to-node link (server, link agent exposing the origin on a public port, and an
# access forward), then a Cloudflare quick tunnel against tools/cfedge, our local emulator of
# Cloudflare's API and edge (Cloudflare itself cannot be reached from here).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup-debian.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build -j "$(nproc)" --target tunnelctl tunnelkit_plugins cfedge

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
zlayer_port=$(free_port)
# Ten public ports for the zlayer server: a free range picked at random above the usual ones.
zlayer_low=$((40000 + RANDOM % 20000))
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

echo
echo "== zlayer: server on ws://127.0.0.1:$zlayer_port/tunnel/v1, public ports $zlayer_low-$((zlayer_low + 9))"
# The server stores only SHA-256 hashes of the tokens it accepts.
zlayer_token="tun_$token"
printf '%s\n' "$(printf '%s' "$zlayer_token" | sha256sum | cut -d' ' -f1)" >"$work/zlayer-tokens.txt"
$bin serve --backend zlayer --listen "127.0.0.1:$zlayer_port" \
  --ports "$zlayer_low-$((zlayer_low + 9))" --tokens "$work/zlayer-tokens.txt" \
  >"$work/zlayer-server.log" 2>&1 & pids+=($!)
wait_for "$work/zlayer-server.log" "zlayer server listening"
echo "== zlayer link exposing http://127.0.0.1:$origin_port as service 'web'"
$bin link --backend zlayer --server "ws://127.0.0.1:$zlayer_port/tunnel/v1" --token "$zlayer_token" \
  --service "web:$origin_port" >"$work/zlayer-link.log" 2>&1 & pids+=($!)
wait_for "$work/zlayer-link.log" "service web (tcp) -> public port"
grep -v '^\[' "$work/zlayer-link.log"
web_port=$(sed -n 's/.*service web (tcp) -> public port \([0-9]*\).*/\1/p' "$work/zlayer-link.log")
echo "== GET http://127.0.0.1:$web_port/ (the server's public port, through the link)"
curl -sS --max-time 10 "http://127.0.0.1:$web_port/" | head -5
echo
echo "== 10 MB from /bytes through the link vs. direct (SHA-256)"
curl -sS --max-time 30 "http://127.0.0.1:$web_port/bytes/10485760" | sha256sum
curl -sS --max-time 30 "http://127.0.0.1:$origin_port/bytes/10485760" | sha256sum
echo "== zlayer access: a local forward to the origin that ends after its TTL"
access_port=$(free_port)
$bin access --backend zlayer --endpoint "127.0.0.1:$origin_port" --local "127.0.0.1:$access_port" \
  --ttl 30s >"$work/zlayer-access.log" 2>&1 & pids+=($!)
wait_for "$work/zlayer-access.log" "access: forwarding"
curl -sS --max-time 10 -o /dev/null -w "GET http://127.0.0.1:$access_port/ -> %{http_code}\n" \
  "http://127.0.0.1:$access_port/"
echo
echo "== Cloudflare quick tunnel: cfedge (quick-tunnel API, QUIC edge, public HTTP) on loopback"
build/bin/cfedge --api-listen 127.0.0.1:0 --quic-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --write-ca "$work/edge-ca.pem" >"$work/cfedge.log" 2>&1 & pids+=($!)
wait_for "$work/cfedge.log" "ready"
api=$(sed -n 's/^api //p' "$work/cfedge.log")
edge=$(sed -n 's/^edge quic //p' "$work/cfedge.log" | head -1)
public=$(sed -n 's/^http //p' "$work/cfedge.log")

echo "== tunnelctl --backend cloudflare --url http://127.0.0.1:$origin_port (edge $edge)"
$bin --backend cloudflare --url "http://127.0.0.1:$origin_port" --quick-service "$api" \
  --edge "$edge" --edge-ca "$work/edge-ca.pem" --metrics 127.0.0.1:0 \
  --url-file "$work/url.txt" >"$work/cf.log" 2>&1 & cf_pid=$!; pids+=($cf_pid)
wait_for "$work/cf.log" "connection 0 registered"
grep -v '^\[' "$work/cf.log"
host=$(sed 's|https://||' "$work/url.txt")
admin=$(sed -n 's/.*admin listening on //p' "$work/cf.log")

echo "== GET https://$host/ (sent to cfedge's public listener $public with Host: $host)"
curl -sS --max-time 10 -H "Host: $host" "http://$public/" | head -5
echo
echo "== 10 MB from /bytes through the quick tunnel vs. direct (SHA-256)"
curl -sS --max-time 30 -H "Host: $host" "http://$public/bytes/10485760" | sha256sum
curl -sS --max-time 30 "http://127.0.0.1:$origin_port/bytes/10485760" | sha256sum
echo "== server-sent events arrive one by one (timestamps)"
curl -sSN --max-time 10 -H "Host: $host" "http://$public/sse?n=3&interval_ms=500" |
  while IFS= read -r line; do
    if [ -n "$line" ]; then echo "$(date +%T.%N | cut -c1-12) $line"; fi
  done
echo "== /ready and /quicktunnel on the metrics address $admin"
curl -sS --max-time 5 "http://$admin/ready"; echo
curl -sS --max-time 5 "http://$admin/quicktunnel"; echo
echo "== SIGTERM: unregister, drain, exit"
kill -TERM "$cf_pid"; wait "$cf_pid" && echo "exit status 0"
grep -E "unregistered" "$work/cf.log"
