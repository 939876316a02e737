#!/usr/bin/env python3
"""Dashboard PromQL queries on pharos and Prometheus, side by side.

Default mode, `backfill` (issue 4): generates one OpenMetrics file (counters,
gauges and classic histograms: --targets instances x --series series, --hours
of samples every --file-interval seconds, ending 5 minutes ago), backfills it
with `promtool tsdb create-blocks-from openmetrics` into Prometheus's data
directory and with `pharos tsdb create-blocks-from openmetrics` into pharos's,
starts both servers on their directories (no scraping; retention 10 years),
then runs the dashboard queries on both, each --runs times (after one untimed
warm-up, alternating between the servers) as instant queries at the last
sample and as range queries over the file's span. It prints the median
latency per query, the pharos/Prometheus ratio, the overall median and worst
ratio, whether the answers agree (series sets equal and every value within
1e-9 relative; NaN equals NaN) and each server's peak memory (VmHWM), and
each backfill's wall time and peak RSS.

Mode `scrape`: the former workload -- both servers scrape the same synthetic
targets (../shared/bench/synth_exporter.py) for --duration seconds, then the
same queries run. The two scrape at slightly different moments, so values
and some result sizes differ; only latencies are comparable there.

Python 3.11 standard library only. Linux only (reads /proc).

usage: python3 bench/query_side_by_side.py [--targets 10] [--series 1000]
           [--hours 2] [--file-interval 15] [--step 60] [--runs 10]
       python3 bench/query_side_by_side.py --mode scrape [--targets 20]
           [--series 2000] [--duration 240] [--interval 5]
"""
import argparse
import json
import math
import os
import random
import shlex
import statistics
import subprocess
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
REL_TOL = 1e-9

METHODS = ["GET", "POST", "PUT", "DELETE"]
STATUS = ["200", "201", "400", "404", "500"]
BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("backfill", "scrape"), default="backfill",
                    help="backfill one OpenMetrics file into both (default) or scrape synthetic targets")
    ap.add_argument("--targets", type=int, help="instances (default 10 backfill, 20 scrape)")
    ap.add_argument("--series", type=int, help="series per instance (default 1000 backfill, 2000 scrape)")
    ap.add_argument("--hours", type=float, default=2.0, help="backfill: hours of samples (default 2)")
    ap.add_argument("--file-interval", type=int, default=15,
                    help="backfill: seconds between samples in the file (default 15)")
    ap.add_argument("--step", type=int, default=60, help="backfill: range query step, seconds (default 60)")
    ap.add_argument("--duration", type=int, default=240, help="scrape: scrape for this long, seconds (default 240)")
    ap.add_argument("--interval", type=int, default=5, help="scrape: scrape interval, seconds (default 5)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per query and server (default 10)")
    ap.add_argument("--shared-dir", type=Path, default=ssb.REPO.parent / "shared",
                    help="scrape: directory holding bench/synth_exporter.py (default ../shared)")
    ap.add_argument("--pharos", type=Path, default=ssb.REPO / "target" / "release" / "pharos",
                    help="pharos binary (default target/release/pharos)")
    ap.add_argument("--prometheus", default="prometheus", help="Prometheus binary (default: on PATH)")
    ap.add_argument("--promtool", default="promtool", help="promtool binary (default: on PATH)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build if pharos is missing")
    a = ap.parse_args()
    if a.targets is None:
        a.targets = 10 if a.mode == "backfill" else 20
    if a.series is None:
        a.series = 1000 if a.mode == "backfill" else 2000
    if min(a.targets, a.series, a.duration, a.interval, a.runs, a.file_interval, a.step) < 1 or a.hours <= 0:
        ap.error("all numeric options must be positive")
    return a


# ---------------------------------------------------------------- OpenMetrics file

