#!/usr/bin/env python3
"""Run pharos and Prometheus side by side on the same scrape workload.

Starts the synthetic exporter (T targets x S series), writes one
prometheus.yml that scrapes them, starts pharos and Prometheus on free
127.0.0.1 ports with their own temporary data directories, waits until every
target is up in both, then for --duration seconds samples each server's CPU
time and memory from /proc. At the end it counts the samples each server
ingested in that window, times a few identical PromQL queries against both,
and prints a table with the pharos/prometheus ratios.

Python 3.11 standard library only. Linux only (reads /proc).

usage: python3 bench/scrape_side_by_side.py [--targets 20] [--series 1000]
           [--duration 120] [--interval 5] [--no-build] [--shared-dir DIR]
"""
import argparse
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
HTTP_TIMEOUT = 30.0  # seconds, for any single API call

QUERIES = [
    "sum by (method) (rate(synth_http_requests_total[1m]))",
    "histogram_quantile(0.95, sum by (le) (rate(synth_request_duration_seconds_bucket[1m])))",
    "topk(5, synth_memory_usage_bytes)",
    "count by (type) (synth_memory_usage_bytes)",
    'sum(rate(synth_http_requests_total{status=~"5.."}[1m])) by (path)',
]
QUERY_RUNS = 20
SYNTH_METRICS = [  # every metric name synth_exporter.py exposes
    "synth_http_requests_total",
    "synth_memory_usage_bytes",
    "synth_request_duration_seconds_bucket",
    "synth_request_duration_seconds_sum",
    "synth_request_duration_seconds_count",
]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=20, help="number of scrape targets (default 20)")
    ap.add_argument("--series", type=int, default=1000, help="series per target (default 1000)")
    ap.add_argument("--duration", type=int, default=120, help="measurement window, seconds (default 120)")
    ap.add_argument("--interval", type=int, default=5, help="scrape interval, seconds (default 5)")
    ap.add_argument("--shared-dir", type=Path, default=REPO.parent / "shared",
                    help="directory holding bench/synth_exporter.py (default ../shared)")
    ap.add_argument("--pharos", type=Path, default=REPO / "target" / "release" / "pharos",
                    help="pharos binary (default target/release/pharos)")
    ap.add_argument("--prometheus", default="prometheus", help="Prometheus binary (default: on PATH)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build if pharos is missing")
    a = ap.parse_args()
    if a.targets < 1 or a.series < 1 or a.duration < 1 or a.interval < 1:
        ap.error("--targets, --series, --duration and --interval must be positive")
    return a


# ---------------------------------------------------------------- helpers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_range(n):
    """A base port such that base..base+n-1 are all free (a few tries)."""
    for _ in range(50):
        base = free_port()
        if base + n < 65535 and all(port_is_free(base + i) for i in range(n)):
            return base
    raise SystemExit(f"could not find {n} consecutive free ports")


def query(port, expr, at=None):
    """Instant query; returns the decoded `data` object or raises."""
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body.get('error', body)}")
    return body["data"]


def scalar_of(data):
    """The single number of a one-element vector (or scalar) result, else None."""
    if data["resultType"] == "scalar":
        return float(data["result"][1])
    if data["resultType"] == "vector" and len(data["result"]) == 1:
        return float(data["result"][0]["value"][1])
    return None


def series_count(data):
    return 1 if data["resultType"] in ("scalar", "string") else len(data["result"])


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()  # comm may contain spaces
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def memory_mib(pid):
    """(VmRSS, VmHWM) in MiB."""
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, v = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                vals[key] = int(v.split()[0]) / 1024  # kB -> MiB
    return vals["VmRSS"], vals["VmHWM"]


