#!/bin/bash
# Starts BINARY on 127.0.0.1:PORT (temp store, file-descriptor limit $NOFILE,
# default 20000), runs slow_clients.py against it, stops it.
# usage: NOFILE=1024 scripts/reliability/slow-clients.sh BINARY PORT [slow_clients.py options...]
set -u
bin=$1; port=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
MLOPS_ALERT_ROUTER__SERVER__LISTEN=127.0.0.1:$port MLOPS_ALERT_ROUTER__STORAGE__PATH=$dir/router.db \
  MLOPS_ALERT_ROUTER__LOG__LEVEL=warn bash -c "ulimit -n ${NOFILE:-20000}; exec $bin serve" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
python3 "$here/slow_clients.py" "$pid" "127.0.0.1:$port" "$@"
kill "$pid"; wait "$pid" 2>/dev/null
rm -rf "$dir"
