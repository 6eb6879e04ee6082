"""Helpers of the end-to-end benchmark (bench_e2e.py): processes, free ports, HTTP probes,
waiting, and the measurements (iperf3, wrk, held connections)."""
import argparse
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

STEP_TIMEOUT_SLACK = 20  # seconds allowed on top of a measurement's own duration

class PathFailed(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, timeout, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


class Proc:
    """A child process whose output goes to a log file; stopped with SIGTERM then SIGKILL."""

    def __init__(self, name, cmd, workdir, env=None):
        self.name = name
        self.cmd = cmd
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.started = time.monotonic()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def output(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def last_line(self):
        lines = [l for l in self.output().splitlines() if l.strip()]
        return lines[-1][-200:] if lines else "(no output)"

    def wait_output(self, pattern, timeout):
        """Waits until the log matches `pattern`; returns the match."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(self.output())
            if m:
                return m
            if not self.alive():
                raise PathFailed(f"{self.name} exited ({self.proc.returncode}): {self.last_line()}")
            time.sleep(0.02)
        raise PathFailed(f"{self.name}: no '{pattern}' within {timeout}s: {self.last_line()}")

    def stop(self):
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self.log_file.close()


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def http_probe(host, port, host_header, path="/", timeout=1.0):
    """(got a 200, what came back: status line and the start of the body, for messages)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n"
                      .encode())
            data = b""
            while len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
                if b"\r\n" in data and not data.startswith(b"HTTP/1.1 5"):
                    break
    except OSError as ex:
        return False, str(ex)
    ok = data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
    head, _, body = data.partition(b"\r\n\r\n")
    text = (head.split(b"\r\n")[0] + b" " + body[:160]).decode(errors="replace")
    return ok, " ".join(text.split())


def http_ok(host, port, host_header, path="/", timeout=1.0):
    return http_probe(host, port, host_header, path, timeout)[0]


def wait_until(ready, timeout, procs):
    """Calls ready() until it is true (True) or `timeout` seconds pass (False); a process of
    `procs` that exits meanwhile fails the path."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        for p in procs:
            if not p.alive():
                raise PathFailed(f"{p.name} exited ({p.proc.returncode}): {p.last_line()}")
        time.sleep(0.02)
    return False


def wait_http(host, port, host_header, timeout, procs=()):
    last = ["nothing"]

    def answered():
        ok, last[0] = http_probe(host, port, host_header)
        return ok

    if not wait_until(answered, timeout, procs):
        raise PathFailed(
            f"no HTTP 200 through {host}:{port} within {timeout}s (last answer: {last[0]})")


def wait_port(port, timeout, procs=()):
    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    if not wait_until(listening, timeout, procs):
        raise PathFailed(f"nothing listening on 127.0.0.1:{port} within {timeout}s")


# ---------------------------------------------------------------------------------- measurement


def iperf(port, streams, duration):
    # The iperf3 server takes a moment to be free again after a run whose connections went
    # through a tunnel: "busy" is retried for a few seconds.
    for _ in range(10):
        try:
            return iperf_once(port, streams, duration)
        except PathFailed as ex:
            if "busy" not in str(ex):
                raise
            time.sleep(1)
    raise PathFailed("iperf3: the server stayed busy")


def iperf_once(port, streams, duration):
    r = run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-P", str(streams), "-t",
             str(duration), "-J", "--connect-timeout", "5000"],
            timeout=duration + STEP_TIMEOUT_SLACK)
    try:
        data = json.loads(r.stdout)
    except json.JSONDecodeError:
        raise PathFailed(f"iperf3: {(r.stderr or r.stdout).strip()[-200:]}")
    if "error" in data:
        raise PathFailed(f"iperf3: {data['error']}")
    return data["end"]["sum_received"]["bits_per_second"] / 1e9  # Gbit/s


def parse_latency(text):
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    if not m:
        return None
    value = float(m.group(1))
    return {"us": value / 1000.0, "ms": value, "s": value * 1000.0}[m.group(2)]


def parse_size(text):
    m = re.match(r"([\d.]+)([KMGT]?)B$", text)
    if not m:
        return None
    return float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30,
                                "T": 1 << 40}[m.group(2)]


def wrk(host, port, host_header, path, connections, duration):
    threads = min(2, connections)
    r = run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
             "--timeout", "5s", "--latency", "-H", f"Host: {host_header}",
             f"http://{host}:{port}{path}"], timeout=duration + STEP_TIMEOUT_SLACK)
    out = r.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if r.returncode != 0 or not rps:
        raise PathFailed(f"wrk: {(r.stderr or out).strip()[-200:]}")
    result = {"rps": float(rps.group(1))}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        result[f"p{pct}"] = parse_latency(m.group(1)) if m else None
    tr = re.search(r"Transfer/sec:\s+(\S+)", out)
    result["bytes_per_s"] = parse_size(tr.group(1)) if tr else None
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock_err = re.search(r"Socket errors: (.*)", out)
    result["errors"] = (int(errors.group(1)) if errors else 0)
    if sock_err:
        result["socket_errors"] = sock_err.group(1)
    requests = re.search(r"(\d+) requests in", out)
    if requests and int(requests.group(1)) > 0 and result["errors"] > int(requests.group(1)) // 2:
        raise PathFailed(f"wrk: {result['errors']} of {requests.group(1)} responses not 2xx")
    return result


def hold_connections(host, port, host_header, count, timeout):
    """Opens `count` connections through the tunnel, each with one completed keep-alive
    request, and returns the open sockets (the caller closes them)."""
    socks = []
    request = (f"GET / HTTP/1.1\r\nHost: {host_header}\r\n\r\n").encode()
    deadline = time.monotonic() + timeout
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            try:
                s = socket.create_connection((host, port), timeout=5)
            except OSError:
                break
            socks.append(s)
            try:
                s.sendall(request)
            except OSError:
                pass
        ok = 0
        for s in socks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            s.settimeout(min(5.0, remaining))
            try:
                data = s.recv(4096)
                if data.startswith(b"HTTP/1.1 200"):
                    ok += 1
            except OSError:
                pass
        return socks, ok
    except Exception:
        for s in socks:
            s.close()
        raise
