#!/usr/bin/env bash
# Condition -> webhook latency of tocsin at 1 s scrape/evaluation intervals, measured as
# ../shared/peer/run-prometheus.sh measures Prometheus + Alertmanager (its "probe alert total s").
#
#   usage: benches/notify-latency.sh [SERIES] [INTERVAL_SECONDS] [CYCLES]
#
# Needs only python3 (the peer's target.py and receiver.py); Prometheus is not started here:
# run ../shared/peer/run-prometheus.sh SERIES INTERVAL 60 2 for the peer's figure beside it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEER=$(cd "$ROOT/../shared/peer" && pwd)
(cd "$ROOT" && cargo build --release --quiet)
exec python3 "$HERE/notify_latency.py" --tocsin "${TOCSIN_BIN:-$ROOT/target/release/tocsin}" --peer "$PEER" \
  --series "${1:-1000}" --interval "${2:-1}" --cycles "${3:-40}"
