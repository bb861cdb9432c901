#!/usr/bin/env bash
# Rules at scale (issue 16): RULES alerting rules generated from the seed patterns (bench_rules.py)
# over ../shared/peer/target.py's SERIES series, evaluated every 30 s by tocsin on its own store
# (scraping the target, pinned to one core with taskset) and by Prometheus 2.42 on the same rule file
# (scraping the same target); with --vmalert also by vmalert 1.79 against a VictoriaMetrics that
# scrapes the target. One run, all side by side.
#
#   usage: benches/rules-at-scale.sh [--rules 10000] [--series 100000] [--interval 30]
#                                    [--scrape-interval 15] [--warmup 120] [--window 300]
#                                    [--core 0] [--vmalert]
#
# Reports per daemon: CPU seconds per evaluation cycle and per second (whole daemon), RSS mean and
# max, group evaluation time (tocsin_rule_group_duration_seconds vs
# prometheus_rule_group_duration_seconds vs vmalert_iteration_duration_seconds; the longest
# last-duration gauge seen), missed iterations (tocsin_rule_group_iterations_missed_total vs
# prometheus_rule_group_iterations_missed_total vs vmalert_iteration_missed_total) and failed
# evaluations, with tocsin's ratios. Bounded: warm-up + window + ~30 s (about 7.5 minutes with the
# defaults). Results: $OUT/rules-at-scale-rRULES-nSERIES.json (OUT=/tmp/tocsin-rules-at-scale).
# Everything listens on 127.0.0.1 and is stopped again by PID. Needs prometheus (apt), and
# victoria-metrics for --vmalert.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEER=$(cd "$ROOT/../shared/peer" && pwd)
OUT=${OUT:-/tmp/tocsin-rules-at-scale}
command -v prometheus >/dev/null || { echo "prometheus missing: apt install prometheus" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --quiet)
exec python3 "$HERE/rules_at_scale.py" --tocsin "$ROOT/target/release/tocsin" --peer "$PEER" --out "$OUT" "$@"
