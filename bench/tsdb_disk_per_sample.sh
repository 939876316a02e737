#!/usr/bin/env bash
# Disk bytes per sample of pharos blocks vs Prometheus blocks on the same
# data: both tools backfill the same OpenMetrics file (node_exporter-like
# counters and gauges, 15 s interval) into blocks, with 2h and with 24h
# maximum block durations, and the chunk+index bytes are divided by the
# sample count.
# Usage: bench/tsdb_disk_per_sample.sh [SERIES] [HOURS]   (needs promtool)
set -euo pipefail
series=${1:-200}
hours=${2:-24}
here=$(cd "$(dirname "$0")" && pwd)
pharos=${PHAROS:-$here/../target/release/pharos}
"$pharos" tsdb --help > /dev/null 2>&1 || pharos=$here/../target/debug/pharos
[ -x "$pharos" ] || pharos=$here/../target/debug/pharos
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$here/tsdb_gen_openmetrics.py" "$series" "$hours" > "$work/data.om"
for range in 2h 24h; do
  promtool tsdb create-blocks-from openmetrics --max-block-duration=$range "$work/data.om" "$work/prom-$range" > /dev/null
  "$pharos" tsdb create-blocks-from openmetrics --max-block-duration=$range "$work/data.om" "$work/pharos-$range" > /dev/null
  for who in prom pharos; do
    d=$work/$who-$range
    samples=$(cat "$d"/*/meta.json | grep -o '"numSamples": *[0-9]*' | awk -F: '{s+=$2} END {print s}')
    bytes=$(( $(du -cb "$d"/*/chunks | tail -1 | cut -f1) + $(du -cb "$d"/*/index | tail -1 | cut -f1) ))
    printf '%-6s %-4s samples=%-9s chunk+index bytes=%-9s bytes/sample=%s\n' "$who" "$range" "$samples" "$bytes" \
      "$(awk -v b="$bytes" -v s="$samples" 'BEGIN {printf "%.4f", b/s}')"
    eval "${who}_$range=$bytes"
  done
  awk -v a="$(eval echo \$pharos_$range)" -v b="$(eval echo \$prom_$range)" -v r=$range 'BEGIN {printf "ratio pharos/prometheus (%s blocks): %.4f\n", r, a/b}'
done
