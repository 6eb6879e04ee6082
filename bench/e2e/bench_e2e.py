#!/usr/bin/env python3
"""End-to-end benchmark of every tunnel path on loopback, side by side.

Starts the origins (iperf3 server, a private nginx), then for each path (direct, OpenSSH
-L/-R through a private sshd, ferro plain/TLS, zlayer ws/wss, cloudflare through cfedge)
starts the tunnel, measures, and stops it:
  - time from start to a usable public URL (first HTTP 200 through the tunnel),
  - bulk throughput with iperf3, 1 and 4 streams (raw TCP ingress),
  - HTTP GET of a large body with wrk, 1 connection (throughput for HTTP-only paths),
  - HTTP requests/s and p50/p99 latency with wrk at 1 and 50 connections,
  - resident memory of each tunnel process, idle and with 1000 concurrent connections.
Each measurement is repeated (--runs) and the median is reported, with ratios to direct and
to ssh -L and the targets of issue 8 as pass/miss. Every step has a timeout, the whole run a
deadline; a path that fails is reported as "failed: <reason>" and the run goes on.
--ab-old DIR compares two builds: every path alternates between DIR's binaries and --build's,
round by round, and the table gives both columns and new/old (issue 16's rule: >= 0.95).

Only the Python standard library; external tools: iperf3, wrk, sshd, ssh, ssh-keygen, nginx,
openssl. Everything listens on 127.0.0.1 with ports chosen at run time.
"""
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


def wait_http(host, port, host_header, timeout, procs=()):
    deadline = time.monotonic() + timeout
    last = "nothing"
    while time.monotonic() < deadline:
        ok, last = http_probe(host, port, host_header)
        if ok:
            return
        for p in procs:
            if not p.alive():
                raise PathFailed(f"{p.name} exited ({p.proc.returncode}): {p.last_line()}")
        time.sleep(0.02)
    raise PathFailed(f"no HTTP 200 through {host}:{port} within {timeout}s (last answer: {last})")


def wait_port(port, timeout, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            pass
        for p in procs:
            if not p.alive():
                raise PathFailed(f"{p.name} exited ({p.proc.returncode}): {p.last_line()}")
        time.sleep(0.02)
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


# --------------------------------------------------------------------------------------- paths


class Env:
    """Files and origins shared by all paths."""

    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.build = os.path.abspath(args.build)
        # --build-override PATH=DIR: that path's binaries come from another build tree.
        self.overrides = dict(o.split("=", 1) for o in args.build_override)
        self.iperf_port = free_port()
        self.http_port = free_port()
        self.procs = []

    def start_origins(self):
        # nginx: a private config, one worker, no access log; / is a tiny page, /big a bulk body.
        root = os.path.join(self.tmp, "www")
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("hello from the benchmark origin\n")
        with open(os.path.join(root, "big"), "wb") as f:
            f.write(os.urandom(1 << 20) * self.args.big_mib)
        conf = os.path.join(self.tmp, "nginx.conf")
        with open(conf, "w") as f:
            # As root, workers would drop to "nobody", who cannot read our 0700 temp dir.
            user = f"user {pwd.getpwuid(os.getuid()).pw_name};\n" if os.getuid() == 0 else ""
            f.write(user + f"""worker_processes 1;
daemon off;
pid {self.tmp}/nginx.pid;
error_log {self.tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {self.tmp}/nginx-body;
  proxy_temp_path {self.tmp}/nginx-proxy;
  fastcgi_temp_path {self.tmp}/nginx-fastcgi;
  uwsgi_temp_path {self.tmp}/nginx-uwsgi;
  scgi_temp_path {self.tmp}/nginx-scgi;
  sendfile on;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{self.http_port} default_server;
    server_name _;
    root {root};
    location / {{ index index.html; }}
  }}
}}
""")
        self.procs.append(Proc("nginx", ["nginx", "-c", conf, "-p", self.tmp], self.tmp))
        self.procs.append(Proc("iperf3-server", ["iperf3", "-s", "-p", str(self.iperf_port)],
                               self.tmp))
        wait_port(self.http_port, 10, self.procs)
        wait_port(self.iperf_port, 10, self.procs)
        if not http_ok("127.0.0.1", self.http_port, "origin"):
            raise RuntimeError("nginx origin does not answer 200")

    def make_tls(self):
        """A CA and a certificate for 127.0.0.1/localhost, signed by it."""
        d = os.path.join(self.tmp, "tls")
        os.makedirs(d, exist_ok=True)
        self.ca, self.cert, self.key = (os.path.join(d, n) for n in ("ca.pem", "cert.pem",
                                                                       "key.pem"))
        ca_key = os.path.join(d, "ca-key.pem")
        ext = os.path.join(d, "ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
        csr = os.path.join(d, "req.csr")
        for cmd in (
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", ca_key, "-out", self.ca, "-days", "2", "-subj",
             "/CN=tunnelkit bench CA"],
            ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.key, "-out", csr, "-subj", "/CN=localhost"],
            ["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key,
             "-CAcreateserial", "-out", self.cert, "-days", "2", "-extfile", ext],
        ):
            r = run(cmd, timeout=30)
            if r.returncode != 0:
                raise RuntimeError(f"openssl: {r.stderr.strip()[-300:]}")

    def stop(self):
        for p in reversed(self.procs):
            p.stop()


