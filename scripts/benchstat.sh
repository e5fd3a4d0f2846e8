#!/usr/bin/env bash
# Prints the path of benchstat, installing the pinned version with
# `go install` when it is missing. Used by bench.sh and bench-compare.sh.
#   BENCHSTAT_VERSION  the version to install (default below)
set -euo pipefail
GO=${GO:-go}
BENCHSTAT_VERSION=${BENCHSTAT_VERSION:-v0.0.0-20260908200009-22c9c6c9d4da}
if command -v benchstat >/dev/null 2>&1; then
  command -v benchstat
  exit 0
fi
GOBIN=$($GO env GOBIN)
[[ -n $GOBIN ]] || GOBIN=$($GO env GOPATH)/bin
if [[ ! -x $GOBIN/benchstat ]]; then
  echo "bench: installing benchstat $BENCHSTAT_VERSION" >&2
  GOFLAGS= $GO install "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION" >&2 ||
    GOFLAGS= $GO install golang.org/x/perf/cmd/benchstat@latest >&2
fi
echo "$GOBIN/benchstat"
