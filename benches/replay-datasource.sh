#!/usr/bin/env bash
# Replay against a remote datasource: rule evaluations per second over a day of history in
# VictoriaMetrics (and Prometheus when promtool is there), in both `--datasource-mode`s.
# Needs victoria-metrics (apt install victoria-metrics). About a minute with a release build.
#
#   usage: benches/replay-datasource.sh [RULES] [SERIES]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
(cd "$ROOT" && cargo build --release --quiet --bin tocsin)
exec python3 "$HERE/replay_datasource.py" --tocsin "${TOCSIN_BIN:-$ROOT/target/release/tocsin}" \
  --rules "${1:-20}" --series "${2:-10}"
