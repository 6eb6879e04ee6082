#!/usr/bin/env bash
# Samples the tunnel processes with `perf record -g` while one workload runs through them
# (docs/benchmarks.md, "Profiles and fixes"). Loopback only, ephemeral ports, bounded in time.
#   bench/e2e/profile_perf.sh [BUILD_DIR] [ferro-plain|ferro-tls|zlayer-ws|ssh-l|cloudflare] \
#     [iperf|http|big] [SECONDS]
# iperf: one iperf3 stream through the TCP ingress; http: wrk, 50 connections, GET / of a small
# page from a private nginx (as the e2e harness); big: one wrk connection downloading a 64 MiB
# body (the harness's GET /big). cloudflare: tunnelctl --backend cloudflare through cfedge (both
# sampled: cfedge is part of the path); it has no TCP ingress, so http or big only.
# Writes perf.data.<role> and prints the top of `perf report --no-children` for each process.
# With CPU_ONLY=1 it does not sample: it prints each tunnel process's CPU time (user + system)
# per 1000 requests (http) or per GB moved (iperf), a figure that holds up on a busy machine
# where throughput does not.
set -euo pipefail
build="$(cd "${1:-build}" && pwd)"
path="${2:-ferro-plain}"
load="${3:-iperf}"
seconds="${4:-3}"
out="$(mktemp -d /tmp/tunnelkit-perf-XXXXXX)"
tunnelctl=("$build/bin/tunnelctl")
plugins="$build/plugins"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_log() { for _ in $(seq 200); do grep -q "$2" "$1" && return 0; sleep 0.1; done; echo "timeout: $1" >&2; cat "$1" >&2; exit 1; }

origin=$(port)
http_origin=$(port)
iperf3 -s -p "$origin" >"$out/iperf3-server.log" 2>&1 &
pids+=($!)
mkdir -p "$out/www"
echo "hello from the benchmark origin" >"$out/www/index.html"
[[ $load == big ]] && head -c $((64 << 20)) /dev/urandom >"$out/www/big"
cat >"$out/nginx.conf" <<EOF
$([[ $(id -u) == 0 ]] && echo "user $(id -un);")
worker_processes 1; daemon off; pid $out/nginx.pid; error_log $out/nginx-error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $out/b; proxy_temp_path $out/p;
  fastcgi_temp_path $out/f; uwsgi_temp_path $out/u; scgi_temp_path $out/s;
  keepalive_requests 1000000; keepalive_timeout 120s; sendfile on;
  server { listen 127.0.0.1:$http_origin; root $out/www; location / { index index.html; } } }
EOF
nginx -c "$out/nginx.conf" -p "$out" &
pids+=($!)

