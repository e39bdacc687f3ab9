#!/usr/bin/env bash
# Runs scripts/reliability/hostile.py against target/release/mlops-alert-router
# (or $ROUTER_BIN); arguments are passed on (--help lists them).
set -euo pipefail
exec python3 "$(dirname "$0")/hostile.py" "$@"
