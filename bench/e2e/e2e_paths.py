"""The tunnel paths of the end-to-end benchmark (bench_e2e.py): the environment they share
(origins, binaries), and how each path starts and what it measures through."""
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

from e2e_util import *  # noqa: F401,F403 (the helpers every path uses)

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


    def start_forwarding(self, flag):
        """Starts sshd and an ssh client forwarding the iperf and HTTP ports with `flag`
        (-L: local forwarding, -R: remote)."""
        d = self.prepare()
        port = self.start_sshd(d)
        tcp, http = free_port(), free_port()
        t0 = time.monotonic()
        ssh = self.spawn("ssh", self.ssh_cmd(d, port, [
            flag, f"127.0.0.1:{tcp}:127.0.0.1:{self.env.iperf_port}",
            flag, f"127.0.0.1:{http}:127.0.0.1:{self.env.http_port}"]))
        wait_http("127.0.0.1", http, "origin", 20, [ssh])
        self.startup_s = time.monotonic() - t0
        self.tcp_entry, self.http_entry = tcp, (http, "origin")


class SshLocal(SshBase):
    name = "ssh -L"

    def start(self):
        self.start_forwarding("-L")


class SshRemote(SshBase):
    name = "ssh -R"

    def start(self):
        self.start_forwarding("-R")

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
