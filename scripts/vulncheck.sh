#!/usr/bin/env bash
# govulncheck without network access to vuln.go.dev: the Go vulnerability
# database comes from the golang.org/x/vulndb module (through the Go module
# proxy) and is indexed locally. Fails on reachable vulnerabilities in
# modules we require; reports reachable standard-library ones (fixed by a
# newer Go toolchain, which is the operator's) as warnings.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
VULNDB_VERSION=${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}
GOVULNCHECK_VERSION=${GOVULNCHECK_VERSION:-v1.9.0}
cache=${VULNDB_CACHE:-${TMPDIR:-/tmp}/sessionbridge-vulndb-$VULNDB_VERSION}

if [[ ! -f $cache/index/db.json ]]; then
  dir=$($GO mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rm -rf "$cache.tmp"
  $GO run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$dir/data/osv" -out "$cache.tmp"
  mv "$cache.tmp" "$cache"
fi

$GO install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"
govulncheck=$($GO env GOPATH)/bin/govulncheck
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
"$govulncheck" -db "file://$cache" ./... >"$out" 2>&1
rc=$?
set -e
cat "$out"
case $rc in
  0) exit 0 ;;
  3) ;; # vulnerabilities found: look at where
  *) echo "vulncheck: govulncheck failed (exit $rc)" >&2; exit $rc ;;
esac
if grep -qE 'Found in: [^ ]+@v[0-9]' "$out"; then
  echo "vulncheck: reachable vulnerabilities in required modules: upgrade them (see above)" >&2
  exit 1
fi
echo "vulncheck: WARNING: the findings above are in the Go standard library of $($GO env GOVERSION); they are fixed by upgrading the Go toolchain (see 'Fixed in')." >&2
