#!/usr/bin/env bash
# Durable ingest on SQLite vs PostgreSQL, one vs three replicas, side by side
# (loopback only; figures go to BENCHMARKS.md).
#
#   scripts/bench/store-backends.sh [SECONDS_PER_RUN] [ROUNDS] [--connections C]
#
# Uses target/release/mlops-alert-router (cargo build --release; or ROUTER_BIN),
# wrk (apt-get install wrk) and a throwaway PostgreSQL from Debian's postgresql
# package (initdb/pg_ctl on a free loopback port; as root the server runs as
# the `postgres` user). See scripts/bench/store_backends.py for what each run does.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONDONTWRITEBYTECODE=1
exec python3 scripts/bench/store_backends.py "$@"
