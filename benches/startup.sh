#!/usr/bin/env bash
# Start-up with a large store (issue 16: with 1M series and 2 h of data, /health/live answers in
# < 1 s and scraping resumes in < 5 s; the write-ahead replay time reported).
#
#   usage: benches/startup.sh [N] [HOURS] [INTERVAL] [--most-rows]
#          (default 1000000 2 15: ~2.6 GB of store, ~15 min; --most-rows ends the history where a
#          crash leaves the most write-ahead rows: the last flush before a checkpoint, up to 120 intervals before tocsin starts, so
#          the replay's size does not depend on the clock)
#
# Builds the store through tocsin's own store code (benches/startup_fixture.rs) from one body of
# ../shared/peer/target.py's /metrics, leaves its last write-ahead rows as a crash does, starts
# `tocsin run` on it scraping that target and times /health/live, the API and the first scrape;
# then stops it with SIGTERM and times a start on the cleanly closed store.
# Results: $OUT/startup-nN.json (OUT=/tmp/tocsin-startup). Everything runs on 127.0.0.1.
set -euo pipefail
N=${1:-1000000}
HOURS=${2:-2}
INTERVAL=${3:-15}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEER=$(cd "$ROOT/../shared/peer" && pwd)
OUT=${OUT:-/tmp/tocsin-startup}
cd "$ROOT"
cargo build --release --quiet
FIXTURE=$(cargo bench --bench startup_fixture --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "startup_fixture" and m.get("executable"):
        print(m["executable"])')
exec python3 "$HERE/startup.py" --series "$N" --hours "$HOURS" --interval "$INTERVAL" ${4:+"$4"} \
  --tocsin "$ROOT/target/release/tocsin" --fixture "$FIXTURE" --peer "$PEER" --out "$OUT"
