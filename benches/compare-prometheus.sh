#!/usr/bin/env bash
# Whole-daemon comparison: tocsin and Prometheus scrape the same synthetic target
# (../shared/peer/target.py) side by side, in one run, and are measured on the same clock.
#
#   usage: benches/compare-prometheus.sh N [WINDOW_SECONDS] [INTERVAL_SECONDS]
#     N        series exposed by the target (e.g. 10000, 100000)
#     WINDOW   measurement window after a 30 s warm-up (default 120)
#     INTERVAL scrape interval of both daemons (default 1)
#
# Reports CPU seconds per second, RSS (mean and max), samples ingested per second, and disk bytes
# per sample for both, with tocsin/Prometheus ratios; whether scrapes kept up (samples ingested
# against series / interval, and the slowest scrape of the window); and the latency of the API
# during ingest (a seed rule's /api/v1/query and the readiness endpoint, once a second: p50, p99,
# max). A million series at 15 s, issue 16's production size: compare-prometheus.sh 1000000 600 15
# (~15 min). Results: $OUT/compare-nN.json (OUT=/tmp/tocsin-compare).
# Everything runs on 127.0.0.1 and is stopped again by PID. Needs ../shared/peer/setup.sh (Prometheus, apt).
set -euo pipefail
N=${1:?usage: compare-prometheus.sh N [WINDOW] [INTERVAL]}
WINDOW=${2:-120}
INTERVAL=${3:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEER=$(cd "$ROOT/../shared/peer" && pwd)
OUT=${OUT:-/tmp/tocsin-compare}
command -v prometheus >/dev/null || { echo "prometheus missing: run $PEER/setup.sh first" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --quiet)
mkdir -p "$OUT"
exec python3 "$HERE/compare_prometheus.py" --series "$N" --window "$WINDOW" --interval "$INTERVAL" \
  --tocsin "$ROOT/target/release/tocsin" --peer "$PEER" --out "$OUT"
