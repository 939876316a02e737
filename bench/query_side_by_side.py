#!/usr/bin/env python3
"""Dashboard PromQL queries on pharos and Prometheus, side by side.

Starts the synthetic exporter (T targets x S series), lets pharos and
Prometheus scrape the same targets for --duration seconds (the data each
holds is then the same workload, though not byte-identical: the two scrape at
slightly different moments), then runs the dashboard queries on both, each
--runs times as instant queries and as range queries over the scraped window,
and prints the median latency, the result series count and each server's
peak memory (VmHWM) side by side. Result counts may differ where the answer
depends on sample timing (e.g. which series are in a range query's topk at
each step), since the two servers scrape at slightly different moments.

This stands in for the OpenMetrics-backfill comparison of issue 4 until
pharos can backfill: it reuses the helpers of scrape_side_by_side.py.

Python 3.11 standard library only. Linux only (reads /proc).

usage: python3 bench/query_side_by_side.py [--targets 20] [--series 2000]
           [--duration 240] [--interval 5] [--runs 10]
"""
import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scrape_side_by_side as ssb  # noqa: E402  (helpers: ports, servers, /proc)

REQ = "synth_http_requests_total"
HIST = "synth_request_duration_seconds_bucket"
GAUGE = "synth_memory_usage_bytes"
QUERIES = [
    ("sum_rate", f"sum by (method) (rate({REQ}[1m]))"),
    ("histogram_quantile", f"histogram_quantile(0.95, sum by (le) (rate({HIST}[1m])))"),
    ("topk", f"topk(10, rate({REQ}[1m]))"),
    ("avg_over_time", f"avg_over_time({GAUGE}[2m])"),
    ("subquery", f"max_over_time(sum by (method) (rate({REQ}[1m]))[2m:15s])"),
    ("binary_of_aggregations",
     f"sum by (status) (rate({REQ}[1m])) / ignoring (status) group_left sum(rate({REQ}[1m]))"),
]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=20, help="scrape targets (default 20)")
    ap.add_argument("--series", type=int, default=2000, help="series per target (default 2000)")
    ap.add_argument("--duration", type=int, default=240, help="scrape for this long, seconds (default 240)")
    ap.add_argument("--interval", type=int, default=5, help="scrape interval, seconds (default 5)")
    ap.add_argument("--runs", type=int, default=10, help="runs per query and server (default 10)")
    ap.add_argument("--shared-dir", type=Path, default=ssb.REPO.parent / "shared",
                    help="directory holding bench/synth_exporter.py (default ../shared)")
    ap.add_argument("--pharos", type=Path, default=ssb.REPO / "target" / "release" / "pharos",
                    help="pharos binary (default target/release/pharos)")
    ap.add_argument("--prometheus", default="prometheus", help="Prometheus binary (default: on PATH)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build if pharos is missing")
    a = ap.parse_args()
    if min(a.targets, a.series, a.duration, a.interval, a.runs) < 1:
        ap.error("all numeric options must be positive")
    return a


def range_query(port, expr, start, end, step):
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}s"}
    url = f"http://127.0.0.1:{port}/api/v1/query_range?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=ssb.HTTP_TIMEOUT) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body.get('error', body)}")
    return body["data"]


def time_one(server, run, runs):
    """Median latency (ms) and series count of `runs` calls of `run(port)`."""
    lat, n = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        data = run(server.port)
        lat.append((time.perf_counter() - t0) * 1000)
        n = ssb.series_count(data)
    return statistics.median(lat), n


