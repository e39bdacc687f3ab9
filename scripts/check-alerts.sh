#!/usr/bin/env bash
# Checks the Prometheus alert rules under alerts/ (see alerts/README.md):
#   - promtool check rules on every plain rule file, every generated e2e copy
#     and the rules embedded in the PrometheusRule (spec extracted to a temp file)
#   - the PrometheusRule and the e2e copy match what alerts/rules/ generates
#   - conventions: labels, annotations, runbook sections, no variant names or
#     fixed 70/30 split in expressions, a firing and a silent test per alert
#   - promtool test rules on every unit test file
# Prints one line per check and ends with "N passed, M failed"; exits 1 if any failed.
#
# Needs: promtool (Debian: prometheus) and a python3 with PyYAML (Debian: python3-yaml).
# Usage, from anywhere: bash scripts/check-alerts.sh   (VERBOSE=1 also prints passing output)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

passed=0
failed=0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# check NAME COMMAND...: runs COMMAND, counts it, shows its output when it fails.
check() {
  local name="$1"
  shift
  local out
  if out="$("$@" 2>&1)"; then
    passed=$((passed + 1))
    echo "ok   $name"
    if [[ "${VERBOSE:-}" == 1 && -n "$out" ]]; then
      sed 's/^/       /' <<<"$out"
    fi
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    sed 's/^/       /' <<<"$out"
  fi
}

finish() {
  echo "$passed passed, $failed failed"
  [[ "$failed" -eq 0 ]]
}

# --- Tools ------------------------------------------------------------------
if ! command -v promtool >/dev/null 2>&1; then
  failed=$((failed + 1))
  echo "FAIL promtool is not installed (apt-get install -y prometheus)"
  finish
  exit 1
fi

# Debian's python3 first: python3-yaml installs PyYAML for it, while a pyenv
# python3 earlier on PATH may lack PyYAML.
py=""
for candidate in /usr/bin/python3 python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' >/dev/null 2>&1; then
    py="$candidate"
    break
  fi
done
if [[ -z "$py" ]]; then
  failed=$((failed + 1))
  echo "FAIL no python3 with PyYAML (apt-get install -y python3-yaml)"
  finish
  exit 1
fi
rulegen=(alerts/tools/rulegen.py)

# --- Syntax and semantics of every rule file ------------------------------------
shopt -s nullglob
for f in alerts/rules/*.yaml; do
  check "promtool check rules $f" promtool check rules "$f"
done
for f in alerts/e2e/*.yaml; do
  check "promtool check rules $f" promtool check rules "$f"
done
spec="$tmp/mlops-alert-rules.spec.yaml"
if "$py" "${rulegen[@]}" extract-spec "$spec" >"$tmp/extract.log" 2>&1; then
  check "promtool check rules alerts/mlops-alert-rules.yaml (spec)" promtool check rules "$spec"
else
  failed=$((failed + 1))
  echo "FAIL extract spec of alerts/mlops-alert-rules.yaml"
  sed 's/^/       /' "$tmp/extract.log"
fi

# --- Generated files in sync with alerts/rules/ ------------------------------------
check "PrometheusRule spec.groups == alerts/rules/*.yaml" "$py" "${rulegen[@]}" check-promrule
check "alerts/e2e/ == generated from alerts/rules/" "$py" "${rulegen[@]}" check-e2e

# --- Conventions ---------------------------------------------------------------
check "labels, annotations, runbook sections, no variant names or fixed split" "$py" "${rulegen[@]}" lint
check "every alert has a firing and a silent unit test" "$py" "${rulegen[@]}" check-tests

# --- Unit tests ---------------------------------------------------------------------
for t in alerts/tests/*.yaml alerts/tests/e2e/*.yaml; do
  check "promtool test rules $t" promtool test rules "$t"
done

finish
