#!/usr/bin/env bash
# Compares the benchmarks of a base commit with the working tree, in one
# run: both test binaries (package bridge and the peers module) are built
# once, then COUNT rounds alternate base and head, so that a burst of load
# on the machine spreads over both; benchstat prints base against head.
#
# Environment:
#   COUNT       rounds (default 6)
#   BENCHTIME   -benchtime of each run (default 1s)
#   BRIDGE      -bench pattern for package bridge
#   PEERS       -bench pattern for the peers module (examples/bench)
#   OUT         directory of the raw output (default $TMPDIR/sessionbridge-compare)
#
# Usage: scripts/bench-compare.sh BASE      (BASE: a commit, e.g. HEAD~3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GO=${GO:-go}
BASE=${1:?usage: scripts/bench-compare.sh BASE-COMMIT}
COUNT=${COUNT:-6}
BENCHTIME=${BENCHTIME:-1s}
BRIDGE=${BRIDGE:-'Verify/alg=(ES256|HS256)/case=(first-sight|cache-hit)$|Middleware|Credentials/op=bearer|CachePut/case=full'}
PEERS=${PEERS:-'JWT/alg=(ES256|HS256)/transport=(bearer|none)/impl=(bare-handler|sessionbridge-repeat|sessionbridge-first|golang-jwt)$'}
OUT=${OUT:-${TMPDIR:-/tmp}/sessionbridge-compare}

scripts/deps.sh redis-server
BENCHSTAT=$(GO=$GO scripts/benchstat.sh)

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
base=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$base" >/dev/null 2>&1 || rm -rf "$base"' EXIT
git worktree add --detach -q "$base" "$BASE"
echo "compare: base $(git rev-parse --short "$BASE"), head $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (dirty)')" | tee "$OUT/machine.txt"

for v in base head; do
  dir=$ROOT
  [[ $v == base ]] && dir=$base
  (cd "$dir" && $GO test -c -o "$OUT/$v-bridge.test" ./bridge)
  (cd "$dir/examples/bench" && $GO test -c -o "$OUT/$v-peers.test" .)
  : >"$OUT/$v-bridge.txt"
  : >"$OUT/$v-peers.txt"
done

# Both binaries run from the working tree's directories (testdata, redis).
for i in $(seq 1 "$COUNT"); do
  echo "compare: round $i/$COUNT" >&2
  for v in base head; do
    (cd bridge && "$OUT/$v-bridge.test" -test.run '^$' -test.bench "$BRIDGE" -test.benchmem \
      -test.benchtime "$BENCHTIME") >"$OUT/round.txt"
    grep '^Benchmark' "$OUT/round.txt" >>"$OUT/$v-bridge.txt" || true # none: the pattern matched nothing there
    (cd examples/bench && "$OUT/$v-peers.test" -test.run '^$' -test.bench "$PEERS" -test.benchmem \
      -test.benchtime "$BENCHTIME") >"$OUT/round.txt"
    grep '^Benchmark' "$OUT/round.txt" >>"$OUT/$v-peers.txt" || true
  done
done

{
  echo "## bridge (in-package): base vs head"
  "$BENCHSTAT" base="$OUT/base-bridge.txt" head="$OUT/head-bridge.txt"
  echo
  echo "## peers module: base vs head"
  "$BENCHSTAT" base="$OUT/base-peers.txt" head="$OUT/head-peers.txt"
} | tee "$OUT/summary.txt"
echo "compare: raw output and summary in $OUT" >&2