def main():
    a = parse_args()
    cmdline = " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv])
    exporter_py = a.shared_dir / "bench" / "synth_exporter.py"
    if not exporter_py.exists():
        raise SystemExit(f"{exporter_py} not found (use --shared-dir)")
    ssb.ensure_pharos(a)

    servers, procs = [], []
    with tempfile.TemporaryDirectory(prefix="pharos-qbench-") as tmp:
        tmp = Path(tmp)
        try:
            base = ssb.free_port_range(a.targets)
            exporter = ssb.Server("exporter", [sys.executable, str(exporter_py), "--host", "127.0.0.1",
                                               "--base-port", str(base), "--targets", str(a.targets),
                                               "--series", str(a.series)], tmp / "exporter.log")
            procs.append(exporter)
            cfg = tmp / "prometheus.yml"
            ssb.write_config(cfg, base, a)
            for name, binary in (("pharos", str(a.pharos)), ("prometheus", a.prometheus)):
                port = ssb.free_port()
                data = tmp / f"{name}-data"
                data.mkdir()
                argv = [binary, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
                s = ssb.Server(name, argv, tmp / f"{name}.log", port)
                procs.append(s)
                servers.append(s)

            print(f"waiting for {a.targets} targets to be up in both servers ...", flush=True)
            ssb.wait_all_up(servers, a.targets, timeout=60 + 3 * a.interval)
            print(f"scraping for {a.duration}s ...", flush=True)
            t_start, t_end, _ = ssb.measure(servers, a.duration)
            time.sleep(1)
            hwm_before = {s.name: ssb.memory_mib(s.proc.pid)[1] for s in servers}
            nseries = {s.name: ssb.scalar_of(ssb.query(s.port, "count({__name__=~\".+\"})", at=t_end))
                       for s in servers}

            step = max(1, a.duration // 60)
            rows = []
            for label, expr in QUERIES:
                for kind in ("instant", "range"):
                    row = {"label": f"{label} ({kind})", "expr": expr}
                    for s in servers:
                        s.check_alive()
                        if kind == "instant":
                            def run(port, expr=expr):
                                return ssb.query(port, expr, at=t_end)
                        else:
                            def run(port, expr=expr):
                                return range_query(port, expr, t_start, t_end, step)
                        try:
                            row[s.name] = (*time_one(s, run, a.runs), None)
                        except (OSError, RuntimeError, ValueError, KeyError) as e:
                            row[s.name] = (None, None, str(e))
                    rows.append(row)
            hwm_after = {s.name: ssb.memory_mib(s.proc.pid)[1] for s in servers}

            P, Q = "pharos", "prometheus"
            print()
            print(f"workload: {a.targets} targets x {a.series} series, scraped every {a.interval}s "
                  f"for {a.duration}s; range queries over that window at {step}s steps")
            print(f"command:  {cmdline}")
            for s in servers:
                print(f"  {s.name}: {' '.join(shlex.quote(x) for x in s.argv)}")
            print(f"series held: pharos {ssb.fmt(nseries[P], 0)}, prometheus {ssb.fmt(nseries[Q], 0)}")
            print()
            print(f"median of {a.runs} runs, ms (wall clock, HTTP included)")
            print(f"{'query':40}{'pharos':>10}{'prom':>10}{'p/prom':>8}  series p/q")
            ratios = []
            for row in rows:
                (pl, pn, perr), (ql, qn, qerr) = row[P], row[Q]
                r = ssb.ratio(pl, ql)
                if r is not None:
                    ratios.append(r)
                same = "match" if pn == qn and pn is not None else "DIFFER"
                print(f"{row['label']:40}{ssb.fmt(pl):>10}{ssb.fmt(ql):>10}{ssb.fmt(r):>8}  {pn}/{qn} {same}")
                for name, err in ((P, perr), (Q, qerr)):
                    if err:
                        print(f"    {name} error: {err}")
            if ratios:
                print(f"{'median pharos/prometheus latency ratio':40}{'':20}{ssb.fmt(statistics.median(ratios)):>8}")
                print(f"{'worst pharos/prometheus latency ratio':40}{'':20}{ssb.fmt(max(ratios)):>8}")
            print()
            print(f"{'peak RSS MiB (VmHWM)':40}{'pharos':>10}{'prom':>10}")
            print(f"{'  after scraping':40}{ssb.fmt(hwm_before[P], 1):>10}{ssb.fmt(hwm_before[Q], 1):>10}")
            print(f"{'  after the queries':40}{ssb.fmt(hwm_after[P], 1):>10}{ssb.fmt(hwm_after[Q], 1):>10}")
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