class Path:
    """A path: start() brings the tunnel up and sets the entry points; stop() tears it down.

    tcp_entry: port where a raw TCP connection reaches the iperf3 server (None: no TCP ingress)
    http_entry: (port, host header) where HTTP reaches nginx
    tunnel_procs: the tunnel's own processes (for RSS); origins are not included
    """

    name = "?"
    has_tcp = True

    def __init__(self, env):
        self.env = env
        self.procs = []
        self.tcp_entry = None
        self.http_entry = None
        self.startup_s = None

    def build_dirs(self):
        """(tunnelctl's build, plugins' build, cfedge's build): --build-override
        PATH=DIR[,PLUGIN_BUILD[,CFEDGE_BUILD]], else --build for all three."""
        dirs = self.env.overrides.get(self.key, self.env.build).split(",")
        while len(dirs) < 3:
            dirs.append(dirs[-1])
        return dirs

    @property
    def cfedge(self):
        return os.path.join(self.build_dirs()[2], "bin", "cfedge")

    def tunnelctl_cmd(self, *args):
        tools, plugins, _ = self.build_dirs()
        return [os.path.join(tools, "bin", "tunnelctl"), *args, "--plugin-dir",
                os.path.join(plugins, "plugins"), "--log-level", "info", "--grace-period", "1s"]

    def spawn(self, name, cmd, env=None):
        p = Proc(f"{self.name}-{name}".replace(" ", "_"), cmd, self.env.tmp, env)
        p.role = name
        self.procs.append(p)
        return p

    @property
    def tunnel_procs(self):
        return [p for p in self.procs if getattr(p, "is_tunnel", True)]

    def stop(self):
        for p in reversed(self.procs):
            p.stop()
        self.procs = []


class Direct(Path):
    name = "direct"

    def start(self):
        self.tcp_entry = self.env.iperf_port
        self.http_entry = (self.env.http_port, "origin")
        self.startup_s = None


