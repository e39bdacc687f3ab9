#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a laptop: installs what
# the tests need (Debian's prometheus, prometheus-alertmanager; Python tools
# for the manifest checks), then runs every test. Exit status 0 = all passed.
#
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- system packages: real Prometheus, promtool, Alertmanager and amtool ----
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v kubectl >/dev/null || missing+=(kubernetes-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo is missing: install Rust (https://rustup.rs)" >&2; exit 1; }

# --- Python tools for the manifest checks, in a private venv ------------------
if [ -f deploy/tools/requirements.txt ]; then
  if [ ! -x .venv-deploy/bin/python ]; then
    python3 -m venv .venv-deploy
  fi
  .venv-deploy/bin/pip install -q --disable-pip-version-check -r deploy/tools/requirements.txt
fi

status=0
echo "== cargo test"
cargo test --locked --all-targets 2>&1 | tee /tmp/mlops-alert-router-cargo-test.log || status=1

for check in scripts/check-alerts.sh scripts/check-dashboards.sh scripts/check-deploy.sh; do
  [ -f "$check" ] || continue
  echo "== $check"
  PATH="$PWD/.venv-deploy/bin:$PATH" ROUTER_BIN=target/debug/mlops-alert-router \
    SIM_BIN=target/debug/ab-simulator bash "$check" || status=1
done

# --- reliability (RELIABILITY.md): a short crash storm, then a fuzz smoke -----
echo "== scripts/reliability/crash-storm.sh (short)"
ROUTER_BIN=target/debug/mlops-alert-router bash scripts/reliability/crash-storm.sh \
  --notifications 1000 --rounds 3 --max-seconds 240 || status=1
# The fuzz seeds and regressions already ran on stable in `cargo test`
# (tests/fuzz_corpus.rs); this runs each target briefly under libFuzzer.
# FUZZ_SMOKE_SECONDS=0 skips it (the first run installs cargo-fuzz and builds
# the instrumented targets: minutes).
if [ "${FUZZ_SMOKE_SECONDS:-20}" = 0 ]; then
  echo "== fuzz smoke SKIPPED: FUZZ_SMOKE_SECONDS=0"
elif cargo +nightly --version >/dev/null 2>&1; then
  echo "== scripts/fuzz.sh ${FUZZ_SMOKE_SECONDS:-20}"
  bash scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-20}" || status=1
else
  echo "== fuzz smoke SKIPPED: no nightly toolchain (rustup toolchain install nightly)"
fi

if [ "$status" = 0 ]; then echo "== all test suites passed"; else echo "== SOME TEST SUITES FAILED"; fi
exit "$status"
