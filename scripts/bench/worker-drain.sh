#!/usr/bin/env bash
# How fast the worker alone drains a filled inbox (loopback only).
#
#   scripts/bench/worker-drain.sh [ROUTER_BIN] [SECONDS]
#
# Fills the inbox with the worker off (wrk -t2 -c64 for 2 s, the two-alert
# body of side-by-side.sh, unique per request), restarts the router on the same
# database with the worker on (every alert routed to a log action), and after
# SECONDS (default 8) reports how many notifications it processed (the drop of
# `inbox_depth`) and the router's CPU time per processed notification.
# ROUTER_BIN defaults to target/release/mlops-alert-router (not built here).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/mlops-alert-router} secs=${2:-8}
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "missing: $bin (cargo build --release)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/worker-drain.XXXXXX")
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
printf 'route:\n  actions: [log]\n' >"$work/router.yaml"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start() { # $1 = worker.enabled
  MLOPS_ALERT_ROUTER__SERVER__LISTEN=127.0.0.1:$port \
  MLOPS_ALERT_ROUTER__STORAGE__PATH=$work/router.db \
  MLOPS_ALERT_ROUTER__LOG__LEVEL=warn \
  MLOPS_ALERT_ROUTER__WORKER__ENABLED=$1 \
  MLOPS_ALERT_ROUTER__INGEST__MAX_INBOX=10000000 \
    "$bin" serve --config "$work/router.yaml" >>"$work/router.log" 2>&1 &
  pid=$!
  for _ in $(seq 400); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
    sleep 0.025
  done
  echo "router not ready on $port" >&2; exit 1
}
depth() { curl -sf "http://127.0.0.1:$port/metrics" | awk '/^inbox_depth / {print $2}'; }
ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$pid/stat"; }
start false
FIXTURE=tests/fixtures/accuracy-firing-both-variants.json \
  wrk -t2 -c64 -d2s -s scripts/bench/two-alerts.lua "http://127.0.0.1:$port/api/v1/alerts" >/dev/null
kill "$pid"; wait "$pid" 2>/dev/null || true
start true
d0=$(depth) t0=$(ticks)
sleep "$secs"
d1=$(depth) t1=$(ticks)
n=$((d0 - d1))
hz=$(getconf CLK_TCK)
echo "filled=$d0 processed=$n in ${secs}s ($((n / secs))/s) cpu_us_per_notification=$(( (t1 - t0) * 1000000 / hz / (n > 0 ? n : 1) ))"
