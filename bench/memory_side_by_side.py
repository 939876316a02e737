#!/usr/bin/env python3
"""Resident memory per active series: pharos and Prometheus, one after the other.

Starts node_synth_exporter.py (node_exporter-like label sets; --targets hosts
of --series series each, 1 M series by default, served by --exporters
processes), writes one prometheus.yml scraping them all, then runs pharos and
then Prometheus -- never both at once -- on that same config, each with its
own empty data directory and port. Each server scrapes until every target has
been scraped successfully --scrapes times (so every series has a partly filled
head chunk: 120 samples fill a chunk), then for one more scrape interval the
script samples VmRSS once a second. It reads the head series count from
/api/v1/status/tsdb and prometheus_tsdb_head_series, the memory breakdown
from /proc/PID/status (RssAnon = heap, RssFile = mapped files such as
chunks_head/) and the process's own memory metrics (Go's go_memstats_* for
Prometheus; pharos has process_resident_memory_bytes only), stops the server,
and prints bytes per series for both and the pharos/prometheus ratio.

Time: about (scrapes + 2) x interval per server plus start-up and shutdown;
the defaults (1000 x 1000 series, 15 s, 5 scrapes) take ~5 minutes. The script
refuses settings whose estimate exceeds --max-minutes.

Python 3.11 standard library only. Linux only (reads /proc).

usage: python3 bench/memory_side_by_side.py [--targets 1000] [--series 1000]
           [--interval 15] [--scrapes 5] [--exporters 2] [--no-build]
"""
import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scrape_side_by_side as ssb  # noqa: E402  (helpers: ports, servers, /proc)

HERE = Path(__file__).resolve().parent
STATUS_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")
# Self-reported metrics printed when a server exposes them (unlabelled lines).
METRICS = [
    "prometheus_tsdb_head_series",
    "pharos_tsdb_head_series",
    "prometheus_tsdb_head_chunks",
    "prometheus_tsdb_head_samples_appended_total",
    "process_resident_memory_bytes",
    "go_memstats_heap_inuse_bytes",
    "go_memstats_heap_alloc_bytes",
    "go_memstats_sys_bytes",
    "go_memstats_next_gc_bytes",
]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=1000, help="scrape targets (hosts), default 1000")
    ap.add_argument("--series", type=int, default=1000, help="series per target, default 1000")
    ap.add_argument("--interval", type=int, default=15, help="scrape interval, seconds (default 15)")
    ap.add_argument("--scrapes", type=int, default=5,
                    help="successful scrapes of every target before measuring (default 5; "
                         "121 fills the first 120-sample chunk)")
    ap.add_argument("--exporters", type=int, default=2, help="exporter processes (default 2)")
    ap.add_argument("--max-minutes", type=float, default=15.0,
                    help="refuse to start when the time estimate exceeds this (default 15)")
    ap.add_argument("--only", choices=("pharos", "prometheus"), help="run one server only")
    ap.add_argument("--pharos", type=Path, default=ssb.REPO / "target" / "release" / "pharos",
                    help="pharos binary (default target/release/pharos)")
    ap.add_argument("--prometheus", default="prometheus", help="Prometheus binary (default: on PATH)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build if pharos is missing")
    a = ap.parse_args()
    if min(a.targets, a.series, a.interval, a.scrapes, a.exporters) < 1:
        ap.error("all numeric options must be positive")
    a.exporters = min(a.exporters, a.targets)
    return a


def estimate_s(a):
    servers = 1 if a.only else 2
    # start-up, first scrape offset (< 1 interval), the scrapes, the sampling
    # window, and shutdown with a 1 M series head
    return servers * ((a.scrapes + 2) * a.interval + 60)


def proc_status(pid):
    """The STATUS_KEYS of /proc/PID/status, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, v = line.partition(":")
            if key in STATUS_KEYS:
                out[key] = int(v.split()[0]) * 1024
    return out


def self_metrics(port):
    """The unlabelled METRICS lines of /metrics as floats."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=ssb.HTTP_TIMEOUT) as r:
        text = r.read().decode(errors="replace")
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or "{" in line:
            continue
        parts = line.split()
        if len(parts) >= 2 and parts[0] in METRICS:
            out[parts[0]] = float(parts[1])
    return out


def tsdb_status(port):
    url = f"http://127.0.0.1:{port}/api/v1/status/tsdb"
    with urllib.request.urlopen(url, timeout=ssb.HTTP_TIMEOUT) as r:
        return json.load(r)["data"]["headStats"]


def wait_listening(s, timeout):
    deadline = time.monotonic() + timeout
    while True:
        s.check_alive()
        try:
            ssb.query(s.port, "vector(1)")
            return
        except (OSError, RuntimeError, ValueError, KeyError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{s.name} not answering queries within {timeout}s")
            time.sleep(0.3)


def wait_exporters(base, n, timeout=60):
    """Until the last port of every exporter slice accepts connections."""
    import socket
    deadline = time.monotonic() + timeout
    for port in (base, base + n - 1):
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"exporter port {port} not listening within {timeout}s")
                time.sleep(0.2)


