#!/usr/bin/env bash
# `tocsin test` against `promtool test rules` on the same generated suite of rule unit tests
# (benches/gen_rule_tests.py: seed-like rule files and promtool-format test files).
#
#   usage: benches/rule-tests.sh [TESTS] [PER_FILE] [RUNS]
#     TESTS    test groups in all (default 500)
#     PER_FILE test groups per test file (default 10)
#     RUNS     timed runs of each tool; the best (least wall time) is reported (default 3)
#
# Prints each tool's wall and CPU time, whether every test passed, and tocsin/promtool.
# TOCSIN=path measures another binary (default: this tree's release build, built first).
# Needs promtool (Debian's `prometheus` package).
set -euo pipefail
TESTS=${1:-500}
PER_FILE=${2:-10}
RUNS=${3:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
command -v promtool >/dev/null || { echo "skipping: promtool is not installed (apt-get install prometheus)" >&2; exit 0; }
if [ -z "${TOCSIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
  TOCSIN="$ROOT/target/release/tocsin"
fi
SUITE=$(mktemp -d /tmp/tocsin-rule-tests.XXXXXX)
trap 'rm -rf "$SUITE"' EXIT
python3 "$HERE/gen_rule_tests.py" --tests "$TESTS" --per-file "$PER_FILE" --out "$SUITE"
cd "$SUITE"
# best of RUNS (least wall time): "wall_s cpu_s exit_status"
measure() {
  local best="" wall cpu rc
  for _ in $(seq "$RUNS"); do
    rc=0
    /usr/bin/time -o "$SUITE/.time" -f '%e %U %S' "$@" >"$SUITE/.out" 2>&1 || rc=$?
    read -r wall u s < <(tail -1 "$SUITE/.time")
    cpu=$(awk -v u="$u" -v s="$s" 'BEGIN{printf "%.2f", u + s}')
    if [ -z "$best" ] || awk -v a="$wall" -v b="${best%% *}" 'BEGIN{exit !(a < b)}'; then
      best="$wall $cpu $rc"
    fi
  done
  echo "$best"
}
P=$(measure promtool test rules ./*_test.yml)
T=$(measure "$TOCSIN" test ./*_test.yml)
read -r pw pc prc <<<"$P"
read -r tw tc trc <<<"$T"
files=$(ls ./*_test.yml | wc -l)
echo "suite: $TESTS test groups in $files files, best of $RUNS runs"
printf '%-9s wall %7.2fs  cpu %7.2fs  exit %s\n' promtool "$pw" "$pc" "$prc" tocsin "$tw" "$tc" "$trc"
awk -v t="$tw" -v p="$pw" -v tc="$tc" -v pc="$pc" 'BEGIN{printf "tocsin/promtool: wall %.3f, cpu %.3f\n", t/p, (pc > 0 ? tc/pc : 0)}'
[ "$prc" = 0 ] && [ "$trc" = 0 ]