class SshBase(Path):
    """A private sshd (own binary invocation, config, host key, authorized_keys) on an
    ephemeral loopback port, run as the current user; ssh with aes128-gcm@openssh.com."""

    def prepare(self):
        d = os.path.join(self.env.tmp, "ssh")
        if not os.path.isdir(d):
            os.makedirs(d)
            for key in ("host_key", "client_key"):
                r = run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                         os.path.join(d, key)], timeout=30)
                if r.returncode != 0:
                    raise PathFailed(f"ssh-keygen: {r.stderr.strip()}")
            shutil.copy(os.path.join(d, "client_key.pub"), os.path.join(d, "authorized_keys"))
            os.chmod(os.path.join(d, "authorized_keys"), 0o600)
            os.chmod(d, 0o700)
        return d

    def start_sshd(self, d):
        port = free_port()
        conf = os.path.join(d, f"sshd_config_{port}")
        with open(conf, "w") as f:
            f.write(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
AuthorizedKeysFile {d}/authorized_keys
PidFile {d}/sshd_{port}.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
AllowTcpForwarding yes
GatewayPorts no
Ciphers aes128-gcm@openssh.com
MaxStartups 100
MaxSessions 100
LogLevel ERROR
""")
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.path.exists("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        p = self.spawn("sshd", [sshd, "-D", "-e", "-f", conf])
        wait_port(port, 10, [p])
        return port

    def ssh_cmd(self, d, port, forwards):
        return ["ssh", "-N", "-T", "-F", "/dev/null", "-p", str(port), "-i",
                os.path.join(d, "client_key"), "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={d}/known_hosts",
                "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
                "-o", "Ciphers=aes128-gcm@openssh.com", "-o", "Compression=no",
                "-o", "LogLevel=ERROR", *forwards, "127.0.0.1"]


class SshLocal(SshBase):
    name = "ssh -L"

    def start(self):
        d = self.prepare()
        port = self.start_sshd(d)
        tcp, http = free_port(), free_port()
        t0 = time.monotonic()
        ssh = self.spawn("ssh", self.ssh_cmd(d, port, [
            "-L", f"127.0.0.1:{tcp}:127.0.0.1:{self.env.iperf_port}",
            "-L", f"127.0.0.1:{http}:127.0.0.1:{self.env.http_port}"]))
        wait_http("127.0.0.1", http, "origin", 20, [ssh])
        self.startup_s = time.monotonic() - t0
        self.tcp_entry, self.http_entry = tcp, (http, "origin")


class SshRemote(SshBase):
    name = "ssh -R"

    def start(self):
        d = self.prepare()
        port = self.start_sshd(d)
        tcp, http = free_port(), free_port()
        t0 = time.monotonic()
        ssh = self.spawn("ssh", self.ssh_cmd(d, port, [
            "-R", f"127.0.0.1:{tcp}:127.0.0.1:{self.env.iperf_port}",
            "-R", f"127.0.0.1:{http}:127.0.0.1:{self.env.http_port}"]))
        wait_http("127.0.0.1", http, "origin", 20, [ssh])
        self.startup_s = time.monotonic() - t0
        self.tcp_entry, self.http_entry = tcp, (http, "origin")

    @property
    def tunnel_procs(self):
        # With -R the public listener is in the sshd session process (a child of sshd -D).
        return self.procs


class Ferro(Path):
    tls = False
    client_extra = []

    def __init__(self, env):
        super().__init__(env)
        self.name = "ferro TLS" if self.tls else "ferro plain"

    def start(self):
        e = self.env
        listen, http, tcp = free_port(), free_port(), free_port()
        token = "bench-token-0123456789"
        serve = ["serve", "--backend", "ferro", "--listen", f"127.0.0.1:{listen}", "--http",
                 f"127.0.0.1:{http}", "--tcp", f"127.0.0.1:{tcp}", "--token", token]
        if self.tls:
            serve += ["--tls-cert", e.cert, "--tls-key", e.key]
        server = self.spawn("server", self.tunnelctl_cmd(*serve))
        server.wait_output(r"listening for tunnel clients", 20)  # no probe: it would log
        client = ["--backend", "ferro", "--server", f"127.0.0.1:{listen}", "--token", token,
                  *self.client_extra]
        if self.tls:
            client += ["--tls", "--tls-ca", e.ca, "--tls-server-name", "localhost"]
        # The server sends raw TCP ingress to the first registered client that offers tcp:
        # the bulk client registers first, then the HTTP one (routed by Host = tunnel id),
        # whose start is timed.
        bulk = self.spawn("client-bulk", self.tunnelctl_cmd(
            *client, "--url", f"tcp://127.0.0.1:{e.iperf_port}", "--tunnel-id", "bulk"))
        bulk.wait_output(r"connected to", 20)
        t0 = time.monotonic()
        web = self.spawn("client-web", self.tunnelctl_cmd(
            *client, "--url", f"http://127.0.0.1:{e.http_port}", "--tunnel-id", "web"))
        wait_http("127.0.0.1", http, "web", 20, [server, web, bulk])
        self.startup_s = time.monotonic() - t0
        self.http_entry = (http, "web")
        self.tcp_entry = tcp


class FerroTls(Ferro):
    tls = True


class FerroTlsTcp(Path):
    """ferro TLS as a TCP forward, like ssh -L: wrk's connections go through the server's TCP
    ingress to a client whose service is nginx, one ferro stream per connection (the HTTP
    ingress opens one per request and both ends parse HTTP). HTTP figures only."""
    name = "ferro TLS, TCP ingress"

    def start(self):
        e = self.env
        listen, tcp = free_port(), free_port()
        token = "bench-token-0123456789"
        server = self.spawn("server", self.tunnelctl_cmd(
            "serve", "--backend", "ferro", "--listen", f"127.0.0.1:{listen}", "--tcp",
            f"127.0.0.1:{tcp}", "--token", token, "--tls-cert", e.cert, "--tls-key", e.key))
        server.wait_output(r"listening for tunnel clients", 20)
        t0 = time.monotonic()
        client = self.spawn("client", self.tunnelctl_cmd(
            "--backend", "ferro", "--server", f"127.0.0.1:{listen}", "--token", token, "--tls",
            "--tls-ca", e.ca, "--tls-server-name", "localhost", "--url",
            f"tcp://127.0.0.1:{e.http_port}", "--tunnel-id", "web"))
        wait_http("127.0.0.1", tcp, "origin", 20, [server, client])
        self.startup_s = time.monotonic() - t0
        self.http_entry = (tcp, "origin")


class FerroNoFlow(Ferro):
    """Diagnostic (not in the default set): ferro plain without per-stream credit windows."""
    client_extra = ["--no-flow-control"]

    def __init__(self, env):
        super().__init__(env)
        self.name = "ferro plain, no tk-flow"


class Zlayer(Path):
    tls = False

    def __init__(self, env):
        super().__init__(env)
        self.name = "zlayer wss" if self.tls else "zlayer ws"

    def start(self):
        e = self.env
        token = "bench-zlayer-token"
        tokens = os.path.join(e.tmp, "zlayer-tokens")
        with open(tokens, "w") as f:
            import hashlib
            f.write(hashlib.sha256(token.encode()).hexdigest() + "\n")
        listen = free_port()
        # A small public port range, chosen free now (the server binds on registration).
        base = None
        for _ in range(50):
            cand = free_port()
            if cand + 4 < 65535 and all(self._port_free(cand + i) for i in range(4)):
                base = cand
                break
        if base is None:
            raise PathFailed("no 4 consecutive free ports for the public range")
        tcp, http = base, base + 1
        serve = ["serve", "--backend", "zlayer", "--listen", f"127.0.0.1:{listen}", "--ports",
                 f"{base}-{base + 3}", "--tokens", tokens]
        if self.tls:
            serve += ["--tls-cert", e.cert, "--tls-key", e.key]
        server = self.spawn("server", self.tunnelctl_cmd(*serve))
        server.wait_output(r"zlayer server listening", 20)
        scheme = "wss" if self.tls else "ws"
        link = ["link", "--backend", "zlayer", "--server",
                f"{scheme}://127.0.0.1:{listen}/tunnel/v1", "--token", token,
                "--service", f"bulk:{e.iperf_port}:{tcp}", "--service",
                f"web:{e.http_port}:{http}"]
        if self.tls:
            link += ["--tls-ca", e.ca]
        t0 = time.monotonic()
        agent = self.spawn("agent", self.tunnelctl_cmd(*link))
        wait_http("127.0.0.1", http, "origin", 20, [server, agent])
        self.startup_s = time.monotonic() - t0
        self.tcp_entry, self.http_entry = tcp, (http, "origin")

    @staticmethod
    def _port_free(port):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                return False


class ZlayerTls(Zlayer):
    tls = True


class Cloudflare(Path):
    name = "cloudflare"
    has_tcp = False

    def start(self):
        e = self.env
        api, quic, http = free_port(), free_udp_port(), free_port()
        ca = os.path.join(e.tmp, "cfedge-ca.pem")
        edge = self.spawn("cfedge", [self.cfedge, "--api-listen", f"127.0.0.1:{api}",
                                     "--quic-listen", f"127.0.0.1:{quic}", "--http-listen",
                                     f"127.0.0.1:{http}", "--write-ca", ca])
        edge.is_tunnel = False  # the emulated edge is Cloudflare's side, not our process
        wait_port(http, 20, [edge])
        wait_port(api, 20, [edge])
        t0 = time.monotonic()
        client = self.spawn("client", self.tunnelctl_cmd(
            "--backend", "cloudflare", "--url", f"http://127.0.0.1:{e.http_port}",
            "--quick-service", f"http://127.0.0.1:{api}", "--edge", f"127.0.0.1:{quic}",
            "--edge-ca", ca))
        m = client.wait_output(r"https://([A-Za-z0-9-]+\.trycloudflare\.com)", 20)
        host = m.group(1)
        wait_http("127.0.0.1", http, host, 20, [edge, client])
        self.startup_s = time.monotonic() - t0
        self.http_entry = (http, host)


PATHS = {
    "direct": Direct,
    "ssh-L": SshLocal,
    "ssh-R": SshRemote,
    "ferro-plain": Ferro,
    "ferro-tls": FerroTls,
    "ferro-tls-tcp": FerroTlsTcp,
    "zlayer-ws": Zlayer,
    "zlayer-wss": ZlayerTls,
    "cloudflare": Cloudflare,
}
# Diagnostic paths, run only when named in --paths.
EXTRA_PATHS = {"ferro-plain-noflow": FerroNoFlow}


def tree_pids(pid):
    """pid and its descendants (sshd forks a session process per login)."""
    pids = [pid]
    try:
        out = run(["ps", "-e", "-o", "pid=,ppid="], timeout=10).stdout
    except subprocess.TimeoutExpired:
        return pids
    children = {}
    for line in out.split("\n"):
        parts = line.split()
        if len(parts) == 2:
            children.setdefault(int(parts[1]), []).append(int(parts[0]))
    i = 0
    while i < len(pids):
        pids.extend(children.get(pids[i], []))
        i += 1
    return pids


def proc_title(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace").strip() or str(pid)
    except OSError:
        return str(pid)


def tunnel_rss(path):
    """{process name: RSS MB} of the tunnel's processes (sshd: its session children too)."""
    result = {}
    for p in path.tunnel_procs:
        if p.name.endswith("sshd"):
            for pid in tree_pids(p.pid)[1:]:
                v = rss_mb(pid)
                if v is not None:
                    result[f"{proc_title(pid)}[{pid}]"] = v
        else:
            v = rss_mb(p.pid)
            if v is not None:
                result[getattr(p, "role", p.name)] = v
    return result


# -------------------------------------------------------------------------------------- running


def measure_path(path, args, deadline):
    res = {"name": path.name}
    t_start = time.monotonic()
    try:
        path.start()
    except (PathFailed, subprocess.TimeoutExpired, OSError) as ex:
        res["failed"] = str(ex)
        return res
    res["startup_s"] = path.startup_s
    time.sleep(0.5)
    res["rss_idle"] = tunnel_rss(path)
    d = args.duration

    def repeat(key, fn):
        values = []
        for i in range(args.runs):
            if time.monotonic() > deadline:
                res.setdefault("notes", []).append(f"{key}: stopped by the global deadline")
                break
            try:
                values.append(fn())
            except (PathFailed, subprocess.TimeoutExpired) as ex:
                res.setdefault("errors", {})[key] = str(ex)[:200]
                break
        res[key + "_runs"] = values
        return values

    if path.tcp_entry:
        for streams in (1, 4):
            v = repeat(f"iperf{streams}", lambda s=streams: iperf(path.tcp_entry, s, d))
            if v:
                res[f"iperf{streams}"] = statistics.median(v)
    port, host = path.http_entry
    v = repeat("get_big", lambda: wrk("127.0.0.1", port, host, "/big", 1, d)["bytes_per_s"])
    v = [x for x in v if x]
    if v:
        res["get_big"] = statistics.median(v) * 8 / 1e9  # Gbit/s
    for conns in (1, 50):
        v = repeat(f"http{conns}", lambda c=conns: wrk("127.0.0.1", port, host, "/", c, d))
        if v:
            res[f"http{conns}"] = {
                "rps": statistics.median([x["rps"] for x in v]),
                "p50": statistics.median([x["p50"] for x in v if x["p50"] is not None] or [0]),
                "p99": statistics.median([x["p99"] for x in v if x["p99"] is not None] or [0]),
            }
    # 1000 concurrent connections, each with one answered request, held open.
    if args.connections > 0 and time.monotonic() < deadline:
        socks, ok = hold_connections("127.0.0.1", port, host, args.connections, 60)
        try:
            time.sleep(0.5)
            res["rss_1000"] = tunnel_rss(path)
            res["held_ok"] = ok
            res["held_open"] = len(socks)
        finally:
            for s in socks:
                s.close()
    res["elapsed_s"] = time.monotonic() - t_start
    return res


def fmt(v, digits=2):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def cell(text):
    """Text made safe for one markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def metric(res, key):
    v = res.get(key)
    if isinstance(v, dict):
        return v
    return v


def render(results, args, load_before, load_after, started):
    by = {r["name"]: r for r in results}
    direct = by.get("direct", {})
    sshl = by.get("ssh -L", {})
    out = []
    out.append(f"tunnelkit end-to-end benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}; "
               f"{args.runs} runs of {args.duration}s per figure, medians; "
               f"{os.cpu_count()} CPUs; load average before {load_before}, after {load_after}")
    if args.build_override:
        out.append("")
        out.append("Binaries from other build trees for: " + ", ".join(args.build_override))
    out.append("")
    out.append("Throughput (Gbit/s; iperf3 through the TCP ingress; GET /big = one wrk connection "
               f"downloading a {args.big_mib} MiB body over HTTP):")
    out.append("")
    out.append("| path | iperf3 1 stream | ×direct | ×ssh -L | iperf3 4 streams | ×direct | GET /big | ×direct | ×ssh -L | start→URL (s) |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "failed" in r:
            out.append(f"| {r['name']} | failed: {cell(r['failed'])} |" + " |" * 9)
            continue
        i1, i4, gb = r.get("iperf1"), r.get("iperf4"), r.get("get_big")
        na = "n/a (HTTP only)" if r.get("no_tcp") else None
        out.append("| " + " | ".join([
            r["name"], na or fmt(i1), fmt(ratio(i1, direct.get("iperf1"))),
            fmt(ratio(i1, sshl.get("iperf1"))), na or fmt(i4), fmt(ratio(i4, direct.get("iperf4"))),
            fmt(gb), fmt(ratio(gb, direct.get("get_big"))), fmt(ratio(gb, sshl.get("get_big"))),
            fmt(r.get("startup_s"), 3)]) + " |")
    out.append("")
    out.append("HTTP (wrk, GET / of a 32-byte page from nginx; req/s and latency in ms):")
    out.append("")
    out.append("| path | 1 conn req/s | p50 | p99 | 50 conns req/s | ×direct | ×ssh -L | p50 | p99 |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "failed" in r:
            out.append(f"| {r['name']} | failed: {cell(r['failed'])} |" + " |" * 7)
            continue
        h1, h50 = r.get("http1") or {}, r.get("http50") or {}
        d50, s50 = (direct.get("http50") or {}).get("rps"), (sshl.get("http50") or {}).get("rps")
        out.append("| " + " | ".join([
            r["name"], fmt(h1.get("rps"), 0), fmt(h1.get("p50"), 3), fmt(h1.get("p99"), 3),
            fmt(h50.get("rps"), 0), fmt(ratio(h50.get("rps"), d50)),
            fmt(ratio(h50.get("rps"), s50)), fmt(h50.get("p50"), 3),
            fmt(h50.get("p99"), 3)]) + " |")
    out.append("")
    out.append(f"Resident memory per tunnel process (MB), idle and with {args.connections} "
               "concurrent connections held open (answered/opened):")
    out.append("")
    out.append("| path | idle | with connections | answered/opened |")
    out.append("|---|---|---|---|")
    for r in results:
        if "failed" in r or r["name"] == "direct":
            continue
        idle = ", ".join(f"{k} {v:.1f}" for k, v in (r.get("rss_idle") or {}).items())
        busy = ", ".join(f"{k} {v:.1f}" for k, v in (r.get("rss_1000") or {}).items())
        out.append(f"| {r['name']} | {idle or '—'} | {busy or '—'} | "
                   f"{r.get('held_ok', '—')}/{r.get('held_open', '—')} |")
    out.append("")
    # Targets of issue 8.
    out.append("Targets:")
    out.append("")
    out.append("| target | measured | result |")
    out.append("|---|---|---|")

    def target(label, value, ok, shown):
        verdict = "not measured" if value is None else ("pass" if ok else "miss")
        out.append(f"| {label} | {shown} | {verdict} |")

    def get(name, key, sub=None):
        r = by.get(name) or {}
        if "failed" in r:
            return None
        v = r.get(key)
        if sub and isinstance(v, dict):
            return v.get(sub)
        return v if not isinstance(v, dict) else None

    v = ratio(get("ferro plain", "iperf1"), get("direct", "iperf1"))
    target("ferro plain ≥ 0.5× direct, 1 stream", v, v is not None and v >= 0.5, fmt(v) + "×")
    v = ratio(get("ferro TLS", "iperf1"), get("ssh -L", "iperf1"))
    target("ferro TLS ≥ 1.2× ssh -L, 1 stream", v, v is not None and v >= 1.2, fmt(v) + "×")
    v = ratio(get("ferro TLS", "http50", "rps"), get("ssh -L", "http50", "rps"))
    p99 = get("ferro TLS", "http50", "p99")
    ok = v is not None and v >= 1.5 and p99 is not None and p99 <= 5.0
    target("ferro TLS ≥ 1.5× ssh -L req/s at 50 conns, p99 ≤ 5 ms", v, ok,
           f"{fmt(v)}×, p99 {fmt(p99, 3)} ms")
    # The same target for ferro TLS as a TCP forward (what ssh -L is), when that path ran.
    v = ratio(get("ferro TLS, TCP ingress", "http50", "rps"), get("ssh -L", "http50", "rps"))
    if v is not None:
        p99 = get("ferro TLS, TCP ingress", "http50", "p99")
        ok = v >= 1.5 and p99 is not None and p99 <= 5.0
        target("(the same, ferro TLS through its TCP ingress)", v, ok,
               f"{fmt(v)}×, p99 {fmt(p99, 3)} ms")
    v = ratio(get("zlayer ws", "iperf1"), get("direct", "iperf1"))
    target("zlayer ws ≥ 0.4× direct, 1 stream", v, v is not None and v >= 0.4, fmt(v) + "×")
    v = ratio(get("cloudflare", "get_big"), get("ssh -L", "get_big"))
    target("cloudflare via cfedge ≥ 0.5× ssh -L (GET /big, 1 connection)", v,
           v is not None and v >= 0.5, fmt(v) + "×")
    for r in results:
        if "failed" in r or r["name"] in ("direct", "ssh -L", "ssh -R"):
            continue
        busy = r.get("rss_1000") or {}
        if not busy:
            target(f"{r['name']}: ≤ 30 MB RSS per process, {args.connections} conns", None, False, "—")
            continue
        worst = max(busy.values())
        full = r.get("held_ok") == args.connections
        target(f"{r['name']}: ≤ 30 MB RSS per process, {args.connections} conns", worst,
               worst <= 30.0 and full,
               f"max {worst:.1f} MB ({r.get('held_ok')}/{args.connections} answered)")
    out.append("")
    notes = []
    for r in results:
        for k, v in (r.get("errors") or {}).items():
            notes.append(f"- {r['name']}: {k}: {v}")
        for n in r.get("notes") or []:
            notes.append(f"- {r['name']}: {n}")
    if notes:
        out.append("Errors during the run:")
        out.extend(notes)
    return "\n".join(out) + "\n"


AB_METRICS = [("iperf1", "iperf3 1 stream (Gbit/s)"), ("iperf4", "iperf3 4 streams (Gbit/s)"),
              ("get_big", "GET /big (Gbit/s)"), ("http1", "req/s, 1 connection"),
              ("http50", "req/s, 50 connections")]


def ab_value(res, key):
    v = res.get(key)
    return v.get("rps") if isinstance(v, dict) else v


def run_ab(args, env, names, deadline):
    """--ab-old: every path runs --runs rounds, each round once with the old binaries and once
    with --build's, the order swapped every round so that drift in the machine's load falls on
    both alike. Returns {path name: {"old": [results], "new": [results]}}."""
    old_dirs = args.ab_old
    runs, args.runs = args.runs, 1
    out = {}
    for n in names:
        for rnd in range(runs):
            for variant in (("old", "new") if rnd % 2 == 0 else ("new", "old")):
                path = PATHS[n](env)
                path.key = n
                env.overrides[n] = old_dirs if variant == "old" else env.build
                if time.monotonic() > deadline:
                    break
                log(f"A/B {path.name} round {rnd + 1}/{runs}: {variant}")
                try:
                    res = measure_path(path, args, deadline)
                except Exception as ex:  # a harness bug must not lose the other runs
                    res = {"name": path.name, "failed": f"{type(ex).__name__}: {ex}"[:200]}
                finally:
                    path.stop()
                log(f"A/B {path.name} {variant}: {json.dumps(res)[:300]}")
                out.setdefault(path.name, {"old": [], "new": []})[variant].append(res)
    args.runs = runs
    return out


def render_ab(ab, args, load_before, load_after, started):
    out = [f"tunnelkit A/B benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}; "
           f"old = {args.ab_old}, new = {os.path.abspath(args.build)}; {args.runs} alternating "
           f"rounds of {args.duration}s per figure, medians; {os.cpu_count()} CPUs; load average "
           f"before {load_before}, after {load_after}", "",
           "| path | figure | old | new | new/old | runs old | runs new |", "|---|---|---|---|---|---|---|"]
    for name, variants in ab.items():
        for key, label in AB_METRICS:
            old = [ab_value(r, key) for r in variants["old"] if ab_value(r, key)]
            new = [ab_value(r, key) for r in variants["new"] if ab_value(r, key)]
            if not old and not new:
                continue
            mo = statistics.median(old) if old else None
            mn = statistics.median(new) if new else None
            digits = 0 if key.startswith("http") else 2
            out.append(f"| {name} | {label} | {fmt(mo, digits)} | {fmt(mn, digits)} | "
                       f"{fmt(ratio(mn, mo))} | {' '.join(fmt(v, digits) for v in old)} | "
                       f"{' '.join(fmt(v, digits) for v in new)} |")
        for variant in ("old", "new"):
            for r in variants[variant]:
                if "failed" in r or r.get("errors"):
                    out.append(f"| {name} | {variant} failed | {cell(r.get('failed') or r.get('errors'))} |||||")
    return "\n".join(out) + "\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(root, "build"), help="build directory")
    ap.add_argument("--build-override", action="append", default=[], metavar="PATH=DIR[,DIR[,DIR]]",
                    help="take this path's tunnelctl[,plugins[,cfedge]] from other build dirs")
    ap.add_argument("--paths", default=",".join(PATHS), help="comma-separated: " + ",".join(PATHS))
    ap.add_argument("--runs", type=int, default=3, help="repetitions per figure (median)")
    ap.add_argument("--duration", type=int, default=5, help="seconds per iperf3/wrk run")
    ap.add_argument("--connections", type=int, default=1000, help="concurrent connections for RSS")
    ap.add_argument("--big-mib", type=int, default=64, help="size of the /big body (MiB)")
    ap.add_argument("--max-minutes", type=float, default=30, help="deadline of the whole run")
    ap.add_argument("--out", default=None, help="also write the table (markdown) here")
    ap.add_argument("--json", default=None, help="also write raw results (JSON) here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs) afterwards")
    ap.add_argument("--ab-old", default=None, metavar="DIR[,DIR[,DIR]]",
                    help="A/B mode: each path alternates between these (old) binaries and "
                         "--build's (new), --runs rounds; prints old, new and new/old")
    args = ap.parse_args()

    started = time.time()
    deadline = time.monotonic() + args.max_minutes * 60
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    missing = [t for t in ("iperf3", "wrk", "ssh", "ssh-keygen", "nginx", "openssl")
               if not shutil.which(t)]
    if missing:
        sys.exit(f"bench_e2e: missing tools: {' '.join(missing)} (bench/run-e2e.sh installs them)")
    names = [n.strip() for n in args.paths.split(",") if n.strip()]
    PATHS.update({k: v for k, v in EXTRA_PATHS.items() if k in names})
    for n in names:
        if n not in PATHS:
            sys.exit(f"bench_e2e: unknown path '{n}' (known: {', '.join(PATHS)})")

    tmp = tempfile.mkdtemp(prefix="tunnelkit-bench-")
    env = Env(args, tmp)
    results = []
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    if args.ab_old:
        try:
            env.start_origins()
            env.make_tls()
            ab = run_ab(args, env, names, deadline)
        finally:
            env.stop()
            if not args.keep:
                shutil.rmtree(tmp, ignore_errors=True)
        load_after = " ".join(f"{x:.1f}" for x in os.getloadavg())
        table = render_ab(ab, args, load_before, load_after, started)
        print(table)
        if args.out:
            with open(args.out, "w") as f:
                f.write(table)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(ab, f, indent=1)
        return
    try:
        env.start_origins()
        env.make_tls()
        for n in names:
            path = PATHS[n](env)
            path.key = n
            if time.monotonic() > deadline:
                results.append({"name": path.name, "failed": "not run: global deadline reached"})
                continue
            log(f"path {path.name}: starting")
            try:
                res = measure_path(path, args, deadline)
            except Exception as ex:  # a harness bug on one path must not lose the others
                res = {"name": path.name, "failed": f"{type(ex).__name__}: {ex}"[:200]}
            finally:
                path.stop()
            if not path.has_tcp:
                res["no_tcp"] = True
            log(f"path {path.name}: {json.dumps(res)[:400]}")
            results.append(res)
    finally:
        env.stop()
        if args.keep:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = " ".join(f"{x:.1f}" for x in os.getloadavg())
    table = render(results, args, load_before, load_after, started)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
