#!/usr/bin/env bash
# Storm benchmark: 1,000 notifications of 10 alerts (one experiment, distinct
# fingerprints) through the release router, a real Prometheus (enrichment)
# and a chat action delivered to a local stand-in; loopback only.
#
#   scripts/bench/storm.sh [--action slack|teams|webhook] [--rate-limit default|off]
#                          [--notifications N] [--timeout S] [--extra-config FILE] [--json]
#
# Builds the release router, then runs scripts/bench/storm.py (see its --help).
# Installs nothing: it says what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
for tool in cargo python3 prometheus; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]} (Debian: apt-get install -y python3 prometheus; cargo: https://rustup.rs)" >&2
  exit 1
fi
echo "== building (release)" >&2
cargo build --release --quiet --bin mlops-alert-router
exec python3 scripts/bench/storm.py "$@"
