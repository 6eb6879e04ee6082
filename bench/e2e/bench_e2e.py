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

from e2e_paths import *  # noqa: F401,F403
from e2e_util import *  # noqa: F401,F403

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
        write_outputs(render_ab(ab, args, load_before, load_after, started), ab, args)
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
    write_outputs(render(results, args, load_before, load_after, started), results, args)


def write_outputs(table, raw, args):
    """Prints the table and writes it (--out) and the raw figures (--json) where asked."""
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