common=(--plugin-dir "$plugins" --log-level info)
roles=()
case "$path" in
  ferro-*)
    listen=$(port) tcp=$(port) http=$(port)
    server_tls=() client_tls=()
    if [[ $path == ferro-tls ]]; then
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$out/key.pem" \
        -out "$out/cert.pem" -days 1 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
      server_tls=(--tls-cert "$out/cert.pem" --tls-key "$out/key.pem")
      client_tls=(--tls --tls-ca "$out/cert.pem" --tls-server-name localhost)
    fi
    "${tunnelctl[@]}" serve --backend ferro --listen "127.0.0.1:$listen" --tcp "127.0.0.1:$tcp" \
      --http "127.0.0.1:$http" --token profile-token-0123 "${common[@]}" "${server_tls[@]}" \
      >"$out/server.log" 2>&1 &
    pids+=($!) && roles+=("server:$!")
    wait_log "$out/server.log" 'listening for tunnel clients'
    "${tunnelctl[@]}" --backend ferro --server "127.0.0.1:$listen" --token profile-token-0123 \
      --url "tcp://127.0.0.1:$origin" --tunnel-id bulk "${common[@]}" "${client_tls[@]}" \
      >"$out/client-bulk.log" 2>&1 &
    pids+=($!) && roles+=("client-bulk:$!")
    wait_log "$out/client-bulk.log" 'connected to'
    "${tunnelctl[@]}" --backend ferro --server "127.0.0.1:$listen" --token profile-token-0123 \
      --url "http://127.0.0.1:$http_origin" --tunnel-id web "${common[@]}" "${client_tls[@]}" \
      >"$out/client-web.log" 2>&1 &
    pids+=($!) && roles+=("client-web:$!")
    wait_log "$out/client-web.log" 'connected to'
    host=web
    ;;
  zlayer-ws)
    listen=$(port) base=$(port)
    tcp=$base http=$((base + 1))
    token=profile-zlayer-token
    printf '%s\n' "$(printf %s "$token" | sha256sum | cut -d' ' -f1)" >"$out/tokens"
    "${tunnelctl[@]}" serve --backend zlayer --listen "127.0.0.1:$listen" \
      --ports "$base-$((base + 3))" --tokens "$out/tokens" "${common[@]}" >"$out/server.log" 2>&1 &
    pids+=($!) && roles+=("server:$!")
    wait_log "$out/server.log" 'zlayer server listening'
    "${tunnelctl[@]}" link --backend zlayer --server "ws://127.0.0.1:$listen/tunnel/v1" \
      --token "$token" --service "bulk:$origin:$tcp" --service "web:$http_origin:$http" \
      "${common[@]}" >"$out/agent.log" 2>&1 &
    pids+=($!) && roles+=("agent:$!")
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$http/" >/dev/null && break; sleep 0.1; done
    host=origin
    ;;
  cloudflare)
    [[ $load == iperf ]] && { echo "cloudflare has no TCP ingress: use http or big" >&2; exit 2; }
    api=$(port) http=$(port)
    quic=$(python3 -c 'import socket; s=socket.socket(type=socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$build/bin/cfedge" --api-listen "127.0.0.1:$api" --quic-listen "127.0.0.1:$quic" \
      --http-listen "127.0.0.1:$http" --write-ca "$out/cfedge-ca.pem" >"$out/edge.log" 2>&1 &
    pids+=($!) && roles+=("edge:$!")
    for _ in $(seq 200); do [[ -s $out/cfedge-ca.pem ]] && break; sleep 0.1; done
    for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$api/" && break; sleep 0.1; done
    "${tunnelctl[@]}" --backend cloudflare --url "http://127.0.0.1:$http_origin" \
      --quick-service "http://127.0.0.1:$api" --edge "127.0.0.1:$quic" \
      --edge-ca "$out/cfedge-ca.pem" "${common[@]}" >"$out/client.log" 2>&1 &
    pids+=($!) && roles+=("client:$!")
    wait_log "$out/client.log" 'trycloudflare.com'
    host=$(grep -o '[A-Za-z0-9-]*\.trycloudflare\.com' "$out/client.log" | head -n 1)
    for _ in $(seq 200); do curl -sf -H "Host: $host" "http://127.0.0.1:$http/" >/dev/null && break; sleep 0.1; done
    ;;
  ssh-l)
    # The reference the targets are set against: a private sshd on loopback, aes128-gcm.
    d="$out/ssh" && mkdir -p "$d" && chmod 700 "$d"
    for key in host_key client_key; do ssh-keygen -q -t ed25519 -N "" -f "$d/$key"; done
    cp "$d/client_key.pub" "$d/authorized_keys" && chmod 600 "$d/authorized_keys"
    sport=$(port) tcp=$(port) http=$(port)
    printf '%s\n' "Port $sport" "ListenAddress 127.0.0.1" "HostKey $d/host_key" \
      "AuthorizedKeysFile $d/authorized_keys" "PidFile $d/sshd.pid" "PasswordAuthentication no" \
      "KbdInteractiveAuthentication no" "PermitRootLogin prohibit-password" "StrictModes no" \
      "UsePAM no" "AllowTcpForwarding yes" "Ciphers aes128-gcm@openssh.com" "LogLevel ERROR" \
      >"$d/sshd_config"
    mkdir -p /run/sshd
    "$(command -v sshd || echo /usr/sbin/sshd)" -D -e -f "$d/sshd_config" >"$out/sshd.log" 2>&1 &
    sshd_pid=$! && pids+=($sshd_pid)
    sleep 0.5
    ssh -N -T -F /dev/null -p "$sport" -i "$d/client_key" -o IdentitiesOnly=yes \
      -o StrictHostKeyChecking=no -o "UserKnownHostsFile=$d/known_hosts" -o BatchMode=yes \
      -o Ciphers=aes128-gcm@openssh.com -o Compression=no -o LogLevel=ERROR \
      -L "127.0.0.1:$tcp:127.0.0.1:$origin" -L "127.0.0.1:$http:127.0.0.1:$http_origin" \
      127.0.0.1 >"$out/ssh.log" 2>&1 &
    pids+=($!) && roles+=("ssh:$!")
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$http/" >/dev/null && break; sleep 0.1; done
    # The forwarding runs in sshd's session process (a child of the listener).
    roles+=("sshd:$(pgrep -P "$sshd_pid" | head -n1)")
    host=origin
    ;;
  *) echo "unknown path $path" >&2; exit 2 ;;