def families(series):
    """The split of synth_exporter.py: ~1/3 counters, ~1/4 histogram series, the rest gauges.

    Returns (counter label sets, gauge label sets, histogram label sets)."""
    n_hist = max(1, series // (len(BUCKETS) + 2) // 4)
    n_counter = max(1, series // 3)
    n_gauge = max(1, series - n_counter - n_hist * (len(BUCKETS) + 2))

    def ls(i):
        return f'method="{METHODS[i % 4]}",path="/api/v1/r{i // 20}",status="{STATUS[(i // 4) % 5]}"'
    return ([ls(i) for i in range(n_counter)],
            [f'type="t{i % 7}",shard="{i}"' for i in range(n_gauge)],
            [ls(i) for i in range(n_hist)])


def write_openmetrics(path, a, end):
    """Writes the file; returns (series, samples, first timestamp, last timestamp) in seconds."""
    rng = random.Random(7)
    step = a.file_interval
    n_steps = int(a.hours * 3600 // step)
    start = end - (n_steps - 1) * step
    times = [start + i * step for i in range(n_steps)]
    counters, gauges, hists = families(a.series)
    insts = [f'job="synth",instance="host-{t:02d}:9100"' for t in range(a.targets)]
    nseries = nsamples = 0
    with open(path, "w", buffering=1 << 20) as f:
        f.write("# TYPE synth_http_requests counter\n# HELP synth_http_requests Synthetic counter.\n")
        for inst in insts:
            for j, l in enumerate(counters):
                v = rng.randint(0, 100000)
                rate = rng.choice([0, 1, 2, 5, 10, 50, 200])
                reset_at = rng.randrange(n_steps) if j % 50 == 7 else -1  # a few counter resets
                lines = []
                for i, t in enumerate(times):
                    # fractional increments: no ties in topk (tie order is not specified)
                    if i == reset_at:
                        v = rng.randint(0, 3)
                    elif rate:
                        v = round(v + rng.uniform(0, 2 * rate), 3)
                    lines.append(f"{REQ}{{{inst},{l}}} {v} {t}\n")
                f.write("".join(lines))
                nseries += 1
                nsamples += n_steps
        f.write(f"# TYPE {GAUGE} gauge\n# HELP {GAUGE} Synthetic gauge.\n")
        for inst in insts:
            for l in gauges:
                base = rng.uniform(1e5, 1e7)
                phase = rng.uniform(0, 6.28)
                lines = []
                for i, t in enumerate(times):
                    v = round(base + 0.1 * base * math.sin(phase + i / 20.0) + rng.uniform(-500, 500), 1)
                    lines.append(f"{GAUGE}{{{inst},{l}}} {v} {t}\n")
                f.write("".join(lines))
                nseries += 1
                nsamples += n_steps
        name = "synth_request_duration_seconds"
        f.write(f"# TYPE {name} histogram\n# HELP {name} Synthetic classic histogram.\n")
        weights = [1, 2, 4, 8, 12, 10, 6, 3, 2, 1, 1, 1]
        nb = len(BUCKETS)
        for inst in insts:
            for l in hists:
                counts = [0] * nb
                total = 0.0
                lines = []
                rate = rng.choice([1, 4, 20])
                for t in times:
                    obs = rng.randint(0, 2 * rate)
                    for bi in rng.choices(range(nb), weights=weights, k=obs):
                        counts[bi] += 1
                        hi = float(BUCKETS[bi]) if bi < nb - 1 else 20.0
                        total += hi * 0.7
                    acc = 0
                    for bi, b in enumerate(BUCKETS):
                        acc += counts[bi]
                        lines.append(f'{name}_bucket{{{inst},{l},le="{b}"}} {acc} {t}\n')
                    lines.append(f"{name}_count{{{inst},{l}}} {acc} {t}\n")
                    lines.append(f"{name}_sum{{{inst},{l}}} {round(total, 3)} {t}\n")
                f.write("".join(lines))
                nseries += nb + 2
                nsamples += (nb + 2) * n_steps
        f.write("# EOF\n")
    return nseries, nsamples, times[0], times[-1]


def run_measured(argv, log):
    """Runs argv to completion; returns (seconds, peak RSS MiB) from wait4's rusage."""
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        tail = Path(log).read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(argv)} exited with {p.returncode}:\n{tail}")
    return secs, ru.ru_maxrss / 1024


# ---------------------------------------------------------------- queries

def timed_get(port, path, params):
    """GET an API path; returns (ms until the whole body is read, decoded `data`).

    Only the request and the reading of the body are timed: decoding the JSON
    in Python (a second for a 20 MB answer) would blur the servers' ratio."""
    url = f"http://127.0.0.1:{port}{path}?" + urllib.parse.urlencode(params)
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=ssb.HTTP_TIMEOUT) as r:
        raw = r.read()
    ms = (time.perf_counter() - t0) * 1000
    body = json.loads(raw)
    if body.get("status") != "success":
        raise RuntimeError(f"{params.get('query')}: {body.get('error', body)}")
    return ms, body["data"]


def instant_query(port, expr, at):
    return timed_get(port, "/api/v1/query", {"query": expr, "time": f"{at:.3f}"})


def range_query(port, expr, start, end, step):
    return timed_get(port, "/api/v1/query_range",
                     {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}s"})


def canon(data):
    """{sorted label pairs: [(t, value string), ...]} of a query result."""
    rt, res = data["resultType"], data["result"]
    if rt in ("scalar", "string"):
        return {(): [(float(res[0]), res[1])]}
    out = {}
    for s in res:
        key = tuple(sorted(s.get("metric", {}).items()))
        pts = s["values"] if rt == "matrix" else [s["value"]]
        out[key] = [(float(t), v) for t, v in pts]
    return out


def close(x, y):
    a, b = float(x), float(y)
    if a == b or (math.isnan(a) and math.isnan(b)):
        return True
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def mismatches(pd, qd):
    """Series present in only one answer plus points that differ (time or value)."""
    p, q = canon(pd), canon(qd)
    n = len(p.keys() ^ q.keys())
    for k in p.keys() & q.keys():
        a, b = p[k], q[k]
        n += abs(len(a) - len(b))
        n += sum(1 for (ta, va), (tb, vb) in zip(a, b) if ta != tb or not close(va, vb))
    return n


def run_queries(servers, runs, instant_at, range_args):
    """Every query, instant and range: one warm-up and `runs` timed runs per
    server, alternating servers. Returns rows with per-server
    (median ms, series count, error) and the last answers."""
    rows = []
    for label, expr in QUERIES:
        for kind in ("instant", "range"):
            if kind == "instant":
                def call(port, expr=expr):
                    return instant_query(port, expr, instant_at)
            else:
                def call(port, expr=expr):
                    return range_query(port, expr, *range_args)
            row = {"label": f"{label} ({kind})", "expr": expr}
            lat = {s.name: [] for s in servers}
            ans, err = {}, {}
            for i in range(runs + 1):
                for s in (servers if i % 2 == 0 else servers[::-1]):
                    if s.name in err:
                        continue
                    s.check_alive()
                    try:
                        ms, data = call(s.port)
                    except (OSError, RuntimeError, ValueError, KeyError) as e:
                        err[s.name] = str(e)
                        continue
                    if i > 0:
                        lat[s.name].append(ms)
                    ans[s.name] = data
            for s in servers:
                if s.name in err or not lat[s.name]:
                    row[s.name] = (None, None, err.get(s.name, "no runs"))
                else:
                    row[s.name] = (statistics.median(lat[s.name]), ssb.series_count(ans[s.name]), None)
            row["answers"] = ans
            rows.append(row)
    return rows


def print_query_table(rows, runs, compare_values):
    P, Q = "pharos", "prometheus"
    print(f"median of {runs} runs after a warm-up, ms (wall clock: request until the last byte of the answer)")
    print(f"{'query':36}{'pharos':>10}{'prom':>10}{'p/prom':>8}  {'series p/q':18}"
          f"{'mismatches' if compare_values else ''}")
    ratios, total_mm, slower = [], 0, []
    for row in rows:
        (pl, pn, perr), (ql, qn, qerr) = row[P], row[Q]
        r = ssb.ratio(pl, ql)
        if r is not None:
            ratios.append(r)
            if r > 1:
                slower.append((row["label"], r, pl, ql))
        same = "match" if pn == qn and pn is not None else "DIFFER"
        mm = ""
        if compare_values and P in row["answers"] and Q in row["answers"]:
            m = mismatches(row["answers"][P], row["answers"][Q])
            total_mm += m
            mm = str(m)
        print(f"{row['label']:36}{ssb.fmt(pl):>10}{ssb.fmt(ql):>10}{ssb.fmt(r):>8}  "
              f"{f'{pn}/{qn} {same}':18}{mm}")
        for name, e in ((P, perr), (Q, qerr)):
            if e:
                print(f"    {name} error: {e}")
    if ratios:
        print(f"{'median pharos/prometheus latency ratio':56}{ssb.fmt(statistics.median(ratios)):>8}")
        print(f"{'worst pharos/prometheus latency ratio':56}{ssb.fmt(max(ratios)):>8}")
    if compare_values:
        print(f"answers compared (series sets, timestamps, values within {REL_TOL:g} relative): "
              f"{total_mm} mismatches")
    for label, r, pl, ql in slower:
        print(f"SLOWER on pharos: {label}: {pl:.2f} ms vs {ql:.2f} ms ({r:.2f}x)")


# ---------------------------------------------------------------- modes

def start_servers(tmp, cfg, a, data_dirs, extra):
    servers = []
    for name, binary in (("pharos", str(a.pharos)), ("prometheus", a.prometheus)):
        port = ssb.free_port()
        argv = [binary, f"--config.file={cfg}", f"--storage.tsdb.path={data_dirs[name]}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", *extra]
        servers.append(ssb.Server(name, argv, tmp / f"{name}.log", port))
    return servers


def wait_series(servers, expr, at, want, timeout=120):
    """Until `expr` at `at` equals `want` on every server (blocks loaded, API ready)."""
    deadline = time.monotonic() + timeout
    pending = list(servers)
    got = {}
    while pending:
        for s in list(pending):
            s.check_alive()
            try:
                got[s.name] = ssb.scalar_of(ssb.query(s.port, expr, at=at))
            except (OSError, RuntimeError, ValueError, KeyError):
                got[s.name] = None
            if got[s.name] == want:
                pending.remove(s)
        if pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{expr} at {at}: want {want}, got {got}")
            time.sleep(0.5)


def backfill_mode(a, tmp, procs, cmdline):
    ssb.ensure_pharos(a)
    P, Q = "pharos", "prometheus"
    om = tmp / "data.om"
    # Sample timestamps are 7 s past a multiple of 15 s and queries are
    # evaluated 1 s after a sample, so no range boundary (of the queries'
    # 1m/2m windows, nor a 15 s subquery step's) falls on a sample. On a
    # boundary Prometheus 2.42 includes the sample at the window start and
    # pharos, following Prometheus 3.x, does not (left-open ranges).
    end = (int(time.time()) - 300) // 60 * 60 + 7
    t0 = time.perf_counter()
    print(f"writing {om.name}: {a.targets} instances x {a.series} series, {a.hours} h every "
          f"{a.file_interval}s ...", flush=True)
    nseries, nsamples, first, last = write_openmetrics(om, a, end)
    gen_s = time.perf_counter() - t0
    size = om.stat().st_size
    print(f"  {nseries:,} series, {nsamples:,} samples, {size / 2**20:,.0f} MiB in {gen_s:.1f}s", flush=True)
    dirs = {P: tmp / "pharos-data", Q: tmp / "prometheus-data"}
    tool_argv = {
        P: [str(a.pharos), "tsdb", "create-blocks-from", "openmetrics", str(om), str(dirs[P])],
        Q: [a.promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(dirs[Q])],
    }
    backfill = {}
    for name in (Q, P):
        print(f"backfilling with {' '.join(tool_argv[name][:5])} ...", flush=True)
        backfill[name] = run_measured(tool_argv[name], tmp / f"{name}-backfill.log")
        print(f"  {backfill[name][0]:.1f}s, peak RSS {backfill[name][1]:,.0f} MiB", flush=True)
    blocks = {n: sorted(p.name for p in dirs[n].iterdir() if p.is_dir()) for n in (P, Q)}
    disk = {n: sum(f.stat().st_size for f in dirs[n].rglob("*") if f.is_file()) for n in (P, Q)}
    om.unlink()  # free the disk before the servers start

    cfg = tmp / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1m\n")
    servers = start_servers(tmp, cfg, a, dirs, ["--storage.tsdb.retention.time=3650d"])
    procs.extend(servers)
    print("waiting for both servers to load the blocks ...", flush=True)
    expr = " + ".join(f'count({{__name__="{n}"}})' for n in
                      (REQ, GAUGE, HIST, "synth_request_duration_seconds_count",
                       "synth_request_duration_seconds_sum"))
    wait_series(servers, expr, last, nseries)
    time.sleep(2)
    hwm_before = {s.name: ssb.memory_mib(s.proc.pid)[1] for s in servers}
    at = last + 1
    r_start = first + 600 + 1
    rows = run_queries(servers, a.runs, at, (r_start, at, a.step))
    hwm_after = {s.name: ssb.memory_mib(s.proc.pid)[1] for s in servers}
    rss_after = {s.name: ssb.memory_mib(s.proc.pid)[0] for s in servers}
    logs = {s.name: s.log_tail(8) for s in servers}

    print()
    print(f"data: one OpenMetrics file, {a.targets} instances x {a.series} series = {nseries:,} series "
          f"({len(families(a.series)[0]) * a.targets:,} counters, {len(families(a.series)[1]) * a.targets:,} "
          f"gauges, {len(families(a.series)[2]) * a.targets:,} classic histograms x {len(BUCKETS) + 2}), "
          f"{nsamples:,} samples every {a.file_interval}s from {first} to {last} (unix s), "
          f"{size / 2**20:,.0f} MiB")
    print(f"queries: instant at {at}; range from {r_start} to {at} step {a.step}s "
          f"({(at - r_start) // a.step + 1} steps)")
    print(f"command:  {cmdline}")
    for n in (Q, P):
        print(f"  backfill {n}: {' '.join(shlex.quote(x) for x in tool_argv[n])}")
    for s in servers:
        print(f"  {s.name}: {' '.join(shlex.quote(x) for x in s.argv)}")
    print()
    print(f"{'':40}{'pharos':>12}{'prometheus':>12}{'p/prom':>8}")
    for label, f, nd in (("backfill wall time, s", lambda n: backfill[n][0], 1),
                         ("backfill peak RSS, MiB", lambda n: backfill[n][1], 0),
                         ("blocks written", lambda n: len(blocks[n]), 0),
                         ("data dir bytes, MiB", lambda n: disk[n] / 2**20, 1),
                         ("server peak RSS after load, MiB", lambda n: hwm_before[n], 1),
                         ("server peak RSS after queries, MiB", lambda n: hwm_after[n], 1),
                         ("server RSS after queries, MiB", lambda n: rss_after[n], 1)):
        p, q = f(P), f(Q)
        print(f"{label:40}{ssb.fmt(p, nd):>12}{ssb.fmt(q, nd):>12}{ssb.fmt(ssb.ratio(p, q)):>8}")
    print()
    print_query_table(rows, a.runs, compare_values=True)
    for n in (P, Q):
        if logs[n]:
            print(f"\n{n} log tail:\n{logs[n]}")


def scrape_mode(a, tmp, procs, cmdline):
    exporter_py = a.shared_dir / "bench" / "synth_exporter.py"
    if not exporter_py.exists():
        raise SystemExit(f"{exporter_py} not found (use --shared-dir)")
    ssb.ensure_pharos(a)
    base = ssb.free_port_range(a.targets)
    procs.append(ssb.Server("exporter", [sys.executable, str(exporter_py), "--host", "127.0.0.1",
                                         "--base-port", str(base), "--targets", str(a.targets),
                                         "--series", str(a.series)], tmp / "exporter.log"))
    cfg = tmp / "prometheus.yml"
    ssb.write_config(cfg, base, a)
    dirs = {n: tmp / f"{n}-data" for n in ("pharos", "prometheus")}
    for d in dirs.values():
        d.mkdir()
    servers = start_servers(tmp, cfg, a, dirs, [])
    procs.extend(servers)
    print(f"waiting for {a.targets} targets to be up in both servers ...", flush=True)
    ssb.wait_all_up(servers, a.targets, timeout=60 + 3 * a.interval)
    print(f"scraping for {a.duration}s ...", flush=True)
    t_start, t_end, _ = ssb.measure(servers, a.duration)
    time.sleep(1)
    hwm_before = {s.name: ssb.memory_mib(s.proc.pid)[1] for s in servers}
    nseries = {s.name: ssb.scalar_of(ssb.query(s.port, "count({__name__=~\".+\"})", at=t_end))
               for s in servers}
    step = max(1, a.duration // 60)
    rows = run_queries(servers, a.runs, t_end, (t_start, t_end, step))
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
    print_query_table(rows, a.runs, compare_values=False)
    print()
    print(f"{'peak RSS MiB (VmHWM)':40}{'pharos':>10}{'prom':>10}")
    print(f"{'  after scraping':40}{ssb.fmt(hwm_before[P], 1):>10}{ssb.fmt(hwm_before[Q], 1):>10}")
    print(f"{'  after the queries':40}{ssb.fmt(hwm_after[P], 1):>10}{ssb.fmt(hwm_after[Q], 1):>10}")


def main():
    a = parse_args()
    cmdline = " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv])
    procs = []
    with tempfile.TemporaryDirectory(prefix="pharos-qbench-") as tmp:
        tmp = Path(tmp)
        try:
            (backfill_mode if a.mode == "backfill" else scrape_mode)(a, tmp, procs, cmdline)
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
