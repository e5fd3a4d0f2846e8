#!/usr/bin/env bash
# Runs the benchmarks of sessionbridge (package bridge) and of its peers
# (the examples/bench module: golang-jwt, auth0/go-jwt-middleware,
# go-chi/jwtauth, gorilla/sessions + boj/redistore on a real redis-server,
# and the crypto floors), writes the raw output, summarises it with
# benchstat and prints the ratios of the targets in docs/benchmarks.md.
#
# The COUNT runs are interleaved (round 1 of both sets, then round 2, ...)
# rather than -count N per benchmark, so that a burst of load on the
# machine spreads over every implementation instead of skewing one.
#
# Environment:
#   COUNT      runs of each benchmark (default 6)
#   BENCHTIME  -benchtime of each run (default 1s)
#   BENCH      -bench pattern for both sets (default .)
#   OUT        directory of the raw output (default $TMPDIR/sessionbridge-bench)
#   REDIS_URL  use this redis-server instead of starting one (not flushed)
#   BENCHSTAT_VERSION  benchstat to install when missing
#
# Usage: scripts/bench.sh          (make bench)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
GO=${GO:-go}
COUNT=${COUNT:-6}
BENCHTIME=${BENCHTIME:-1s}
BENCH=${BENCH:-.}
OUT=${OUT:-${TMPDIR:-/tmp}/sessionbridge-bench}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [[ -z ${REDIS_URL:-} ]]; then
  scripts/deps.sh redis-server
fi

BENCHSTAT=$(GO=$GO scripts/benchstat.sh)

# The machine, for the record.
{
  echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "go:      $($GO version)"
  echo "nproc:   $(nproc)"
  echo "cpu:     $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
  echo "load:    $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (before)"
  echo "count:   $COUNT, benchtime $BENCHTIME, bench $BENCH"
} | tee "$OUT/machine.txt"

# Build both test binaries once.
$GO test -c -o "$OUT/bridge.test" ./bridge
(cd examples/bench && $GO test -c -o "$OUT/peers.test" .)

: >"$OUT/raw-bridge.txt"
: >"$OUT/raw-peers.txt"
start=$SECONDS
for i in $(seq 1 "$COUNT"); do
  echo "bench: round $i/$COUNT ($((SECONDS - start))s)" >&2
  (cd bridge && "$OUT/bridge.test" -test.run '^$' -test.bench "$BENCH" -test.benchmem \
    -test.benchtime "$BENCHTIME" -test.count 1 -test.timeout 30m) >>"$OUT/raw-bridge.txt"
  (cd examples/bench && "$OUT/peers.test" -test.run '^$' -test.bench "$BENCH" -test.benchmem \
    -test.benchtime "$BENCHTIME" -test.count 1 -test.timeout 30m) >>"$OUT/raw-peers.txt"
done
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (after, ${SECONDS}s)" | tee -a "$OUT/machine.txt"

summary() {
  echo
  echo "## $1"
  shift
  "$BENCHSTAT" "$@"
}
{
  summary "bridge (in-package)" "$OUT/raw-bridge.txt"
  summary "JWT: middlewares on a mux router, and golang-jwt's bare parse" \
    -filter '.name:JWT' -col '/impl@(bare-handler sessionbridge-repeat sessionbridge-first golang-jwt auth0 jwtauth)' \
    -row '/alg /transport' "$OUT/raw-peers.txt"
  summary "Session on redis-server" -filter '.name:Session' -col /impl -row /path "$OUT/raw-peers.txt"
  summary "Counting and conversion through the middleware" -filter '.name:(Count OR Convert)' "$OUT/raw-peers.txt"
  summary "Floors" -filter '.name:Floor' "$OUT/raw-peers.txt"
  echo
  echo "## Ratios"
  (cd examples/bench && $GO run ./cmd/benchratio "$OUT/raw-bridge.txt" "$OUT/raw-peers.txt")
} | tee "$OUT/summary.txt"
echo "bench: raw output and summary in $OUT" >&2
