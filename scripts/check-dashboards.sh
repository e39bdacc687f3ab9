#!/usr/bin/env bash
# Checks the Grafana dashboards in dashboards/*.json and their ConfigMaps under
# deploy/base/dashboards/. Run from the repository root (it cd's there itself).
#
#   scripts/check-dashboards.sh          every check; the last line is "N passed, M failed"
#   scripts/check-dashboards.sh --sync   first refresh deploy/base/dashboards/ (copies of the
#                                        JSON files + the generated kustomization.yaml)
#
# What it checks:
#   - every dashboard is valid JSON with a stable uid, a ${DS_PROMETHEUS} input, a
#     `datasource` template variable that every panel and query uses, and the
#     variables the alert rules' dashboard_url links need (ab-testing: experiment,
#     model_name, namespace, pod); every dashboard_url in alerts/rules/ opens an
#     existing dashboard with existing variables;
#   - every query (panels, annotations, template variables), with the variables
#     substituted ($experiment -> financial-ab-test-experiment, $model_name -> .*,
#     $__rate_interval -> 1m, ...), is valid PromQL to a real Prometheus (a temporary
#     /usr/bin/prometheus on a free loopback port with an empty TSDB: valid queries
#     answer empty results, invalid ones an error);
#   - every metric a query uses is exported by the A/B simulator (ab-simulator,
#     run and scraped), by the router (mlops-alert-router serve, run, fed one alert
#     and scraped), or is on one of the explicit lists below: made by Prometheus
#     itself, by the cluster (cAdvisor, kube-state-metrics), or PENDING (router
#     metrics of features not merged yet: printed, not failed; a PENDING metric the
#     router does export fails, so that the list gets cleaned up);
#   - the dashboards show what they must: every ab_test_* family on ab-testing.json,
#     the router metrics listed in ROUTER_REQUIRED on alert-router.json;
#   - deploy/base/dashboards/ holds byte-identical copies and the generated
#     kustomization.yaml, and `kubectl kustomize` renders one ConfigMap per
#     dashboard (namespace monitoring, label grafana_dashboard: "1", the JSON
#     unchanged as its data), in the base and in every overlay.
#
# Needs: python3 with PyYAML (or .venv-deploy), curl, kubectl (kustomize), Debian's
# prometheus. Environment: PROMETHEUS (default /usr/bin/prometheus), SIM_BIN (default
# target/debug/ab-simulator), ROUTER_BIN (default target/debug/mlops-alert-router),
# ROUTER_CONFIG (default config/examples/mlops.yaml: its routes run enrichment, so
# the enrichment metrics appear; empty = the embedded default), KUBECTL (default kubectl).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SYNC=0
case "${1:-}" in
  --sync) SYNC=1 ;;
  "") ;;
  -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--sync]" >&2; exit 2 ;;
esac

# Router metrics the dashboards use that the router does not export yet. Remove a
# name when its feature lands (the check fails when an entry is exported).
PENDING=""
# Series Prometheus makes itself (scrape health, alert state).
PROMETHEUS_MADE="up ALERTS"
# Series from the cluster: cAdvisor via the kubelet, and kube-state-metrics
# (the model servers' panels of ab-testing.json, as in alerts/rules/infrastructure.yaml).
CLUSTER_MADE="container_cpu_usage_seconds_total container_memory_working_set_bytes
  container_cpu_cfs_throttled_periods_total container_cpu_cfs_periods_total
  kube_pod_container_resource_limits kube_deployment_status_replicas_available kube_deployment_spec_replicas
  kube_pod_container_resource_requests kube_statefulset_status_replicas_ready kube_statefulset_replicas
  kube_pod_info container_network_receive_bytes_total container_network_transmit_bytes_total"
# Router metrics alert-router.json must show (a histogram by its _bucket series).
ROUTER_REQUIRED="up notifications_received_total alerts_received_total inbox_depth dead_letters
  action_runs_total action_duration_seconds_bucket http_request_duration_seconds_bucket
  enrichment_queries_total enrichment_cache_hits_total traffic_weight traffic_shifts_total"

PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
ROUTER_BIN=${ROUTER_BIN:-target/debug/mlops-alert-router}
ROUTER_CONFIG=${ROUTER_CONFIG-config/examples/mlops.yaml}
KUBECTL=${KUBECTL:-kubectl}
SIM_NOTE=""
SIM_BIN=${SIM_BIN:-target/debug/ab-simulator}
export PYTHONDONTWRITEBYTECODE=1

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }
indent() { sed 's/^/    /'; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  local pid i
  for pid in ${pids[@]+"${pids[@]}"}; do
    kill -TERM "$pid" 2>/dev/null || continue
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Count the helper's "ok - " / "FAIL - " lines as checks; print everything.
helper() {
  local out rc=0 fails
  out=$("$PY" "$tmp/helper.py" "$@" 2>&1) || rc=$?
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
    fail "helper $1 exited $rc without naming a failed check"
  fi
  return 0
}

# wait_for SECONDS COMMAND...: run COMMAND every 0.2 s until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------------------
# Tools

PY=""
for cand in .venv-deploy/bin/python python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import yaml' 2>/dev/null; then PY=$cand; break; fi
done
missing=()
[[ -n $PY ]] || missing+=("python3 with PyYAML (apt-get install python3-yaml)")
command -v curl >/dev/null 2>&1 || missing+=("curl")
command -v "$KUBECTL" >/dev/null 2>&1 || missing+=("$KUBECTL (apt-get install kubernetes-client)")
[[ -x $PROMETHEUS ]] || missing+=("$PROMETHEUS (apt-get install prometheus)")
if ((${#missing[@]})); then
  fail "missing tools: ${missing[*]}"
  echo "$passed passed, $failed failed"
  exit 1
fi

cat >"$tmp/helper.py" <<'PYTHON'
"""The checks of scripts/check-dashboards.sh that need JSON/YAML and PromQL parsing."""
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DASHBOARDS = Path("dashboards")
COPIES = Path("deploy/base/dashboards")
RULES = Path("alerts/rules")

# uid and template variables each dashboard must have.
REQUIRED = {
    "ab-testing.json": ("mlops-ab-testing", ["datasource", "experiment", "model_name", "namespace", "pod"]),
    "ab-testing-simple.json": ("mlops-ab-testing-simple", ["datasource", "experiment", "model_name"]),
    "alert-router.json": ("mlops-alert-router", ["datasource"]),
}
# Values the variables take when a query is sent to Prometheus.
SAMPLES = {
    "experiment": "financial-ab-test-experiment", "model_name": ".*", "namespace": "financial-inference",
    "pod": ".*", "instance": ".*",
    "__rate_interval": "1m", "__interval": "15s", "__interval_ms": "15000",
    "__range": "1h", "__range_s": "3600", "__range_ms": "3600000",
}
BUILTIN_VARS = {k for k in SAMPLES if k.startswith("__")}
VAR_RE = re.compile(r"\$\{(\w+)(?:[.:][^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")

FAILED = False


def ok(msg):
    print(f"ok - {msg}")


def fail(msg):
    global FAILED
    FAILED = True
    print(f"FAIL - {msg}")


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def sources():
    return sorted(DASHBOARDS.glob("*.json"))


def all_panels(panels):
    for p in panels or []:
        yield p
        yield from all_panels(p.get("panels"))


def variables(d):
    return {v.get("name"): v for v in d.get("templating", {}).get("list", [])}


def var_query(v):
    q = v.get("query")
    return q.get("query", "") if isinstance(q, dict) else (q or "")


def queries(d):
    """(where, expression as written) for every PromQL expression of a dashboard."""
    out = []
    for p in all_panels(d.get("panels")):
        for t in p.get("targets") or []:
            if t.get("expr"):
                out.append((f"panel {p.get('id')} {p.get('title')!r} ({t.get('refId')})", t["expr"]))
    for a in d.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append((f"annotation {a.get('name')!r}", a["expr"]))
    for name, v in variables(d).items():
        if v.get("type") != "query":
            continue
        q = var_query(v).strip()
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\s*\)", q, re.S)
        if m:
            out.append((f"variable {name} (label_values selector)", m.group(1)))
            continue
        m = re.fullmatch(r"query_result\((.*)\)", q, re.S)
        if m:
            out.append((f"variable {name} (query_result)", m.group(1)))
        elif not re.fullmatch(r"label_values\(\s*\w+\s*\)|label_names\(.*\)|metrics\(.*\)", q, re.S):
            out.append((f"variable {name}", q))
    return out


def substitute(expr, known):
    """Replaces Grafana variables; returns (expression, unknown variable names)."""
    unknown = []

    def rep(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name.isdigit():  # label_replace's "$1"
            return m.group(0)
        if name not in known and name not in BUILTIN_VARS:
            unknown.append(name)
            return m.group(0)
        if name not in SAMPLES:
            unknown.append(name + " (no sample value in the check script)")
            return m.group(0)
        return SAMPLES[name]

    return VAR_RE.sub(rep, expr), unknown


KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset", "inf", "nan", "atan2", "start", "end"}


def metric_names(expr):
    """Metric names a PromQL expression selects."""
    names = set(re.findall(r"__name__\s*=\s*\"([^\"]+)\"", expr))
    expr = VAR_RE.sub(" ", expr)  # variables left unsubstituted are reported elsewhere
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\[\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)
    for m in re.finditer(r"\d[\w.]*|[A-Za-z_:][\w:]*", s):
        tok = m.group(0)
        if tok[0].isdigit() or tok.lower() in KEYWORDS:
            continue
        if s[m.end():].lstrip().startswith("("):  # a function or an aggregation
            continue
        names.add(tok)
    return names


def exported(scrape_file):
    """Series names in a /metrics scrape (sample lines, and TYPE lines expanded)."""
    names = set()
    for line in Path(scrape_file).read_text(encoding="utf-8").splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                base, kind = parts[2], parts[3]
                names |= {"counter": {base + "_total"},
                          "histogram": {base + "_bucket", base + "_sum", base + "_count"},
                          "summary": {base, base + "_sum", base + "_count"}}.get(kind, {base})
        elif line and not line.startswith("#"):
            m = re.match(r"[A-Za-z_:][\w:]*", line)
            if m:
                names.add(m.group(0))
    return names


# --------------------------------------------------------------------------

def router_default_uids():
    """The router's default grafana.dashboard_uid (src/settings.rs) and the
    dashboard_uid the shipped configs set, each with where it was found."""
    found = []
    m = re.search(r'fn default_dashboard_uid\(\) -> String \{\s*"([^"]+)"', Path("src/settings.rs").read_text(encoding="utf-8"))
    found.append(("src/settings.rs default_dashboard_uid", m.group(1) if m else None))
    for cfg in ("config/default.yaml", "config/examples/mlops.yaml", "deploy/base/config.yaml"):
        p = Path(cfg)
        if p.exists():
            for line in p.read_text(encoding="utf-8").splitlines():
                mm = re.match(r"\s*dashboard_uid:\s*['\"]?([^'\"#\s]+)", line)
                if mm:
                    found.append((f"{cfg} dashboard_uid", mm.group(1)))
    return found


def cmd_static():
    srcs = sources()
    missing = sorted(set(REQUIRED) - {s.name for s in srcs})
    if missing:
        fail(f"dashboards/: missing {missing}")
    else:
        ok(f"dashboards/ has {', '.join(sorted(REQUIRED))}")
    uids = {}
    by_uid = {}
    for src in srcs:
        try:
            d = load(src)
        except ValueError as e:
            fail(f"{src}: not valid JSON: {e}")
            continue
        ok(f"{src}: valid JSON ({src.stat().st_size} bytes)")
        bad = []
        uid = d.get("uid")
        want_uid, want_vars = REQUIRED.get(src.name, (None, ["datasource"]))
        if not uid or (want_uid and uid != want_uid):
            bad.append(f"uid {uid!r}, want {want_uid!r}")
        if not str(uid or "").startswith("mlops-"):
            # A shared Grafana holds every team's dashboards: a generic uid
            # (`ab-testing`) collides with someone else's and one import
            # silently replaces the other.
            bad.append(f"uid {uid!r} does not start with 'mlops-'")
        if uid in uids:
            bad.append(f"uid {uid!r} also used by {uids[uid]}")
        uids[uid] = src
        by_uid[uid] = d
        if d.get("id") is not None:
            bad.append("`id` must be null (Grafana assigns it)")
        if not d.get("title"):
            bad.append("no title")
        inputs = d.get("__inputs") or []
        if not any(i.get("name") == "DS_PROMETHEUS" and i.get("type") == "datasource"
                   and i.get("pluginId") == "prometheus" for i in inputs):
            bad.append("no __inputs entry DS_PROMETHEUS (type datasource, pluginId prometheus)")
        vs = variables(d)
        for name in want_vars:
            if name not in vs:
                bad.append(f"no template variable {name!r}")
        dsv = vs.get("datasource", {})
        if dsv.get("type") != "datasource" or dsv.get("query") != "prometheus":
            bad.append("variable `datasource` must be of type datasource, query prometheus")
        elif "${" in json.dumps(dsv.get("current", {})):
            # The Grafana sidecar of kube-prometheus-stack loads the JSON as is
            # (no __inputs substitution): a `${DS_PROMETHEUS}` current value
            # names no datasource. Empty: Grafana takes the default Prometheus.
            bad.append("variable `datasource` must not default to a ${...} placeholder "
                       "(unresolved under the Grafana sidecar): leave `current` empty")
        if "experiment" in vs and "label_values(ab_test_requests_total" not in var_query(vs["experiment"]).replace(" ", ""):
            bad.append("variable `experiment` must be label_values(ab_test_requests_total, experiment)")
        ids = []
        for p in all_panels(d.get("panels")):
            ids.append(p.get("id"))
            if "gridPos" not in p:
                bad.append(f"panel {p.get('id')} has no gridPos")
            if p.get("type") == "row":
                continue
            if (p.get("datasource") or {}).get("uid") != "${datasource}":
                bad.append(f"panel {p.get('id')} {p.get('title')!r}: datasource is not ${{datasource}}")
            for t in p.get("targets") or []:
                if (t.get("datasource") or {}).get("uid") not in (None, "${datasource}"):
                    bad.append(f"panel {p.get('id')} target {t.get('refId')}: datasource is not ${{datasource}}")
        for a in d.get("annotations", {}).get("list", []):
            if a.get("expr") and (a.get("datasource") or {}).get("uid") != "${datasource}":
                bad.append(f"annotation {a.get('name')!r}: datasource is not ${{datasource}}")
            # Shift annotations mark real changes only: not noop, cooldown, dry_run...
            for sel in re.findall(r"traffic_shifts_total\{([^}]*)\}", a.get("expr") or ""):
                if 'outcome=~"shifted|restored"' not in sel:
                    bad.append(f"annotation {a.get('name')!r}: traffic_shifts_total{{{sel}}} must select "
                               'outcome=~"shifted|restored" (other decisions change no weight)')
        # Panels about firing alerts must not hide the infrastructure alerts
        # (they have no experiment label).
        for p in all_panels(d.get("panels")):
            for t in p.get("targets") or []:
                e = t.get("expr") or ""
                if "ALERTS{" in e and "experiment=~" in e and 'component="infrastructure"' not in e:
                    bad.append(f"panel {p.get('id')} {p.get('title')!r}: ALERTS filtered on experiment "
                               "hides the infrastructure alerts (no experiment label)")
        for name, v in vs.items():
            if v.get("type") == "query" and (v.get("datasource") or {}).get("uid") != "${datasource}":
                bad.append(f"variable {name!r}: datasource is not ${{datasource}}")
        dup = sorted({i for i in ids if ids.count(i) > 1}, key=str)
        if dup or None in ids:
            bad.append(f"panel ids not unique/set: {dup}")
        if bad:
            fail(f"{src}: " + "; ".join(bad))
        else:
            ok(f"{src}: uid {uid}, variables {', '.join(vs)}, every query on ${{datasource}} (input DS_PROMETHEUS)")

    # The router's default dashboard (links in messages, Grafana annotations)
    # must be one of these dashboards.
    bad = []
    defaults = router_default_uids()
    for where, uid in defaults:
        if uid not in by_uid:
            bad.append(f"{where} is {uid!r}, not a dashboard uid ({', '.join(sorted(map(str, by_uid)))})")
    if bad:
        fail("router dashboard_uid: " + "; ".join(bad))
    else:
        ok("router dashboard_uid: " + ", ".join(f"{w} = {u}" for w, u in defaults) + " name an existing dashboard")

    # The alert rules' dashboard_url links.
    links = []
    for rule_file in sorted(RULES.glob("*.yaml")):
        for m in re.finditer(r"dashboard_url:\s*(.+?)\s*$", rule_file.read_text(encoding="utf-8"), re.M):
            links.append((rule_file, m.group(1)))
    bad = []
    for rule_file, url in links:
        m = re.match(r"/d/([^/?]+)(?:/[^?]*)?(?:\?(.*))?$", url.strip("'\""))
        if not m:
            bad.append(f"{rule_file}: {url} is not a /d/<uid>/... path")
            continue
        uid, query = m.group(1), m.group(2) or ""
        if uid not in by_uid:
            bad.append(f"{rule_file}: {url}: no dashboard with uid {uid}")
            continue
        for var in re.findall(r"var-(\w+)=", query):
            if var not in variables(by_uid[uid]):
                bad.append(f"{rule_file}: {url}: dashboard {uid} has no variable {var}")
    if not links:
        fail(f"no dashboard_url found in {RULES}/*.yaml")
    elif bad:
        fail("dashboard_url links of the alert rules: " + "; ".join(dict.fromkeys(bad)))
    else:
        ok(f"the {len(links)} dashboard_url links in {RULES}/ open existing dashboards and variables")
    return 1 if FAILED else 0


def cmd_queries(out_file):
    rows = []
    for src in sources():
        try:
            d = load(src)
        except ValueError:
            continue  # reported by static
        known = set(variables(d))
        unknown_all = []
        for where, expr in queries(d):
            sub, unknown = substitute(expr, known)
            if unknown:
                unknown_all.append(f"{where} uses {', '.join('$' + u for u in dict.fromkeys(unknown))}")
            rows.append({"file": str(src), "where": where, "expr": sub})
        if unknown_all:
            fail(f"{src}: variables that are not template variables of the dashboard: " + "; ".join(unknown_all))
        else:
            ok(f"{src}: every variable in its {sum(r['file'] == str(src) for r in rows)} queries is defined")
    Path(out_file).write_text(json.dumps(rows), encoding="utf-8")
    return 1 if FAILED else 0


def cmd_promql(prom_url, rows_file):
    rows = json.loads(Path(rows_file).read_text(encoding="utf-8"))
    per_file = {}
    for r in rows:
        data = urllib.parse.urlencode({"query": r["expr"]}).encode()
        try:
            with urllib.request.urlopen(prom_url + "/api/v1/query", data=data, timeout=10) as resp:
                answer = json.load(resp)
            err = None if answer.get("status") == "success" else answer.get("error", answer)
        except urllib.error.HTTPError as e:
            try:
                err = json.load(e).get("error")
            except ValueError:
                err = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError, ValueError) as e:
            err = f"no answer from Prometheus: {e}"
        n, bad = per_file.get(r["file"], (0, []))
        if err:
            bad.append(f"{r['where']}: {err}\n      {r['expr']}")
        per_file[r["file"]] = (n + 1, bad)
    for f, (n, bad) in sorted(per_file.items()):
        if bad:
            for b in bad:
                fail(f"{f}: invalid PromQL: {b}")
        else:
            ok(f"{f}: all {n} expressions are valid PromQL (Prometheus /api/v1/query)")
    if not per_file:
        fail("no PromQL expression found in dashboards/")
    return 1 if FAILED else 0


def cmd_names(rows_file, sim_scrape, router_scrape, pending, prom_made, cluster_made, router_required):
    rows = json.loads(Path(rows_file).read_text(encoding="utf-8"))
    sim = exported(sim_scrape) if sim_scrape != "-" else set()
    router = exported(router_scrape) if router_scrape != "-" else set()
    pending, prom_made, cluster_made = set(pending.split()), set(prom_made.split()), set(cluster_made.split())
    used = {}
    for r in rows:
        for n in metric_names(r["expr"]):
            used.setdefault(n, set()).add(r["file"])

    for name in sorted(pending):
        if name in router:
            fail(f"PENDING lists {name}, but the router exports it now: remove it from PENDING in scripts/check-dashboards.sh")
        elif name in used:
            print(f"pending: {name} (not exported by the router yet)")
        else:
            fail(f"PENDING lists {name}, which no dashboard uses: remove it")
    for label, lst in (("PROMETHEUS_MADE", prom_made), ("CLUSTER_MADE", cluster_made)):
        stale = sorted(lst - set(used))
        if stale:
            fail(f"{label} lists {stale}, which no dashboard uses: remove them")
    if sim_scrape != "-":
        unknown = {}
        for name, files in used.items():
            if name in sim or name in router or name in pending or name in prom_made or name in cluster_made:
                continue
            for f in files:
                unknown.setdefault(f, []).append(name)
        for f in sorted({r["file"] for r in rows}):
            if f in unknown:
                fail(f"{f}: metrics exported by neither the simulator nor the router, and on no list: "
                     f"{sorted(unknown[f])}")
            else:
                mine = sorted(n for n, fs in used.items() if f in fs)
                ok(f"{f}: all {len(mine)} metrics it uses are exported or listed")
    # What the dashboards must show.
    ab = "dashboards/ab-testing.json"
    ab_used = {n for n, fs in used.items() if ab in fs}
    families = sorted({re.sub(r"_(bucket|sum|count)$", "", n) for n in sim if n.startswith("ab_test_")})
    missing = [f for f in families if not any(n == f or re.fullmatch(re.escape(f) + r"_(bucket|sum|count)", n) for n in ab_used)]
    if not families:
        fail("the simulator exported no ab_test_* metric")
    elif missing:
        fail(f"{ab} does not show the simulator's {missing}")
    else:
        ok(f"{ab} shows every ab_test_* family: {', '.join(families)}")
    ar = "dashboards/alert-router.json"
    ar_used = {n for n, fs in used.items() if ar in fs}
    missing = sorted(set(router_required.split()) - ar_used)
    if missing:
        fail(f"{ar} does not show {missing}")
    else:
        ok(f"{ar} shows every required router metric")
    def family(n):
        return re.sub(r"_(bucket|sum|count)$", "", n)
    shown = {family(n) for n in ar_used}
    for fam in sorted({family(n) for n in router} - shown):
        print(f"note: the router exports {fam}, which {ar} does not show")
    return 1 if FAILED else 0


def cmd_copies():
    sys.path.insert(0, "deploy/tools")
    import deploy_checks  # the one generator of deploy/base/dashboards/kustomization.yaml
    srcs = sources()
    bad = []
    for s in srcs:
        c = COPIES / s.name
        if not c.exists():
            bad.append(f"{c} missing")
        elif c.read_bytes() != s.read_bytes():
            bad.append(f"{c} differs from {s}")
    stale = sorted({c.name for c in COPIES.glob("*.json")} - {s.name for s in srcs})
    if stale:
        bad.append(f"stale copies {stale}")
    k = COPIES / "kustomization.yaml"
    if not k.exists() or k.read_text(encoding="utf-8") != deploy_checks.expected_dashboards_kustomization(srcs):
        bad.append(f"{k} is not the generated one for dashboards/*.json")
    if bad:
        fail("; ".join(bad) + ": run scripts/check-dashboards.sh --sync")
    else:
        ok(f"{COPIES}/ holds byte-identical copies of the {len(srcs)} dashboards and the generated kustomization.yaml")
    return 1 if FAILED else 0


def cmd_sync():
    sys.path.insert(0, "deploy/tools")
    import shutil
    import deploy_checks
    srcs = sources()
    COPIES.mkdir(parents=True, exist_ok=True)
    for c in COPIES.glob("*.json"):
        if c.name not in {s.name for s in srcs}:
            c.unlink()
            print(f"removed stale {c}")
    for s in srcs:
        shutil.copyfile(s, COPIES / s.name)
    (COPIES / "kustomization.yaml").write_text(deploy_checks.expected_dashboards_kustomization(srcs), encoding="utf-8")
    print(f"synced {len(srcs)} dashboards into {COPIES}/")
    return 0


def cmd_configmaps(label, rendered, exact):
    import yaml
    docs = [d for d in yaml.safe_load_all(Path(rendered).read_text(encoding="utf-8")) if d]
    cms = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"
           and (d["metadata"].get("labels") or {}).get("grafana_dashboard") is not None}
    bad = []
    want = {}
    for s in sources():
        name = "mlops-dashboard-" + re.sub(r"[^a-z0-9]+", "-", s.stem.lower()).strip("-")
        want[name] = s
        cm = cms.get(name)
        if cm is None:
            bad.append(f"no ConfigMap {name} for {s}")
            continue
        md = cm["metadata"]
        if md.get("namespace") != "monitoring":
            bad.append(f"{name}: namespace {md.get('namespace')!r}, want monitoring")
        if md["labels"].get("grafana_dashboard") != "1":
            bad.append(f"{name}: label grafana_dashboard {md['labels'].get('grafana_dashboard')!r}, want \"1\"")
        data = cm.get("data") or {}
        if list(data) != [s.name]:
            bad.append(f"{name}: data keys {list(data)}, want [{s.name!r}]")
        elif data[s.name] != s.read_text(encoding="utf-8"):
            bad.append(f"{name}: data differs from {s}")
    extra = sorted(set(cms) - set(want))
    if exact == "exact":
        others = [d["metadata"]["name"] for d in docs if d["metadata"]["name"] not in want]
        if others:
            bad.append(f"unexpected objects {others}")
    elif extra:
        bad.append(f"ConfigMaps labelled grafana_dashboard without a source: {extra}")
    if bad:
        fail(f"{label}: " + "; ".join(bad))
    else:
        ok(f"{label}: {len(want)} ConfigMaps (namespace monitoring, grafana_dashboard: \"1\"), data identical to dashboards/*.json")
    return 1 if FAILED else 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({"static": cmd_static, "queries": cmd_queries, "promql": cmd_promql, "names": cmd_names,
              "copies": cmd_copies, "sync": cmd_sync, "configmaps": cmd_configmaps}[cmd](*args))
PYTHON

if ((SYNC)); then
  if ! "$PY" "$tmp/helper.py" sync; then fail "--sync could not refresh $PWD/deploy/base/dashboards"; fi
fi

# ---------------------------------------------------------------------------
# Static checks

if [[ ! -d dashboards ]]; then
  fail "no dashboards/ directory"
  echo "$passed passed, $failed failed"
  exit 1
fi
helper static
helper queries "$tmp/queries.json"

# ---------------------------------------------------------------------------
# PromQL validity against a real, empty Prometheus

prom_port=$(free_port)
printf 'global: {scrape_interval: 15s}\n' >"$tmp/prometheus.yml"
"$PROMETHEUS" --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prometheus-data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
prom_url="http://127.0.0.1:$prom_port"
if wait_for 30 curl -sf "$prom_url/-/ready"; then
  pass "Prometheus $("$PROMETHEUS" --version 2>&1 | head -1 | awk '{print $3}') ready on 127.0.0.1:$prom_port (empty TSDB)"
  helper promql "$prom_url" "$tmp/queries.json"
else
  fail "Prometheus did not become ready on 127.0.0.1:$prom_port within 30 s; PromQL NOT checked"
  tail -5 "$tmp/prometheus.log" | indent
fi

# ---------------------------------------------------------------------------
# Metric names: what the simulator and the router export

sim_scrape=-
if [[ ! -x $SIM_BIN ]]; then
  fail "simulator binary $SIM_BIN not found: cargo build --bin ab-simulator (or set SIM_BIN); metric names NOT checked"
else
  "$SIM_BIN" --listen 127.0.0.1:0 --weights simulator/weights.yaml --scenario simulator/scenario-accuracy-drop.yaml \
    >"$tmp/sim.out" 2>"$tmp/sim.err" &
  pids+=($!)
  if wait_for 15 grep -q '^listening on ' "$tmp/sim.out" &&
      sim_addr=$(sed -n 's/^listening on //p' "$tmp/sim.out") &&
      curl -sf "http://$sim_addr/metrics" -o "$tmp/sim.metrics"; then
    sim_scrape=$tmp/sim.metrics
    pass "$SIM_BIN$SIM_NOTE exports $(grep -c '^# TYPE ' "$tmp/sim.metrics") metric families on $sim_addr"
  else
    fail "$SIM_BIN did not serve /metrics"; indent <"$tmp/sim.err"
  fi
fi

router_scrape=-
if [[ ! -x $ROUTER_BIN ]]; then
  fail "router binary $ROUTER_BIN not found: cargo build (or set ROUTER_BIN); router metric names NOT checked"
else
  router_port=$(free_port)
  router_args=(serve)
  if [[ -n $ROUTER_CONFIG ]]; then
    # The same config with its traffic targets on a local weights file (no
    # cluster here), so the router reads real weights and exports traffic_weight.
    cp simulator/weights.yaml "$tmp/weights.yaml"
    "$PY" - "$ROUTER_CONFIG" "$tmp/weights.yaml" >"$tmp/router.yaml" <<'PYCFG'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
config["traffic_targets"] = {name: {"kind": "file", "file": {"path": sys.argv[2]}}
                             for name in (config.get("traffic_targets") or {"financial-ab-test-experiment": None})}
print(yaml.safe_dump(config, sort_keys=False))
PYCFG
    router_args+=(--config "$tmp/router.yaml")
  fi
  # The example's on-call webhook names an in-cluster service: keep it on
  # loopback (the router itself answers 404, a dead letter; only names matter here).
  router_env=()
  if [[ -n $ROUTER_CONFIG ]] && grep -q '^  oncall-webhook:$' "$ROUTER_CONFIG"; then
    router_env+=("MLOPS_ALERT_ROUTER__ACTIONS__ONCALL-WEBHOOK__URL=http://127.0.0.1:$router_port/oncall-sink")
  fi
  env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$tmp" \
    MLOPS_ALERT_ROUTER__SERVER__LISTEN="127.0.0.1:$router_port" \
    MLOPS_ALERT_ROUTER__STORAGE__PATH="$tmp/r.db" \
    MLOPS_ALERT_ROUTER__PROMETHEUS__URL="$prom_url" \
    "${router_env[@]}" \
    "$ROUTER_BIN" "${router_args[@]}" >"$tmp/router.log" 2>&1 &
  pids+=($!)
  router_url="http://127.0.0.1:$router_port"
  if wait_for 20 curl -sf "$router_url/healthz"; then
    # Labelled families only appear once they have a series: feed the router one
    # stored alert (actions, enrichment), one malformed request, and scrape twice.
    curl -s -o /dev/null --data-binary @tests/fixtures/accuracy-firing.json "$router_url/api/v1/alerts" || true
    curl -s -o /dev/null --data-binary 'not json' "$router_url/api/v1/alerts" || true
    curl -s -o /dev/null "$router_url/metrics" || true
    has_runs() {
      curl -sf "$router_url/metrics" -o "$tmp/router.metrics" &&
        grep -q '^action_runs_total' "$tmp/router.metrics" &&
        grep -q '^traffic_weight' "$tmp/router.metrics" &&
        { [[ -z $ROUTER_CONFIG ]] || grep -q '^enrichment_queries_total' "$tmp/router.metrics"; }
    }
    if ! wait_for 20 has_runs; then
      echo "note: the router did not run the alert's actions and enrichment within 20 s; using what it exports"
    fi
    if curl -sf "$router_url/metrics" -o "$tmp/router.metrics"; then
      router_scrape=$tmp/router.metrics
      pass "$ROUTER_BIN serve${ROUTER_CONFIG:+ --config $ROUTER_CONFIG} exports $(grep -c '^# TYPE ' "$tmp/router.metrics") metric families after one alert"
    else
      fail "$ROUTER_BIN: GET /metrics failed"
    fi
  else
    fail "$ROUTER_BIN serve did not answer /healthz within 20 s"; tail -20 "$tmp/router.log" | indent
  fi
fi

if [[ $sim_scrape != - && $router_scrape != - ]]; then
  helper names "$tmp/queries.json" "$sim_scrape" "$router_scrape" "$PENDING" "$PROMETHEUS_MADE" "$CLUSTER_MADE" "$ROUTER_REQUIRED"
else
  fail "metric names NOT checked (need both the simulator's and the router's /metrics)"
fi

# ---------------------------------------------------------------------------
# ConfigMaps for the Grafana sidecar

helper copies
if "$KUBECTL" kustomize deploy/base/dashboards >"$tmp/dashboards.yaml" 2>"$tmp/kustomize.err"; then
  helper configmaps "deploy/base/dashboards" "$tmp/dashboards.yaml" exact
else
  fail "kubectl kustomize deploy/base/dashboards"; indent <"$tmp/kustomize.err"
fi
for dir in deploy/base deploy/overlays/*/; do
  dir=${dir%/}
  [[ -f $dir/kustomization.yaml ]] || continue
  if "$KUBECTL" kustomize "$dir" >"$tmp/rendered.yaml" 2>"$tmp/kustomize.err"; then
    helper configmaps "$dir" "$tmp/rendered.yaml" subset
  else
    fail "kubectl kustomize $dir"; indent <"$tmp/kustomize.err"
  fi
done

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
