#!/usr/bin/env bash
# Instructions per request of the JWT paths, counted by valgrind
# (callgrind), so that the comparison does not depend on the load of a
# shared machine the way ns/op does. For each benchmark of the peers
# module (examples/bench) it counts the instructions executed inside one
# function, the request's entry point, at N1 and at N2 iterations, and
# prints (Ir(N2) - Ir(N1)) / (N2 - N1): the setup cancels out.
#
#   bare-handler, sessionbridge-*   inside mux's (*Router).ServeHTTP
#   golang-jwt                      inside jwt's (*Parser).ParseWithClaims
#
# What it leaves out: the GC's background workers (their cost grows with
# the bytes allocated, which the allocation counts of make bench show).
#
# Environment: ALGS (default "ES256 HS256"), N1 (1000), N2 (5000).
# Usage: scripts/bench-instructions.sh      (make bench-instructions)
set -euo pipefail
shopt -s inherit_errexit # a failed count inside $(...) stops the script
cd "$(dirname "$0")/.."
GO=${GO:-go}
ALGS=${ALGS:-ES256 HS256}
N1=${N1:-1000}
N2=${N2:-5000}

scripts/deps.sh valgrind
bin=$(mktemp -d)/peers.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
(cd examples/bench && $GO test -c -o "$bin" .)

# count bench function n: instructions inside function during n iterations.
# valgrind and the Go runtime occasionally disagree on a signal; retry.
count() {
  local v
  for _ in $(seq 10); do
    v=$(cd examples/bench && valgrind --tool=callgrind --callgrind-out-file=/dev/null \
      --toggle-collect="$2" "$bin" -test.run '^$' -test.bench "^BenchmarkJWT/$1\$" \
      -test.benchtime "${3}x" -test.cpu 1 2>&1 | awk '/Collected/ {print $4}')
    [[ -n $v ]] && { echo "$v"; return; }
  done
  echo "bench-instructions: valgrind failed on $1" >&2
  exit 1
}

per_op() { # bench function
  local a b
  a=$(count "$1" "$2" "$N1")
  b=$(count "$1" "$2" "$N2")
  echo $(((b - a) / (N2 - N1)))
}

printf '%-6s %-7s %-22s %12s\n' alg transport impl instructions/op
for alg in $ALGS; do
  parse=$(per_op "alg=$alg/transport=none/impl=golang-jwt" '*Parser).ParseWithClaims')
  printf '%-6s %-7s %-22s %12d\n' "$alg" none golang-jwt "$parse"
  for tr in bearer cookie; do
    declare -A n=()
    for impl in bare-handler sessionbridge-repeat sessionbridge-first; do
      n[$impl]=$(per_op "alg=$alg/transport=$tr/impl=$impl" '*Router).ServeHTTP')
      printf '%-6s %-7s %-22s %12d\n' "$alg" "$tr" "$impl" "${n[$impl]}"
    done
    awk -v bare="${n[bare-handler]}" -v rep="${n[sessionbridge-repeat]}" -v first="${n[sessionbridge-first]}" -v parse="$parse" \
      -v alg="$alg" -v tr="$tr" 'BEGIN {
        printf "  %s %s: repeat over bare %d instructions; golang-jwt parse / (repeat over bare) %.1fx; (first over bare) / golang-jwt %.3fx\n",
          alg, tr, rep - bare, parse / (rep - bare), (first - bare) / parse }'
    unset n
  done
done
