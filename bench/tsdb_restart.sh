#!/usr/bin/env bash
# Restart (WAL replay) time of pharos vs Prometheus 2.42 on the same data:
# pharos's wal_replay example writes a WAL (node_exporter-like series, one
# commit per 2000-series target per 15 s scrape) into a data directory and
# times pharos's replay of it; Prometheus is then started on a copy of the
# same directory (it reads our WAL: see crates/tsdb/tests/promtool_wal.rs)
# and its own "WAL replay completed" log line gives its replay time.
# Usage: bench/tsdb_restart.sh [SERIES] [SCRAPES]    (needs prometheus)
set -euo pipefail
series=${1:-100000}
scrapes=${2:-120}
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
ex=$root/target/release/examples/wal_replay
[ -x "$ex" ] || (cd "$root" && cargo build --release -p pharos-tsdb --example wal_replay)
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/data"
echo "== pharos (open_head: replay on $(nproc) cores, in a fresh process as at a restart)"
"$ex" "$series" "$scrapes" "$work/data" | sed -n 1p
cp -r "$work/data" "$work/prom"
sync
"$ex" "$series" "$scrapes" "$work/data" replay-only | tee "$work/pharos.out"
rm -rf "$work/prom/lock"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'global:\n  scrape_interval: 1h\n' > "$work/prometheus.yml"
echo "== prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}')"
start=$(date +%s.%N)
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address=127.0.0.1:$port > "$work/prom.log" 2>&1 &
pid=$!
until curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null 2>&1; do
  sleep 0.05
  kill -0 $pid 2>/dev/null || { cat "$work/prom.log"; exit 1; }
done
ready=$(date +%s.%N)
kill -9 $pid; pid=
grep -E 'WAL replay completed|Replaying WAL' "$work/prom.log" | tail -2
prom_replay=$(grep -o 'total_replay_duration=[^ ]*' "$work/prom.log" | tail -1 | cut -d= -f2)
prom_s=$(python3 - "$prom_replay" <<'PY'
import re, sys
d = sys.argv[1]
units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}
print(sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(h|ms|µs|us|ns|m|s)", d)))
PY
)
pharos_s=$(grep -o 'in [0-9.]*[mµ]*s:' "$work/pharos.out" | tail -1 | python3 -c '
import re, sys
m = re.search(r"in ([0-9.]+)(ms|µs|s):", sys.stdin.read())
f = {"s": 1, "ms": 1e-3, "µs": 1e-6}[m.group(2)]
print(float(m.group(1)) * f)')
printf 'prometheus: replay %.3f s (ready after %.3f s)\n' "$prom_s" "$(echo "$ready - $start" | bc)"
printf 'pharos:     replay %.3f s\n' "$pharos_s"
python3 -c "print('ratio prometheus/pharos replay: %.2fx' % ($prom_s / $pharos_s))"