def run_one(name, binary, cfg, tmp, a, want_series):
    """Runs one server until every target has `a.scrapes` good scrapes; returns its figures."""
    port = ssb.free_port()
    data = tmp / f"{name}-data"
    data.mkdir()
    argv = [binary, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    t0 = time.monotonic()
    s = ssb.Server(name, argv, tmp / f"{name}.log", port)
    try:
        wait_listening(s, 60)
        rss_ready = proc_status(s.proc.pid)["VmRSS"]
        print(f"  {name}: listening after {time.monotonic() - t0:.1f}s, RSS {rss_ready / 2**20:.0f} MiB; "
              f"waiting for {a.scrapes} good scrapes of each of {a.targets} targets ...", flush=True)
        deadline = time.monotonic() + 90 + (a.scrapes + 2) * a.interval
        # the number of successful scrapes of the least-scraped target
        expr = f"min(sum_over_time(up[{(a.scrapes + 10) * a.interval}s])) and on() count(up) == {a.targets}"
        last_print, good = 0.0, None
        while True:
            s.check_alive()
            try:
                good = ssb.scalar_of(ssb.query(s.port, expr))
            except (OSError, RuntimeError, ValueError, KeyError):
                good = None
            if good is not None and good >= a.scrapes:
                break
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"{name}: fewer than {a.scrapes} good scrapes per target "
                                   f"(least: {good}) after {now - t0:.0f}s")
            if now - last_print >= 30:
                print(f"    {now - t0:4.0f}s: least-scraped target has {good} good scrapes, "
                      f"RSS {proc_status(s.proc.pid)['VmRSS'] / 2**20:.0f} MiB", flush=True)
                last_print = now
            time.sleep(2)
        t_reached = time.monotonic() - t0
        print(f"  {name}: {int(good)} good scrapes per target after {t_reached:.0f}s; "
              f"sampling RSS for {a.interval}s ...", flush=True)
        rss = []
        end = time.monotonic() + a.interval
        while time.monotonic() < end:
            s.check_alive()
            rss.append(proc_status(s.proc.pid)["VmRSS"])
            time.sleep(1)
        st = proc_status(s.proc.pid)
        rss.append(st["VmRSS"])
        head = tsdb_status(s.port)
        met = self_metrics(s.port)
        samples_per_series = ssb.scalar_of(ssb.query(
            s.port, 'avg(count_over_time(node_cpu_seconds_total[1h]))'))
        out = {
            "argv": argv, "rss_ready": rss_ready, "rss_max": max(rss), "rss_median": statistics.median(rss),
            "rss_min": min(rss), "status": st, "head": head, "metrics": met,
            "samples_per_series": samples_per_series, "reach_s": t_reached,
        }
        t_stop = time.monotonic()
        s.stop()
        out["stop_s"] = time.monotonic() - t_stop
        out["log_tail"] = s.log_tail(5)
        series = head.get("numSeries")
        if series and abs(series - want_series) > 0.01 * want_series:
            print(f"  warning: {name} holds {series} head series, expected ~{want_series}", flush=True)
        return out
    finally:
        s.stop()