class Server:
    """One child process with its log file."""

    def __init__(self, name, argv, log_path, port=None):
        self.name, self.argv, self.log_path, self.port = name, argv, log_path, port
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}\n{self.log_tail()}")

    def log_tail(self, n=20):
        try:
            lines = Path(self.log_path).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"  [{self.name}] {l}" for l in lines[-n:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


# ---------------------------------------------------------------- phases

def ensure_pharos(a):
    if a.pharos.exists():
        return
    if a.no_build:
        raise SystemExit(f"{a.pharos} is missing and --no-build was given")
    print("building pharos: cargo build --release", flush=True)
    subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    if not a.pharos.exists():
        raise SystemExit(f"cargo build --release did not produce {a.pharos}")


def write_config(path, base_port, a):
    targets = ", ".join(f"'127.0.0.1:{base_port + i}'" for i in range(a.targets))
    path.write_text(
        "global:\n"
        f"  scrape_interval: {a.interval}s\n"
        f"  scrape_timeout: {min(a.interval, 10)}s\n"
        "scrape_configs:\n"
        "  - job_name: synth\n"
        "    static_configs:\n"
        f"      - targets: [{targets}]\n"
    )


def wait_all_up(servers, want, timeout):
    """Polls sum(up) on every server until it equals `want`."""
    deadline = time.monotonic() + timeout
    pending = list(servers)
    while pending:
        for s in list(pending):
            s.check_alive()
            try:
                if scalar_of(query(s.port, "sum(up)")) == want:
                    print(f"  {s.name}: {want}/{want} targets up", flush=True)
                    pending.remove(s)
            except (OSError, RuntimeError, ValueError, KeyError):
                pass  # not listening yet, or no data yet
        if pending and time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            raise RuntimeError(f"targets not all up within {timeout}s in: {names}")
        if pending:
            time.sleep(0.5)


def measure(servers, duration):
    """Samples CPU and RSS every second for `duration` seconds.

    Returns (t_start, t_end) wall-clock seconds and per-server stats."""
    stats = {s.name: {"cpu0": cpu_seconds(s.proc.pid), "rss_max": 0.0} for s in servers}
    t_start = time.time()
    t_end = t_start + duration
    while True:
        for s in servers:
            s.check_alive()
            rss, _ = memory_mib(s.proc.pid)
            st = stats[s.name]
            st["rss_max"] = max(st["rss_max"], rss)
        now = time.time()
        if now >= t_end:
            break
        time.sleep(min(1.0, t_end - now))
    for s in servers:
        st = stats[s.name]
        st["cpu"] = cpu_seconds(s.proc.pid) - st["cpu0"]
        st["rss_end"], hwm = memory_mib(s.proc.pid)
        st["rss_peak"] = max(hwm, st["rss_max"])
    return t_start, t_end, stats


def count_samples(s, t_end, duration):
    """Samples scraped in (t_end - duration, t_end], two ways; None on error."""
    out = {}
    exprs = {
        "scraped": f"sum(sum_over_time(scrape_samples_scraped[{duration}s]))",
        # one term per metric name: count_over_time drops the name, so a single
        # {__name__=~"synth_.+"} selector would collide on identical label sets
        "stored": " + ".join(f"sum(count_over_time({m}[{duration}s]))" for m in SYNTH_METRICS),
    }
    for key, expr in exprs.items():
        try:
            out[key] = scalar_of(query(s.port, expr, at=t_end))
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            print(f"  {s.name}: {expr}: {e}", file=sys.stderr)
            out[key] = None
    return out


def time_queries(servers, at):
    """Median wall-clock latency (ms) and result series count per query and server."""
    rows = []
    for expr in QUERIES:
        row = {"expr": expr}
        for s in servers:
            lat, n, err = [], None, None
            for _ in range(QUERY_RUNS):
                t0 = time.perf_counter()
                try:
                    data = query(s.port, expr, at=at)
                except (OSError, RuntimeError, ValueError, KeyError) as e:
                    err = str(e)
                    break
                lat.append((time.perf_counter() - t0) * 1000)
                n = series_count(data)
            row[s.name] = (statistics.median(lat) if lat and not err else None, n, err)
        rows.append(row)
    return rows


# ---------------------------------------------------------------- output

def fmt(v, nd=2):
    return "n/a" if v is None else f"{v:,.{nd}f}"


def ratio(p, q):
    return None if p is None or q in (None, 0) else p / q


def print_report(a, servers, stats, counts, qrows, cmdline):
    P, Q = "pharos", "prometheus"
    per_m = {n: (None if not counts[n]["scraped"] else stats[n]["cpu"] / (counts[n]["scraped"] / 1e6))
             for n in (P, Q)}
    rows = [
        ("CPU seconds", stats[P]["cpu"], stats[Q]["cpu"], 2),
        ("samples ingested", counts[P]["scraped"], counts[Q]["scraped"], 0),
        ("  cross-check: count_over_time", counts[P]["stored"], counts[Q]["stored"], 0),
        ("CPU s per million samples", per_m[P], per_m[Q], 3),
        ("peak RSS MiB (VmHWM)", stats[P]["rss_peak"], stats[Q]["rss_peak"], 1),
        ("RSS at end MiB", stats[P]["rss_end"], stats[Q]["rss_end"], 1),
    ]
    print()
    print(f"workload: {a.targets} targets x {a.series} series, scrape every {a.interval}s, "
          f"measured over {a.duration}s")
    print(f"command:  {cmdline}")
    for s in servers:
        print(f"  {s.name}: {' '.join(shlex.quote(x) for x in s.argv)}")
    print()
    print(f"{'':34}{'pharos':>14}{'prometheus':>14}{'pharos/prom':>13}")
    for label, p, q, nd in rows:
        r = ratio(p, q)
        print(f"{label:34}{fmt(p, nd):>14}{fmt(q, nd):>14}{fmt(r, 3):>13}")
    print()
    print(f"PromQL instant queries, median of {QUERY_RUNS} runs (ms), result series count:")
    print(f"{'':72}{'pharos':>9}{'prom':>9}{'ratio':>8}  series p/q")
    for row in qrows:
        (pl, pn, perr), (ql, qn, qerr) = row[P], row[Q]
        r = ratio(pl, ql)
        same = "match" if pn == qn and pn is not None else "DIFFER"
        expr = row["expr"] if len(row["expr"]) <= 70 else row["expr"][:67] + "..."
        print(f"{expr:72}{fmt(pl):>9}{fmt(ql):>9}{fmt(r):>8}  "
              f"{pn}/{qn} {same}")
        for name, err in ((P, perr), (Q, qerr)):
            if err:
                print(f"    {name} error: {err}")


# ---------------------------------------------------------------- main

def main():
    a = parse_args()
    cmdline = " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv])
    exporter_py = a.shared_dir / "bench" / "synth_exporter.py"
    if not exporter_py.exists():
        raise SystemExit(f"{exporter_py} not found (use --shared-dir)")
    ensure_pharos(a)

    servers, procs = [], []
    with tempfile.TemporaryDirectory(prefix="pharos-bench-") as tmp:
        tmp = Path(tmp)
        try:
            base = free_port_range(a.targets)
            exporter = Server("exporter", [sys.executable, str(exporter_py), "--host", "127.0.0.1",
                                           "--base-port", str(base), "--targets", str(a.targets),
                                           "--series", str(a.series)], tmp / "exporter.log")
            procs.append(exporter)
            cfg = tmp / "prometheus.yml"
            write_config(cfg, base, a)

            for name, binary in (("pharos", str(a.pharos)), ("prometheus", a.prometheus)):
                port = free_port()
                data = tmp / f"{name}-data"
                data.mkdir()
                argv = [binary, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
                s = Server(name, argv, tmp / f"{name}.log", port)
                procs.append(s)
                servers.append(s)

            print(f"waiting for {a.targets} targets to be up in both servers ...", flush=True)
            wait_all_up(servers, a.targets, timeout=60 + 3 * a.interval)
            exporter.check_alive()

            print(f"measuring for {a.duration}s ...", flush=True)
            _, t_end, stats = measure(servers, a.duration)
            time.sleep(1)  # let scrapes stamped just before t_end finish appending
            counts = {s.name: count_samples(s, t_end, a.duration) for s in servers}
            print("timing queries ...", flush=True)
            qrows = time_queries(servers, at=t_end)
            print_report(a, servers, stats, counts, qrows, cmdline)
        except Exception as e:
            print(f"error: {e}", file=sys.stderr)
            for p in procs:
                if tail := p.log_tail():
                    print(tail, file=sys.stderr)
            return 1
        finally:
            for p in reversed(procs):
                p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
