#!/usr/bin/env bash
# Side-by-side ingest benchmark (loopback only). Figures go to BENCHMARKS.md.
#
#   scripts/bench/side-by-side.sh [--rounds N] [--seconds S] [--connections C] [--threads T]
#                                 [--baseline PATH] [--no-build]
#
# Four receivers get the same load (wrk -tT -cC for S seconds, default
# -t2 -c64 5 s) with the same body: one real two-alert Alertmanager
# notification made unique per request (scripts/bench/two-alerts.lua):
#
#   axum    examples/bare_ingest.rs: axum + the router's own parsing and
#           validation, then the body is dropped (no store, no auth, no metrics)
#   go      benches/peers/go-receiver: Go net/http + encoding/json into
#           Alertmanager's template structs, then dropped (what a relay such as
#           calert or prometheus-msteams does before it sends anything)
#   router  the release router, durable (200 only once the commit is on disk),
#           worker on (every notification routed to a log action)
#   ingest  the same router with worker.enabled=false
#   base, base-ingest   with --baseline PATH: another router binary (e.g. one
#           built from an earlier commit), run the same two ways, for before/after
#           figures from the same interleaved rounds
#
# Rounds are interleaved (each round runs all four, starting with a different
# one each round) and each receiver starts fresh (new database). Per round the
# ratios router/go and router/axum (and ingest/…) are taken, then their median.
# Builds what it needs (cargo --release, go build; --no-build: use the
# binaries already in target/release); installs nothing: it says what is missing. Everything it starts, it stops; its files go to a temporary
# directory that is removed at exit (BENCH_KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

rounds=3 secs=5 conns=64 threads=2 baseline="" build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --baseline) baseline=$(realpath "$2"); shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

missing=()
for tool in cargo go wrk python3; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]}" >&2
  echo "  Debian: apt-get install -y golang-go wrk python3 (cargo: https://rustup.rs)" >&2
  exit 1
fi

if [ "$build" = 1 ]; then
  echo "== building (release)" >&2
  # Two builds: one command for both would unify the example's
  # dev-dependency features into the router binary (HTTP/2 and more, ~1 MB
  # of code that the shipped binary does not have).
  cargo build --release --quiet --bin mlops-alert-router
  cargo build --release --quiet --example bare_ingest
fi
for bin in target/release/mlops-alert-router target/release/examples/bare_ingest $baseline; do
  [ -x "$bin" ] || { echo "missing: $bin (run without --no-build)" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/side-by-side.XXXXXX")
(cd benches/peers/go-receiver && go build -o "$work/go-receiver" .)

pid=""
stop() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}
cleanup() { stop; if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 400); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { echo "receiver exited before listening on $1" >&2; exit 1; }
    sleep 0.025
  done
  echo "port $1 never opened" >&2; exit 1
}
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
# CPU time (user + system, clock ticks) the process has used so far.
ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }

# The inbox limit (ingest.max_inbox, 100,000 pending by default) is raised:
# the ingest-only router stores over 100,000 notifications in a 5 s run on a
# fast round and would otherwise answer 503 ("inbox full") near its end.
# Every action is a log line (not printed at level warn): the worker routes,
# plans and records each run, and nothing depends on outside services.
cat >"$work/router.yaml" <<'YAML'
route:
  actions: [log]
YAML

port=""
start() { # $1 = receiver
  stop; port=$(free_port)
  case "$1" in
    axum) target/release/examples/bare_ingest "127.0.0.1:$port" 2>>"$work/axum.log" & pid=$! ;;
    go) "$work/go-receiver" "127.0.0.1:$port" 2>>"$work/go.log" & pid=$! ;;
    router|ingest|base|base-ingest)
      rm -f "$work"/router.db*
      local worker=true bin=target/release/mlops-alert-router
      case "$1" in *ingest) worker=false ;; esac
      case "$1" in base*) bin=$baseline ;; esac
      MLOPS_ALERT_ROUTER__SERVER__LISTEN=127.0.0.1:$port \
      MLOPS_ALERT_ROUTER__STORAGE__PATH=$work/router.db \
      MLOPS_ALERT_ROUTER__LOG__LEVEL=warn \
      MLOPS_ALERT_ROUTER__WORKER__ENABLED=$worker \
      MLOPS_ALERT_ROUTER__INGEST__MAX_INBOX=10000000 \
        "$bin" serve --config "$work/router.yaml" >>"$work/router.log" 2>&1 &
      pid=$! ;;
  esac
  wait_port "$port"
}

