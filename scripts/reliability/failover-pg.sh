#!/usr/bin/env bash
# Runs scripts/reliability/failover_pg.py: three routers (target/release/mlops-alert-router,
# or $ROUTER_BIN) on one throwaway PostgreSQL (Debian's postgresql package; as root the
# server runs as the `postgres` user). Arguments are passed on (--help lists them).
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
exec python3 "$(dirname "$0")/failover_pg.py" "$@"
