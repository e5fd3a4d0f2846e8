#!/usr/bin/env bash
# End-to-end throughput of the demo on loopback, with wrk, against a real
# redis-server: four configurations, alternating, ROUNDS rounds of
# DURATION each:
#   off      BRIDGE=off, requests with the legacy session cookie (the monolith as it was)
#   observe  the bridge in legacy mode on every route, the same session cookie
#   jwt      the bridge in dual mode, requests with the JWT cookie (converted users)
#   ceiling  BRIDGE=off, GET /healthz without a cookie: the same server,
#            router and logging with a handler that does nothing, the most
#            any credential could reach on this machine
# It prints requests per second per round, the medians and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
PATHNAME=${PATHNAME:-/api/me}

$GO build -o bin/ ./legacyapp/cmd/legacyapp
work=$(mktemp -d)

rport=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$work" >/dev/null &
redis_pid=$!
app_pid=
cleanup() { [[ -n $app_pid ]] && kill "$app_pid" 2>/dev/null; kill "$redis_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start() { # config
  local port; port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  addr=127.0.0.1:$port
  local env=(ADDR=$addr REDIS_URL=redis://127.0.0.1:$rport/0 LOG_LEVEL=error
    SESSION_HASH_KEY=bench-http-session-hash-key-32-bytes
    BRIDGE_ISSUER=http://bench BRIDGE_INSECURE_COOKIES=1)
  case $1 in
    off) env+=(BRIDGE=off) ;;
    observe) env+=(BRIDGE_DEFAULT_MODE=legacy BRIDGE_MODES=/api/me=legacy) ;;
    jwt) ;;
  esac
  env "${env[@]}" bin/legacyapp >"$work/app.log" 2>&1 &
  app_pid=$!
  for _ in $(seq 100); do curl -fs "http://$addr/healthz" >/dev/null 2>&1 && return; sleep 0.05; done
  echo "demo did not start:"; cat "$work/app.log"; exit 1
}
stop() { kill "$app_pid"; wait "$app_pid" 2>/dev/null || true; app_pid=; }

cookie() { # config → the Cookie header to send
  rm -f "$work/jar"
  curl -fs -c "$work/jar" -o /dev/null -d 'username=alice&password=alice-password' "http://$addr/login"
  if [[ $1 == jwt ]]; then
    curl -fs -b "$work/jar" -c "$work/jar" -o /dev/null "http://$addr/api/me"
    echo "id_token=$(awk '$6=="id_token"{print $7}' "$work/jar")"
  else
    echo "session=$(awk '$6=="session"{print $7}' "$work/jar")"
  fi
}

declare -A results
for round in $(seq "$ROUNDS"); do
  for cfg in off observe jwt ceiling; do
    path=$PATHNAME
    if [[ $cfg == ceiling ]]; then
      start off
      hdr="X-None: 1" path=/healthz
    else
      start "$cfg"
      hdr="Cookie: $(cookie "$cfg")"
    fi
    status=$(curl -s -o /dev/null -w '%{http_code}' -H "$hdr" "http://$addr$path")
    [[ $status == 200 ]] || { echo "$cfg: $path answered $status"; exit 1; }
    rps=$(wrk -t2 -c"$CONNS" -d"$DURATION" -H "$hdr" "http://$addr$path" | awk '/Requests\/sec/{print $2}')
    non2xx=$(curl -s -o /dev/null -w '%{http_code}' -H "$hdr" "http://$addr$path")
    stop
    results[$cfg]+="$rps "
    printf 'round %d  %-8s %10s req/s (last status %s)\n' "$round" "$cfg" "$rps" "$non2xx"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
off=$(echo "${results[off]}" | median)
obs=$(echo "${results[observe]}" | median)
jwt=$(echo "${results[jwt]}" | median)
ceil=$(echo "${results[ceiling]}" | median)
echo
printf 'medians: off %s, observe %s, jwt %s, ceiling %s req/s (GET %s, %s connections, %s rounds of %s)\n' "$off" "$obs" "$jwt" "$ceil" "$PATHNAME" "$CONNS" "$ROUNDS" "$DURATION"
awk -v a="$off" -v b="$obs" -v c="$jwt" -v d="$ceil" 'BEGIN{
  printf "observe / off = %.3f  (target >= 0.95)\n", b/a
  printf "jwt / off     = %.2f   (target >= 3.5: JWT path vs the legacy session path)\n", c/a
  printf "jwt / observe = %.2f\n", c/b
  printf "ceiling / off = %.2f   (a handler that does nothing, no credential: the most any path reaches here)\n", d/a
  printf "jwt / ceiling = %.2f\n", c/d
}'
