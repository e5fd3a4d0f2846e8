#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 10m),
# one after another, and prints each target's executions. Findings are
# written by go test under the package's testdata/fuzz and fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10m}
summary=()
for pkg in $($GO list ./...); do
  for target in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "== $pkg $target ($FUZZTIME)"
    log=$(mktemp)
    if ! $GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1 | tee "$log" | grep -vE '^fuzz: elapsed: [0-9]+s, execs' ; then
      cat "$log" >&2
      echo "fuzz: $target failed" >&2
      exit 1
    fi
    execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
    summary+=("$target $execs")
    rm -f "$log"
  done
done
echo "== executions per target ($FUZZTIME each)"
printf '  %-22s %s\n' $(printf '%s\n' "${summary[@]}")
