#!/usr/bin/env bash
# Remote write throughput: tocsin and Prometheus scrape the same synthetic target
# (../shared/peer/target.py) side by side and each remote-writes everything to its own
# single-node VictoriaMetrics; measured in one run on the same clock.
#
#   usage: benches/remote-write.sh N [WINDOW_SECONDS] [INTERVAL_SECONDS]
#     N        series exposed by the target (e.g. 10000, 100000)
#     WINDOW   measurement window after a 30 s warm-up (default 60)
#     INTERVAL scrape interval of both daemons (default 1)
#
# Reports, for tocsin and Prometheus: samples/s sent (the sender's counter) and received (the
# VictoriaMetrics' rows inserted), CPU seconds per second (the whole daemon: scrape + store +
# remote write), CPU seconds per million samples sent, RSS (mean, max), the backlog at the end,
# and tocsin's remote write queue bytes; with tocsin/Prometheus ratios. Results:
# $OUT/remote-write-nN-iI.json (OUT=/tmp/tocsin-remote-write). Everything runs on 127.0.0.1
# and is stopped again by PID. Needs prometheus and victoria-metrics (apt).
set -euo pipefail
N=${1:?usage: remote-write.sh N [WINDOW] [INTERVAL]}
WINDOW=${2:-60}
INTERVAL=${3:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEER=$(cd "$ROOT/../shared/peer" && pwd)
OUT=${OUT:-/tmp/tocsin-remote-write}
command -v prometheus >/dev/null || { echo "prometheus missing: apt install prometheus" >&2; exit 1; }
command -v victoria-metrics >/dev/null || { echo "victoria-metrics missing: apt install victoria-metrics" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --quiet)
mkdir -p "$OUT"
exec python3 "$HERE/remote_write.py" --series "$N" --window "$WINDOW" --interval "$INTERVAL" \
  --tocsin "$ROOT/target/release/tocsin" --peer "$PEER" --out "$OUT"
