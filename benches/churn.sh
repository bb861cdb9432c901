#!/usr/bin/env bash
# Series churn: a loopback target exposes ~1,000 live series and replaces all of them every second
# (1,000 new series per second), scraped by tocsin every second for a bounded time. Samples tocsin's
# RSS and head series over time, then stops it and measures `tocsin query` (open time, wall time,
# peak RSS) on the store it left.
#
#   usage: benches/churn.sh [--minutes M] [--rate N] [--tocsin BIN]
#     --minutes  run length (default 30; use 5-10 for a quick look)
#     --rate     new series per second, also the number live at any time (default 1000)
#     --tocsin   binary to measure (default: this tree's release build, built first)
#
# Prints a table of RSS and head series over time and a JSON summary; the JSON is also written to
# $OUT/churn-<minutes>m.json (OUT=/tmp/tocsin-churn). Everything runs on 127.0.0.1 and is stopped
# again by PID.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${OUT:-/tmp/tocsin-churn}
BIN=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tocsin) BIN=$2; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
  BIN="$ROOT/target/release/tocsin"
fi
mkdir -p "$OUT"
exec python3 "$HERE/churn.py" --tocsin "$BIN" --out "$OUT" "${ARGS[@]}"
