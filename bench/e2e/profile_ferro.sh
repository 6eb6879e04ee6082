#!/usr/bin/env bash
# Profiles the ferro server and client with callgrind during one short iperf3 run through the
# TCP ingress (docs/benchmarks.md, "Where the time goes").
#   bench/e2e/profile_ferro.sh [BUILD_DIR] [plain|tls] [SECONDS]
# Writes callgrind.out.server / callgrind.out.client and prints the top of each
# (callgrind_annotate, inclusive). Loopback only, ephemeral ports, bounded in time.
set -euo pipefail
build="$(cd "${1:-build}" && pwd)"
mode="${2:-plain}"
seconds="${3:-3}"
out="$(mktemp -d /tmp/tunnelkit-profile-XXXXXX)"
tunnelctl="$build/bin/tunnelctl"
plugins="$build/plugins"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin=$(port); listen=$(port); tcp=$(port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

server_tls=() client_tls=()
if [[ $mode == tls ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$out/key.pem" \
    -out "$out/cert.pem" -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
  server_tls=(--tls-cert "$out/cert.pem" --tls-key "$out/key.pem")
  client_tls=(--tls --tls-ca "$out/cert.pem" --tls-server-name localhost)
fi

iperf3 -s -p "$origin" >"$out/iperf3-server.log" 2>&1 &
pids+=($!)
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out.server" \
  "$tunnelctl" serve --backend ferro --listen "127.0.0.1:$listen" --tcp "127.0.0.1:$tcp" \
  --token profile-token --plugin-dir "$plugins" "${server_tls[@]}" >"$out/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do grep -q 'listening for tunnel clients' "$out/server.log" && break; sleep 0.1; done
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out.client" \
  "$tunnelctl" --backend ferro --server "127.0.0.1:$listen" --token profile-token \
  --url "tcp://127.0.0.1:$origin" --plugin-dir "$plugins" "${client_tls[@]}" >"$out/client.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do grep -q 'connected to' "$out/client.log" && break; sleep 0.1; done
timeout $((seconds + 60)) iperf3 -c 127.0.0.1 -p "$tcp" -t "$seconds" --connect-timeout 20000 | tail -n 4
cleanup
pids=()
for side in server client; do
  echo "== $side (inclusive, top 25)"
  callgrind_annotate --inclusive=yes "$out/callgrind.out.$side" 2>/dev/null | sed -n '1,60p' |
    grep -E '^ *[0-9,]+ ' | head -n 25 | cut -c1-200
done
echo "profiles in $out"
