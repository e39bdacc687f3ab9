#!/usr/bin/env bash
# The web console and the API contract, against live routers on loopback:
#
#   1. the OpenAPI document (/api/v1/openapi.json) validates as OpenAPI 3.1
#      (openapi-spec-validator);
#   2. schemathesis sends property-based requests to every documented
#      operation, with auth: no 5xx, every status code, content type, header
#      and body as documented, 405 + Allow for undocumented methods, 401
#      without credentials (a bounded number of examples: CONSOLE_ST_EXAMPLES);
#   3. a real browser (Debian's chromium via chromium-driver and selenium)
#      drives the console: the experiment's weights after a shift, a dead
#      letter, Replay with its dry-run preview and confirmation, the new round;
#      no console error; axe-core's WCAG 2.1 A/AA rules on every page.
#      Screenshots: target/console-screenshots/ (CONSOLE_SCREENSHOTS_TO_DOCS=1
#      also copies the README's into docs/img/).
#
# Each part gets its own router (scripts/console/router.yaml, a fresh data
# directory with simulator/weights.yaml as its file traffic target).
#
#   scripts/test-console.sh          # after cargo build (ROUTER_BIN overrides the binary)
#
# Needs: .venv-console/ and target/console-tools/ (scripts/setup.sh), chromium and chromium-driver.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUTER_BIN=${ROUTER_BIN:-target/debug/mlops-alert-router}
VENV=${CONSOLE_VENV:-.venv-console}
EXAMPLES=${CONSOLE_ST_EXAMPLES:-20}
TOKEN=console-test-token

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_router NAME -> sets BASE; the router runs in $work/NAME (./data there).
start_router() {
  local dir="$work/$1" port
  mkdir -p "$dir/data"
  cp simulator/weights.yaml "$dir/data/weights.yaml"
  port=$(free_port)
  (cd "$dir" && MLOPS_ALERT_ROUTER__SERVER__LISTEN="127.0.0.1:$port" \
    exec "$ROOT/$ROUTER_BIN" serve --config "$ROOT/scripts/console/router.yaml") >"$dir/router.log" 2>&1 &
  pids+=("$!")
  BASE="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    curl -fs "$BASE/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "router did not become ready; its log:" >&2
  cat "$dir/router.log" >&2
  return 1
}

status=0

echo "== OpenAPI document and schemathesis"
start_router contract
curl -fsS -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/openapi.json" >"$work/openapi.json"
"$VENV/bin/openapi-spec-validator" "$work/openapi.json" || status=1
# Some real data first, so that ids and links lead somewhere.
for f in accuracy-firing server-down-firing; do
  curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" -d @"tests/fixtures/$f.json" "$BASE/api/v1/alerts"
done
mkdir -p target/schemathesis
started=$(date +%s)
# One worker: with two threads, Hypothesis parses lambda sources with
# `ast.parse` concurrently, and CPython 3.11 (python/cpython#106905) can then
# raise "SystemError: AST constructor recursion depth mismatch" inside
# schemathesis, a runtime error that fails the run with every case passing.
"$VENV/bin/st" run "$work/openapi.json" --url "$BASE" \
  -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method,allow_header_conformance,ignored_auth \
  --max-examples "$EXAMPLES" --seed 19 --workers 1 --no-color \
  --report junit --report-junit-path target/schemathesis/junit.xml || status=1
echo "schemathesis took $(( $(date +%s) - started )) s"

echo "== browser test (chromium, selenium, axe-core)"
start_router browser
started=$(date +%s)
SE_OFFLINE=true "$VENV/bin/python" scripts/console/browser_test.py --base "$BASE" \
  --axe target/console-tools/node_modules/axe-core/axe.min.js \
  --out target/console-screenshots || status=1
echo "browser test took $(( $(date +%s) - started )) s"
if [ "${CONSOLE_SCREENSHOTS_TO_DOCS:-}" = 1 ] && [ "$status" = 0 ]; then
  mkdir -p docs/img
  for f in experiments dead-letters replay-preview replayed experiments-phone; do
    cp "target/console-screenshots/$f.png" "docs/img/console-$f.png"
  done
  echo "copied the screenshots to docs/img/"
fi
exit "$status"
