#!/usr/bin/env bash
# tocsin beside vmalert 1.79 (Debian's victoria-metrics package) evaluating the same generated
# alerting rules (bench_rules.py: the seed rules' shapes over ../shared/peer/target.py's metrics)
# against the same single-node VictoriaMetrics, which scrapes the target. tocsin runs `run` with
# every group on `datasource: vm`; both send alerts to one Alertmanager-API sink; both run at once.
#
#   usage: benches/vmalert.sh [--sizes 100,1000,10000] [--series 100000] [--interval 15]
#                             [--window 90] [--warmup 30] [--fill 60] [--per-group 100]
#
# Per size: CPU seconds per evaluation cycle, RSS mean and max, each one's own group evaluation
# time (tocsin_rule_group_duration_seconds, vmalert_iteration_duration_seconds), missed iterations
# and failed rule evaluations, with tocsin/vmalert ratios (issue 13's target: <= 0.5 for CPU and RSS).
# Bounded: fill + sizes x (warm-up + window + ~10 s), about 8 minutes with the defaults. Results:
# $OUT/vmalert-SIZES.json (OUT=/tmp/tocsin-vmalert). Everything listens on 127.0.0.1 and is stopped
# again by PID. Needs victoria-metrics and vmalert (apt install victoria-metrics).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEER=$(cd "$ROOT/../shared/peer" && pwd)
OUT=${OUT:-/tmp/tocsin-vmalert}
for b in victoria-metrics vmalert; do
  command -v $b >/dev/null || { echo "$b missing: apt install victoria-metrics" >&2; exit 1; }
done
(cd "$ROOT" && cargo build --release --quiet)
exec python3 "$HERE/vmalert.py" --tocsin "$ROOT/target/release/tocsin" --peer "$PEER" --out "$OUT" "$@"