kinds=(axum go router ingest)
[ -n "$baseline" ] && kinds+=(base base-ingest)
nk=${#kinds[@]}
echo "== $(nproc) cores, $(uname -r); wrk -t$threads -c$conns -d${secs}s, $rounds rounds; fixture accuracy-firing-both-variants.json (2 alerts, unique per request)"
for r in $(seq "$rounds"); do
  for i in $(seq 0 $((nk - 1))); do
    kind=${kinds[$(( (i + r - 1) % nk ))]}
    start "$kind"
    load=$(cut -d' ' -f1 /proc/loadavg)
    cpu0=$(ticks "$pid")
    FIXTURE=tests/fixtures/accuracy-firing-both-variants.json \
      wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s scripts/bench/two-alerts.lua \
      "http://127.0.0.1:$port/api/v1/alerts" >"$work/$kind.$r"
    echo "load=$load" >>"$work/$kind.$r"
    echo "rss_peak_kib=$(kib "$pid" VmHWM)" >>"$work/$kind.$r"
    echo "cpu_ticks=$(( $(ticks "$pid") - cpu0 ))" >>"$work/$kind.$r"
    stop
    printf 'round %d %-11s %s\n' "$r" "$kind" \
      "$(awk '/Requests\/sec/ {rps=$2} /^ +99%/ {p99=$2} /^non2xx/ {e=$1} /^load=/ {l=$1} END {printf "%s req/s p99=%s %s %s", rps, p99, e, l}' "$work/$kind.$r")"
  done
done

python3 - "$work" "$rounds" "${kinds[@]}" <<'PY'
import re, statistics, sys
work, rounds, kinds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def field(kind, r, pattern, conv=float):
    m = re.search(pattern, open(f"{work}/{kind}.{r}").read(), re.M)
    return conv(m.group(1)) if m else None
def ms(text):
    v, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(v) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit]
R = range(1, rounds + 1)
rps = {k: [field(k, r, r"Requests/sec:\s+([\d.]+)") for r in R] for k in kinds}
p99 = {k: [field(k, r, r"^\s+99%\s+(\S+)", ms) for r in R] for k in rps}
errs = {k: [field(k, r, r"^non2xx_or_errors=(\d+)", int) for r in R] for k in rps}
load = [field("router", r, r"^load=([\d.]+)") for r in R]
hz = int(__import__("os").sysconf("SC_CLK_TCK"))
reqs = {k: [field(k, r, r"^\s+(\d+) requests in", int) for r in R] for k in kinds}
cpu = {k: [field(k, r, r"^cpu_ticks=(\d+)", int) * 1000 / hz for r in R] for k in kinds}
# CPU time the receiver used per request: independent of how busy the machine is.
us_per_req = {k: [c * 1000 / n for c, n in zip(cpu[k], reqs[k])] for k in kinds}
rss = {k: [field(k, r, r"^rss_peak_kib=(\d+)", int) for r in R] for k in ("router", "ingest")}
names = {"axum": "bare axum: parse, drop", "go": "Go net/http + encoding/json: parse, drop",
         "router": "router, durable, worker on", "ingest": "router, durable, ingest only",
         "base": "baseline router, worker on", "base-ingest": "baseline router, ingest only"}
print()
print("| receiver | req/s per round | median req/s | p99 per round (ms) | CPU µs/request (median) | errors |")
print("|---|---|---|---|---|---|")
for k in rps:
    print(f"| {names[k]} | {' / '.join(f'{x/1000:.1f}k' for x in rps[k])} | {statistics.median(rps[k])/1000:.1f}k "
          f"| {' / '.join(f'{x:.1f}' for x in p99[k])} | {statistics.median(us_per_req[k]):.0f} | {sum(errs[k])} |")
print()
print("| ratio | per round | median |")
print("|---|---|---|")
pairs = [("router", "go"), ("router", "axum"), ("ingest", "go"), ("ingest", "axum")]
if "base" in kinds:
    pairs += [("base", "go"), ("base", "axum"), ("router", "base"), ("ingest", "base-ingest")]
for a, b in pairs:
    ratios = [x / y for x, y in zip(rps[a], rps[b])]
    print(f"| {a}/{b} | {' / '.join(f'{x:.2f}' for x in ratios)} | **{statistics.median(ratios):.2f}** |")
print()
print(f"load average (1 min) before the router runs: {' / '.join(f'{x:.2f}' for x in load)}")
print(f"router peak RSS (KiB), worker on / ingest only: {max(rss['router'])} / {max(rss['ingest'])}")
if any(sum(v) for v in errs.values()):
    print("WARNING: some requests failed or were not answered 2xx (see the errors column)")
PY
