#!/usr/bin/env bash
# Ingest benchmark (loopback only). Figures go to BENCHMARKS.md.
#
#   scripts/bench-ingest.sh [SECONDS_PER_RUN] [RUNS]
#
# 1. latency: a fresh router (default config, worker on) at a fixed 1,000 req/s,
#    at most 64 requests in flight (examples/loadgen.rs, open loop);
# 2. throughput: wrk -t2 -c64, alternating RUNS times between
#    a. the router, ingest only (worker.enabled=false): durable POST /api/v1/alerts,
#    b. the router with its worker processing what arrives (log action),
#    c. a bare axum handler that parses the same bodies and drops them
#       (examples/bare_ingest.rs): the physical limit of this box.
# Every request carries a fixture body made unique (scripts/wrk-alerts.lua),
# so the router stores each one instead of answering "duplicate".
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
runs=${2:-3}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --quiet --bin mlops-alert-router --example bare_ingest --example loadgen
work=$(mktemp -d)
pid=""
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi; }
trap 'stop; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
port=""
start_router() { # $1 = worker enabled
  stop; rm -f "$work"/router.db*; port=$(free_port)
  MLOPS_ALERT_ROUTER__SERVER__LISTEN=127.0.0.1:$port \
  MLOPS_ALERT_ROUTER__STORAGE__PATH=$work/router.db \
  MLOPS_ALERT_ROUTER__LOG__LEVEL=warn \
  MLOPS_ALERT_ROUTER__WORKER__ENABLED=$1 \
    target/release/mlops-alert-router serve >>"$work/router.log" 2>&1 &
  pid=$!; wait_port "$port"
}
start_bare() { stop; port=$(free_port); target/release/examples/bare_ingest "127.0.0.1:$port" 2>/dev/null & pid=$!; wait_port "$port"; }
run_wrk() { FIXTURE_DIR=tests/fixtures wrk -t2 -c64 -d"${secs}s" --latency -s scripts/wrk-alerts.lua "http://127.0.0.1:$port/api/v1/alerts"; }
summary() { awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {printf "%s req/s p50=%s p99=%s\n", rps, p50, p99}' "$1"; }

echo "== machine: $(nproc) cores, $(uname -r), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 1. fixed 1,000 req/s for ${secs}s, fresh router (worker on)"
start_router true
sleep 1
echo "router idle RSS: $(kib "$pid" VmRSS) KiB"
target/release/examples/loadgen "http://127.0.0.1:$port/api/v1/alerts" 1000 "$secs" 64 tests/fixtures
echo "router RSS after: $(kib "$pid" VmRSS) KiB, peak: $(kib "$pid" VmHWM) KiB"

echo "== 2. wrk -t2 -c64 -d${secs}s, $runs rounds"
for r in $(seq "$runs"); do
  start_router false; run_wrk >"$work/ingest.$r"; echo "round $r ingest-only: $(summary "$work/ingest.$r")"
  peak=$(kib "$pid" VmHWM)
  start_router true; run_wrk >"$work/worker.$r"; echo "round $r with worker: $(summary "$work/worker.$r")"
  start_bare; run_wrk >"$work/bare.$r"; echo "round $r bare:        $(summary "$work/bare.$r")"
done
stop
echo "router peak RSS under wrk (ingest-only, last round): $peak KiB"
python3 - "$work" "$runs" <<'PY'
import re, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
def rps(kind):
    out = []
    for r in range(1, runs + 1):
        text = open(f"{work}/{kind}.{r}").read()
        out.append(float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)))
    return out
i, w, b = rps("ingest"), rps("worker"), rps("bare")
ratios = [x / y for x, y in zip(i, b)]
print(f"median req/s: ingest-only {statistics.median(i):.0f}, with worker {statistics.median(w):.0f}, bare {statistics.median(b):.0f}")
print(f"durable/bare per round: {', '.join(f'{r:.0%}' for r in ratios)}; median {statistics.median(ratios):.0%}")
PY