def main():
    a = parse_args()
    cmdline = " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv])
    est = estimate_s(a)
    if est > a.max_minutes * 60:
        raise SystemExit(f"estimated {est / 60:.1f} min exceeds --max-minutes {a.max_minutes}: "
                         "lower --scrapes or --interval")
    if a.only != "prometheus":
        ssb.ensure_pharos(a)
    # scrape adds 5 series per target: up, scrape_duration_seconds, scrape_samples_scraped,
    # scrape_samples_post_metric_relabeling, scrape_series_added
    want_series = a.targets * (a.series + 5)
    t_begin = time.monotonic()
    procs = []
    results = {}
    with tempfile.TemporaryDirectory(prefix="pharos-membench-") as tmp:
        tmp = Path(tmp)
        try:
            base = ssb.free_port_range(a.targets)
            per = -(-a.targets // a.exporters)
            exporter_argvs = []
            for i in range(a.exporters):
                first = i * per
                n = min(per, a.targets - first)
                if n <= 0:
                    break
                argv = [sys.executable, str(HERE / "node_synth_exporter.py"), "--host", "127.0.0.1",
                        "--base-port", str(base + first), "--targets", str(n), "--series", str(a.series),
                        "--target-offset", str(first)]
                exporter_argvs.append(argv)
                procs.append(ssb.Server(f"exporter{i}", argv, tmp / f"exporter{i}.log"))
            wait_exporters(base, a.targets)
            cfg = tmp / "prometheus.yml"
            targets = ", ".join(f"'127.0.0.1:{base + i}'" for i in range(a.targets))
            cfg.write_text(
                "global:\n"
                f"  scrape_interval: {a.interval}s\n"
                f"  scrape_timeout: {min(a.interval, 10)}s\n"
                "scrape_configs:\n"
                "  - job_name: node\n"
                "    static_configs:\n"
                f"      - targets: [{targets}]\n")
            order = [("pharos", str(a.pharos)), ("prometheus", a.prometheus)]
            for name, binary in order:
                if a.only and a.only != name:
                    continue
                print(f"== {name}", flush=True)
                results[name] = run_one(name, binary, cfg, tmp, a, want_series)
                for p in procs:
                    p.check_alive()
        except Exception as e:
            print(f"error: {e}", file=sys.stderr)
            for p in procs:
                if tail := p.log_tail():
                    print(tail, file=sys.stderr)
            for f in sorted(Path(tmp).glob("*.log")):
                lines = f.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {f.name}\n" + "\n".join(lines), file=sys.stderr)
            return 1
        finally:
            for p in reversed(procs):
                p.stop()

    print_report(a, results, cmdline, exporter_argvs, time.monotonic() - t_begin)
    return 0


def print_report(a, results, cmdline, exporter_argvs, total_s):
    names = [n for n in ("pharos", "prometheus") if n in results]
    mib = 2 ** 20
    print()
    print(f"workload: {a.targets} node_exporter-like targets x {a.series} series "
          f"(+5 scrape series each), scrape_interval {a.interval}s, "
          f"measured after {a.scrapes} good scrapes of every target, over one more interval; "
          f"servers run one after the other")
    print(f"command:  {cmdline}")
    for argv in exporter_argvs:
        print(f"  exporter: {' '.join(shlex.quote(x) for x in argv)}")
    for n in names:
        print(f"  {n}: {' '.join(shlex.quote(x) for x in results[n]['argv'])}")
    print(f"  config: global scrape_interval {a.interval}s, scrape_timeout {min(a.interval, 10)}s; "
          f"one job 'node' with {a.targets} static targets 127.0.0.1:<consecutive ports>")
    print(f"  total run time {total_s:.0f}s")
    print()

    def row(label, f, nd=0):
        vals = [f(results[n]) for n in names]
        cells = "".join(f"{ssb.fmt(v, nd):>16}" for v in vals)
        r = ssb.ratio(vals[0], vals[1]) if len(vals) == 2 else None
        print(f"{label:44}{cells}{ssb.fmt(r, 3) if r is not None else '':>12}")

    print(f"{'':44}" + "".join(f"{n:>16}" for n in names) + (f"{'p/prom':>12}" if len(names) == 2 else ""))
    series = {n: results[n]["head"].get("numSeries") for n in names}
    row("head series (/api/v1/status/tsdb)", lambda r: r["head"].get("numSeries"))
    row("head series (own metric *_tsdb_head_series)",
        lambda r: r["metrics"].get("prometheus_tsdb_head_series", r["metrics"].get("pharos_tsdb_head_series")))
    row("process_resident_memory_bytes, MiB",
        lambda r: (v / mib if (v := r["metrics"].get("process_resident_memory_bytes")) is not None else None), 1)
    row("head chunks (status/tsdb chunkCount)", lambda r: r["head"].get("chunkCount"))
    row("avg samples per node_cpu series", lambda r: r["samples_per_series"], 2)
    row("seconds to reach the scrapes", lambda r: r["reach_s"], 0)
    row("RSS at start, MiB", lambda r: r["rss_ready"] / mib, 1)
    row("VmRSS max over the window, MiB", lambda r: r["rss_max"] / mib, 1)
    row("VmRSS median over the window, MiB", lambda r: r["rss_median"] / mib, 1)
    row("  RssAnon at the end, MiB", lambda r: r["status"].get("RssAnon", 0) / mib, 1)
    row("  RssFile at the end, MiB", lambda r: r["status"].get("RssFile", 0) / mib, 1)
    row("VmHWM (peak since start), MiB", lambda r: r["status"]["VmHWM"] / mib, 1)
    row("go_memstats_heap_inuse_bytes, MiB",
        lambda r: (v / mib if (v := r["metrics"].get("go_memstats_heap_inuse_bytes")) is not None else None), 1)
    row("go_memstats_sys_bytes, MiB",
        lambda r: (v / mib if (v := r["metrics"].get("go_memstats_sys_bytes")) is not None else None), 1)
    print()

    def per(f):
        return lambda r: (f(r) / s) if (s := r["head"].get("numSeries")) else None

    row("bytes/series: VmRSS max", per(lambda r: r["rss_max"]), 0)
    row("bytes/series: VmRSS median", per(lambda r: r["rss_median"]), 0)
    row("bytes/series: RssAnon", per(lambda r: r["status"].get("RssAnon", 0)), 0)
    row("bytes/series: VmRSS max - RSS at start", per(lambda r: r["rss_max"] - r["rss_ready"]), 0)
    row("bytes/series: VmHWM", per(lambda r: r["status"]["VmHWM"]), 0)
    if "pharos" in results and series.get("pharos"):
        b = results["pharos"]["rss_max"] / series["pharos"]
        verdict = "under" if b < 1024 else "NOT under"
        print(f"\npharos: {b:,.0f} resident bytes per series (VmRSS max): {verdict} the 1 KiB target")


if __name__ == "__main__":
    sys.exit(main())
