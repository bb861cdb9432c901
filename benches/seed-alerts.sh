#!/usr/bin/env bash
# Live check: the shipped rules through the whole daemon (scrape -> rules -> route -> webhook and
# email) against ../shared/peer/target.py with every seed condition tripped, like the peer's
# check-alerts.sh. About 3 minutes. Exit 0 = every expected alert arrived by webhook and email.
#
#   usage: benches/seed-alerts.sh [WINDOW_SECONDS]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEER=$(cd "$ROOT/../shared/peer" && pwd)
(cd "$ROOT" && cargo build --release --quiet)
exec python3 "$HERE/seed_alerts.py" --tocsin "${TOCSIN_BIN:-$ROOT/target/release/tocsin}" --peer "$PEER" \
  --rules "$ROOT/rules" --window "${1:-160}"
