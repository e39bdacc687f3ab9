#!/usr/bin/env bash
# Storm benchmark: 1,000 notifications of 10 alerts (one experiment, distinct
# fingerprints) through the release router, a real Prometheus (enrichment)
# and a chat action delivered to a local stand-in; loopback only.
#
#   scripts/bench/storm.sh [--action slack|teams|mattermost|discord|google_chat|webhook]
#                          [--rate-limit default|off] [--digest default|on|off]
#                          [--notifications N] [--timeout S] [--extra-config FILE] [--json]
#   scripts/bench/storm.sh --digest-matrix [storm.py options]
#       every chat platform at its default rate with and without digests, and
#       the pipeline alone, one after the other
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
if [ "${1:-}" = "--digest-matrix" ]; then
  # Side by side: each chat platform at its default rate with and without
  # digests (without: whatever is represented within 30 s), then the
  # pipeline alone (rate limit lifted). One JSON line per run at the end.
  shift
  out="$(mktemp)"
  for action in slack teams mattermost discord google_chat; do
    for digest in on off; do
      timeout=120
      [ "$digest" = off ] && timeout=30
      python3 scripts/bench/storm.py --action "$action" --rate-limit default --digest "$digest" \
        --timeout "$timeout" --json "$@" | tee -a "$out" || true
    done
  done
  python3 scripts/bench/storm.py --action slack --rate-limit off --digest off --json "$@" | tee -a "$out" || true
  echo "== JSON"
  grep '^{' "$out"
  rm -f "$out"
  exit 0
fi
exec python3 scripts/bench/storm.py "$@"
