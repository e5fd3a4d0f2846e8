#!/usr/bin/env bash
# Makes sure the programs the tests need are installed. As root with apt-get
# it installs what is missing from Debian's packages; otherwise it fails with
# the command to run. Usage: scripts/deps.sh redis-server chromium node ...
set -euo pipefail

declare -A pkg=(
  [redis-server]=redis-server
  [redis-sentinel]=redis-sentinel
  [redis-cli]=redis-tools
  [chromium]=chromium
  [node]=nodejs
  [npm]=npm
  [wrk]=wrk
  [curl]=curl
  [valgrind]=valgrind
)

missing=()
for tool in "$@"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg[$tool]:-$tool}")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "deps: installing ${missing[*]} with apt-get" >&2
  if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null) ]]; then
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
echo "deps: missing ${missing[*]}: install with: sudo apt-get install ${missing[*]}" >&2
exit 1