esac
sleep 0.5

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A ticks_before
perf_pids=()
for role in "${roles[@]}"; do
  ticks_before[${role%%:*}]=$(cpu_ticks "${role#*:}")
  [[ ${CPU_ONLY:-0} == 1 ]] && continue
  perf record -F 999 ${PERF_CALLGRAPH:--g} -p "${role#*:}" -o "$out/perf.data.${role%%:*}" -- sleep $((seconds + 1)) \
    >"$out/perf-${role%%:*}.log" 2>&1 &
  perf_pids+=($!)
done
sleep 0.3
if [[ $load == iperf ]]; then
  report=$(timeout $((seconds + 30)) iperf3 -c 127.0.0.1 -p "$tcp" -t "$seconds" \
    --connect-timeout 20000 -J)
  echo "$report" | python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]["sum_received"]; print("received %.2f Gbit/s" % (e["bits_per_second"]/1e9))'
  units=$(echo "$report" | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bytes"]/1e9)')
  unit_name="GB"
elif [[ $load == big ]]; then
  report=$(timeout $((seconds + 30)) wrk -t 1 -c 1 -d "${seconds}s" --timeout 5s \
    -H "Host: $host" "http://127.0.0.1:$http/big")
  echo "$report" | grep -E 'Requests/sec|Transfer/sec'
  units=$(echo "$report" | python3 -c '
import re, sys
t = sys.stdin.read()
m = re.search(r"requests in [^,]+, ([\d.]+)([KMGT]?B) read", t)
print(float(m.group(1)) * {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}[m.group(2)] / 1e9)')
  python3 -c "print('received %.2f Gbit/s' % ($units * 8 / $seconds))"
  unit_name="GB"
else
  report=$(timeout $((seconds + 30)) wrk -t 2 -c 50 -d "${seconds}s" --latency -H "Host: $host" \
    "http://127.0.0.1:$http/")
  echo "$report" | grep -E 'Requests/sec|  50%|  99%'
  units=$(echo "$report" | awk '/requests in/ {print $1 / 1000}')
  unit_name="1000 requests"
fi
hz=$(getconf CLK_TCK)
for role in "${roles[@]}"; do
  r=${role%%:*}
  used=$(( $(cpu_ticks "${role#*:}") - ticks_before[$r] ))
  python3 -c "print('cpu %-12s %7.1f ms per $unit_name' % ('$r', $used * 1000 / $hz / max($units, 1e-9)))"
done
[[ ${CPU_ONLY:-0} == 1 ]] && exit 0
for p in "${perf_pids[@]}"; do wait "$p" || true; done
for role in "${roles[@]}"; do
  r=${role%%:*}
  echo "== $r (self, top 30)"
  perf report -i "$out/perf.data.$r" --no-children --percent-limit 0.7 --stdio -g none \
    2>/dev/null | grep -E '^ +[0-9]' | head -n 30 | cut -c1-160
done
echo "profiles in $out"
