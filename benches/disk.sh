#!/usr/bin/env bash
# Disk use of tocsin's data directory under a steady load: tocsin scrapes the synthetic target
# (../shared/peer/target.py) at 1 s and the whole data directory (SQLite file, its -wal and -shm
# files) is measured once a minute, as bytes per sample ingested so far; at the end tocsin stops
# cleanly and the directory is measured again against the samples stored in chunks.
#
#   usage: benches/disk.sh [--series N] [--minutes M] [--interval S] [--tocsin BIN]
#     --series   series exposed by the target (default 100000)
#     --minutes  run length (default 120: the 2-hour figure issue 16 asks for)
#     --interval scrape interval in seconds (default 1)
#     --tocsin   the binary to measure (default: this tree's release build, built first)
#
# Results: $OUT/disk-nN-mM.json (OUT=/tmp/tocsin-disk). Everything runs on 127.0.0.1 and is
# stopped again by PID.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEER=$(cd "$ROOT/../shared/peer" && pwd)
OUT=${OUT:-/tmp/tocsin-disk}
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
exec python3 "$HERE/disk.py" --tocsin "$BIN" --peer "$PEER" --out "$OUT" "${ARGS[@]}"
