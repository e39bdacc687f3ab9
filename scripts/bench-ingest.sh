#!/usr/bin/env bash
# Ingest benchmark: durable POST /api/v1/alerts vs a bare handler that only
# parses the same bodies (the physical limit of this box), then a fixed
# 1,000 req/s run for latency. Loopback only. Figures go to BENCHMARKS.md.
#
#   scripts/bench-ingest.sh [DURATION_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --quiet --bin mlops-alert-router --example bare_ingest --example loadgen
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

router_port=$(free_port)
MLOPS_ALERT_ROUTER__SERVER__LISTEN=127.0.0.1:$router_port \
MLOPS_ALERT_ROUTER__STORAGE__PATH=$work/router.db \
MLOPS_ALERT_ROUTER__LOG__LEVEL=warn \
  target/release/mlops-alert-router serve >"$work/router.log" 2>&1 &
router=$!; pids+=("$router")
bare_port=$(free_port)
target/release/examples/bare_ingest "127.0.0.1:$bare_port" 2>/dev/null &
bare=$!; pids+=("$bare")
wait_port "$router_port"; wait_port "$bare_port"
sleep 1
echo "router idle RSS: $(rss_kib "$router") KiB"

run_wrk() {
  FIXTURE_DIR=tests/fixtures wrk -t2 -c64 -d"${secs}s" --latency -s scripts/wrk-alerts.lua "http://127.0.0.1:$1/api/v1/alerts"
}
echo "== durable ingest (router), wrk -t2 -c64 -d${secs}s"
run_wrk "$router_port" | tee "$work/router.wrk"
echo "== bare handler (parse and drop), wrk -t2 -c64 -d${secs}s"
run_wrk "$bare_port" | tee "$work/bare.wrk"
echo "== router at a fixed 1,000 req/s for ${secs}s, at most 64 in flight"
target/release/examples/loadgen "http://127.0.0.1:$router_port/api/v1/alerts" 1000 "$secs" 64 tests/fixtures
echo "router RSS after load: $(rss_kib "$router") KiB, peak: $(hwm_kib "$router") KiB"
stored=$(sqlite3 "$work/router.db" 'select count(*) from notifications' 2>/dev/null || echo "?")
echo "notifications stored: $stored"

r=$(awk '/Requests\/sec/ {print $2}' "$work/router.wrk")
b=$(awk '/Requests\/sec/ {print $2}' "$work/bare.wrk")
python3 -c "print(f'durable/bare = {float(\"$r\")/float(\"$b\"):.0%}')"
