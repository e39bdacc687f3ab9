#!/usr/bin/env python3
"""Consistency checks behind scripts/check-deploy.sh (run that, not this).

Subcommands (all paths relative to the repository root, which is the cwd):

  crd-schemas OUTDIR           check the vendored CRDs under deploy/crds against
                               deploy/crds/sources.yaml (sha256) and write one strict
                               JSON Schema per served version and kind to OUTDIR
  split RENDERED OUTDIR SCHEMAS
                               split `kubectl kustomize` output into built-in
                               kinds (OUTDIR/builtin.yaml) and one file per custom
                               resource; prints "file<TAB>kind<TAB>name<TAB>schema"
                               (schema from SCHEMAS, written by crd-schemas; "-" if none)
  runtime RENDERED OUTDIR      what the router pod would read: the ConfigMap'd
                               config file, the Secret files (example values) and
                               the container's literal env; writes OUTDIR/config.yaml,
                               OUTDIR/secrets/*, OUTDIR/env (NUL-separated KEY=VALUE)
  consistency OVERLAY RENDERED cross-object checks of one rendered overlay
  sources                      copies under deploy/ vs their sources (alert rules,
                               dashboards), the Experiment example, the Dockerfile
  sync                         rewrite those copies from their sources
  docs [ROUTER_BIN]            the shell steps of README.md and deploy/README.md: the
                               Secret recipe run offline (no whitespace around the token),
                               the token check run against good and bad tokens, no
                               command that posts a real alert except the self-test,
                               and the self-test routed to log-only actions
  mutate IN OUT [PATH=JSON]    write IN with one unknown spec field added, or with the
                               dotted PATH (list indexes as numbers) set to JSON
                               (negative controls)
  amconfig OUT                 the plain Alertmanager snippet merged into a minimal
                               alertmanager.yml (for amtool); prints
                               "alertname<TAB>expected receiver" per alert of the rules

Check lines are "ok - ...", "FAIL - ...", "skipped: ..." or "note: ...";
the exit code is 1 when any FAIL was printed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import yaml

# --------------------------------------------------------------------------
# Layout: the one place that knows where things are.

RULES_SOURCE = Path("alerts/mlops-alert-rules.yaml")
RULES_COPY = Path("deploy/base/prometheusrule.yaml")
DASHBOARDS_SOURCE = Path("dashboards")
DASHBOARDS_COPY = Path("deploy/base/dashboards")
SECRET_EXAMPLE = Path("deploy/base/secret.example.yaml")
# Further example Secrets, one per Secret an overlay mounts (not applied): the
# PostgreSQL URL of the ha overlay.
DB_SECRET_EXAMPLE = Path("deploy/overlays/ha/db-secret.example.yaml")
# The CloudNativePG Cluster the ha overlay's database URL points at.
PG_CLUSTER_EXAMPLE = Path("deploy/examples/postgres-cluster.yaml")
# Keys of the Secret `<cluster>-app` CloudNativePG creates (pkg/specs/secrets.go).
CNPG_APP_SECRET_KEYS = {"username", "user", "password", "dbname", "host", "port", "pgpass",
                        "uri", "jdbc-uri", "fqdn-uri", "fqdn-jdbc-uri"}
CNPG_PORT = 5432
EXPERIMENT_EXAMPLE = Path("deploy/examples/experiment.yaml")
AM_SNIPPET = Path("deploy/alertmanager/webhook-receiver.yaml")
DEFAULT_CONFIG = Path("config/default.yaml")
DOCKERFILE = Path("Dockerfile")
DOCKERIGNORE = Path(".dockerignore")

ENV_PREFIX = "MLOPS_ALERT_ROUTER__"
CONTAINER = "router"
WEBHOOK_PATH = "/api/v1/alerts"
# Self-alerts of the router are not routed to the router.
SELF_ALERT_COMPONENT = "alert-router"
# The deployment's self-test alert (deploy/README.md, "Check that it works"):
# not a rule; routed by Alertmanager to the router, which only logs it.
SELF_TEST_ALERT = "MLOpsAlertRouterSelfTest"
SELF_TEST_PAYLOAD = Path("deploy/examples/self-test-alert.json")
# Documents (and the section, None = all) whose shell blocks a user runs against the cluster.
DEPLOY_DOCS = [(Path("README.md"), "## Deploy to Kubernetes"), (Path("deploy/README.md"), None)]
# Namespace of kube-prometheus-stack's Alertmanager.
ALERTMANAGER_NAMESPACE = "monitoring"
# kube-prometheus-stack release: its Prometheus selects these by label.
RELEASE_LABEL = ("release", "prometheus-stack")

# Official CRDs, vendored byte for byte (deploy/crds/README.md); each is turned
# into one JSON Schema per served version by `crd-schemas`.
CRDS_DIR = Path("deploy/crds")
CRDS_SOURCES = CRDS_DIR / "sources.yaml"


def schema_file_name(api_version: str, kind: str) -> str:
    return f"{api_version.replace('/', '_')}_{kind}.schema.json"


CUSTOM_GROUPS = {"monitoring.coreos.com", "mlops.seldon.io", "networking.istio.io", "postgresql.cnpg.io"}

# --------------------------------------------------------------------------
# Reporting


class Report:
    def __init__(self, prefix: str = ""):
        self.prefix = f"{prefix}: " if prefix else ""
        self.failed = 0

    def ok(self, msg: str) -> None:
        print(f"ok - {self.prefix}{msg}")

    def fail(self, msg: str) -> None:
        self.failed += 1
        print(f"FAIL - {self.prefix}{msg}")

    def check(self, cond: bool, ok_msg: str, fail_msg: str) -> bool:
        if cond:
            self.ok(ok_msg)
        else:
            self.fail(fail_msg)
        return cond

    def skip(self, msg: str) -> None:
        print(f"skipped: {self.prefix}{msg}")

    def note(self, msg: str) -> None:
        print(f"note: {self.prefix}{msg}")


# --------------------------------------------------------------------------
# Helpers


def load_docs(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def find(docs: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> list[dict]:
    out = []
    for d in docs:
        if d.get("kind") != kind:
            continue
        md = d.get("metadata", {})
        if name is not None and md.get("name") != name:
            continue
        if namespace is not None and md.get("namespace") != namespace:
            continue
        out.append(d)
    return out


def one(docs: list[dict], kind: str) -> dict:
    found = find(docs, kind)
    if len(found) != 1:
        raise LookupError(f"expected exactly one {kind} in the rendered output, found {len(found)}")
    return found[0]


def ident(d: dict) -> str:
    md = d.get("metadata", {})
    ns = md.get("namespace")
    return f"{d.get('kind')}/{ns + '/' if ns else ''}{md.get('name')}"


def deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_env_value(v: str):
    low = v.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if re.fullmatch(r"-?\d+", v.strip()):
        return int(v)
    return v


def effective_config(file_cfg: dict, env: dict[str, str]) -> dict:
    """Embedded default, then the file, then MLOPS_ALERT_ROUTER__* (like the router)."""
    default = {}
    if DEFAULT_CONFIG.exists():
        default = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8")) or {}
    cfg = deep_merge(default, file_cfg or {})
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX):].split("__")]
        node = cfg
        for p in path[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[path[-1]] = parse_env_value(value)
    return cfg


_DUR = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|msec|s|sec|secs|m|min|mins|h|hr|hrs|d)\b")
_UNIT = {"ms": 0.001, "msec": 0.001, "s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60,
         "mins": 60, "h": 3600, "hr": 3600, "hrs": 3600, "d": 86400}


def seconds(text) -> float | None:
    """humantime-style durations as the router accepts them ("10s", "1m 30s")."""
    if isinstance(text, (int, float)):
        return float(text)
    parts = _DUR.findall(str(text))
    if not parts or _DUR.sub("", str(text)).strip():
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def is_under(path: str, directory: str) -> bool:
    p, d = PurePosixPath(path), PurePosixPath(directory)
    return p == d or d in p.parents


def router_container(deploy: dict) -> dict:
    for c in deploy["spec"]["template"]["spec"].get("containers", []):
        if c.get("name") == CONTAINER:
            return c
    raise LookupError(f"Deployment has no container named {CONTAINER!r}")


def literal_env(container: dict) -> tuple[dict[str, str], list[str]]:
    env, indirect = {}, []
    for e in container.get("env", []) or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif "valueFrom" in e:
            indirect.append(e["name"])
    return env, indirect


def config_arg(container: dict) -> str:
    args = list(container.get("command", []) or []) + list(container.get("args", []) or [])
    for i, a in enumerate(args):
        if a == "--config" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    raise LookupError("the router container has no --config argument")


def volume_for_path(deploy: dict, container: dict, path: str):
    """The (volumeMount, volume, file-inside-volume) that serves `path`, deepest mount first."""
    vols = {v["name"]: v for v in deploy["spec"]["template"]["spec"].get("volumes", []) or []}
    mounts = sorted(container.get("volumeMounts", []) or [], key=lambda m: -len(m["mountPath"]))
    for m in mounts:
        mp = m["mountPath"]
        if m.get("subPath"):
            if path == mp:
                return m, vols.get(m["name"]), m["subPath"]
        elif is_under(path, mp):
            rel = str(PurePosixPath(path).relative_to(mp)) if path != mp else ""
            return m, vols.get(m["name"]), rel
    return None, None, None


def secret_example() -> dict:
    docs = load_docs(SECRET_EXAMPLE)
    if len(docs) != 1 or docs[0].get("kind") != "Secret":
        raise LookupError(f"{SECRET_EXAMPLE} must hold exactly one Secret")
    return docs[0]


def example_secrets() -> dict[str, tuple[Path, dict[str, str]]]:
    """Secret name -> (example file, key -> value) of every example Secret."""
    out = {}
    for f in (SECRET_EXAMPLE, DB_SECRET_EXAMPLE):
        if not f.exists():
            continue
        docs = load_docs(f)
        if not docs or any(d.get("kind") != "Secret" for d in docs):
            raise LookupError(f"{f} must hold Secrets only")
        for d in docs:
            out[d["metadata"]["name"]] = (f, secret_keys(d))
    return out


def pg_cluster_example() -> dict | None:
    """The CloudNativePG Cluster example, if there is one."""
    if not PG_CLUSTER_EXAMPLE.exists():
        return None
    found = [d for d in load_docs(PG_CLUSTER_EXAMPLE) if d.get("kind") == "Cluster"]
    if len(found) != 1:
        raise LookupError(f"{PG_CLUSTER_EXAMPLE} must hold exactly one Cluster")
    return found[0]


def cnpg_services(cluster: dict | None) -> dict:
    """KNOWN_SERVICES entries for the Services CloudNativePG creates for a Cluster:
    <name>-rw (primary), -ro (standbys), -r (any), all on the instance pods,
    labelled cnpg.io/cluster=<name>, port 5432."""
    if not cluster:
        return {}
    name, ns = cluster["metadata"]["name"], cluster["metadata"].get("namespace")
    return {(f"{name}-{suffix}", ns): ({"cnpg.io/cluster": name}, {CNPG_PORT: CNPG_PORT})
            for suffix in ("rw", "ro", "r")}


def secret_keys(secret: dict) -> dict[str, str]:
    out = dict(secret.get("stringData", {}) or {})
    for k, v in (secret.get("data", {}) or {}).items():
        out[k] = base64.b64decode(v).decode("utf-8")
    return out


def secret_mounts(deploy: dict, container: dict) -> list[tuple[str, str, dict]]:
    """(mountPath, secretName, volume) of every Secret volume mounted whole (no subPath)."""
    vols = {v["name"]: v for v in deploy["spec"]["template"]["spec"].get("volumes", []) or []}
    out = []
    for m in container.get("volumeMounts", []) or []:
        v = vols.get(m["name"], {})
        if "secret" in v and not m.get("subPath"):
            out.append((m["mountPath"], v["secret"]["secretName"], v))
    return out


def secret_file_key(volume: dict, rel: str) -> str | None:
    """The Secret key that appears as file `rel` in a Secret volume."""
    items = volume["secret"].get("items")
    if not items:
        return rel
    for it in items:
        if it["path"] == rel:
            return it["key"]
    return None


def matcher_names(value: str) -> list[str] | None:
    """`A|B|C` (optionally ^(...)$) as a list of names; None if it is another regex."""
    v = value.strip()
    m = re.fullmatch(r"\^?\((.*)\)\$?", v)
    if m:
        v = m.group(1)
    names = v.split("|")
    if all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names):
        return names
    return None


def parse_am_matcher(text: str) -> tuple[str, str, str] | None:
    m = re.fullmatch(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*', text)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def rules_doc() -> dict | None:
    """The PrometheusRule the cluster gets: the copy under deploy/ (checked against its source)."""
    if not RULES_COPY.exists():
        return None
    docs = load_docs(RULES_COPY)
    return docs[0] if docs else None


def alert_rules(rule_doc: dict) -> list[dict]:
    out = []
    for g in rule_doc.get("spec", {}).get("groups", []) or []:
        for r in g.get("rules", []) or []:
            if "alert" in r:
                out.append(r)
    return out


# --------------------------------------------------------------------------
# NetworkPolicy egress vs the destinations the config calls

# Services of kube-prometheus-stack (release prometheus-stack): the labels of
# the pods behind them and service port -> pod port (a NetworkPolicy sees the
# pod's port, after the Service's DNAT).
KNOWN_SERVICES = {
    ("prometheus-operated", "monitoring"): ({"app.kubernetes.io/name": "prometheus"}, {9090: 9090}),
    ("prometheus-stack-kube-prom-prometheus", "monitoring"): ({"app.kubernetes.io/name": "prometheus"}, {9090: 9090}),
    ("alertmanager-operated", "monitoring"): ({"app.kubernetes.io/name": "alertmanager"}, {9093: 9093}),
    ("prometheus-stack-kube-prom-alertmanager", "monitoring"):
        ({"app.kubernetes.io/name": "alertmanager"}, {9093: 9093}),
    ("prometheus-stack-grafana", "monitoring"): ({"app.kubernetes.io/name": "grafana"}, {80: 3000}),
}
KUBE_TARGET_KINDS = {"seldon_experiment", "istio_virtual_service"}
# The in-cluster API server: Service port 443, endpoints usually on 6443 (or 443).
KUBE_API_PORTS = (443, 6443)


def called_destinations(cfg: dict) -> list[tuple[str, str, tuple[int, ...]]]:
    """(config key, URL, ports) of everything the router connects to."""
    out = []

    def port_of(url: str) -> int:
        u = urlsplit(url)
        return u.port or (443 if u.scheme == "https" else 80)

    def add(where: str, url: str) -> None:
        out.append((where, url, (port_of(url),)))

    if (cfg.get("prometheus") or {}).get("url"):
        add("prometheus.url", cfg["prometheus"]["url"])
    if (cfg.get("alertmanager") or {}).get("url"):
        add("alertmanager.url", cfg["alertmanager"]["url"])
    for name, act in sorted((cfg.get("actions") or {}).items()):
        if not isinstance(act, dict) or act.get("type") in (None, "log", "traffic_shift"):
            continue
        if act.get("url"):
            add(f"actions.{name}.url", str(act["url"]))
        elif act.get("url_file"):
            # The URL is a secret: assume an HTTPS service outside the cluster.
            add(f"actions.{name}.url_file (an external HTTPS URL)", "https://external.invalid")
        elif act.get("type") == "slack":
            add(f"actions.{name} (Slack Web API)", str(act.get("api_url") or "https://slack.com/api"))
    kube = [n for n, tgt in sorted((cfg.get("traffic_targets") or {}).items())
            if isinstance(tgt, dict) and tgt.get("kind") in KUBE_TARGET_KINDS]
    if kube:
        api = (cfg.get("kubernetes") or {}).get("api_url")
        where = f"traffic_targets {', '.join(kube)} (Kubernetes API)"
        if api:
            add(where, str(api))
        else:
            out.append((where, "https://kubernetes.default.svc", KUBE_API_PORTS))
    return out


def in_cluster(host: str) -> tuple[str, str] | None:
    """(service, namespace) of `svc.ns.svc[.cluster.local]`, else None (outside the cluster)."""
    m = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?\.?", host)
    if not m or (m.group(1), m.group(2)) == ("kubernetes", "default"):
        return None
    return m.group(1), m.group(2)


def egress_gap(nps: list[dict], policy_ns: str, host: str, port: int) -> str | None:
    """None if one egress rule of `nps` lets the router reach host:port, else why not."""
    svc = in_cluster(host)
    known = {**KNOWN_SERVICES, **cnpg_services(pg_cluster_example())}
    pod_labels, port_map = known.get(svc, (None, {})) if svc else (None, {})
    pod_port = port_map.get(port, port)
    for np in nps:
        for rule in np["spec"].get("egress") or []:
            ports = [p.get("port") for p in rule.get("ports") or []]
            if ports and pod_port not in ports:
                continue
            peers = rule.get("to")
            if not peers:
                return None
            for peer in peers:
                if "ipBlock" in peer:
                    # An address range: only trusted for destinations outside the cluster.
                    if svc is None and peer["ipBlock"].get("cidr") in ("0.0.0.0/0", "::/0"):
                        return None
                    continue
                if svc is None:
                    continue
                nsel = peer.get("namespaceSelector")
                if nsel is None:
                    peer_ns_ok = svc[1] == policy_ns
                else:
                    want = (nsel.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
                    peer_ns_ok = (not nsel) or want == svc[1]
                if not peer_ns_ok:
                    continue
                psel = (peer.get("podSelector") or {}).get("matchLabels") or {}
                if pod_labels is None or all(pod_labels.get(k) == v for k, v in psel.items()):
                    return None
    where = f"Service {svc[0]} in {svc[1]}, pod port {pod_port}" if svc else f"port {pod_port} outside the cluster"
    return f"no egress rule allows {where}"


# --------------------------------------------------------------------------
# crd-schemas: the vendored official CRDs as strict JSON Schemas


class _CrdLoader(yaml.SafeLoader):
    """PyYAML reads a bare `=` (an enum value in prometheus-operator's CRDs) as
    the YAML 1.1 `value` type; it is the string "="."""


_CrdLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))

# openAPIV3Schema keywords with no JSON Schema meaning here (documentation,
# CEL, list/map semantics, Kubernetes formats that differ from JSON Schema's).
_DROP = {"description", "format", "default", "example", "externalDocs", "x-kubernetes-validations",
         "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
         "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string",
         "x-kubernetes-preserve-unknown-fields", "nullable"}


def openapi_to_jsonschema(s: dict) -> dict:
    """A structural CRD schema as JSON Schema, strict like `kubectl apply`'s default
    server-side field validation: an object with `properties` and without
    x-kubernetes-preserve-unknown-fields rejects unknown fields."""
    out: dict = {}
    for k, v in s.items():
        if k in _DROP:
            continue
        if k == "properties":
            out[k] = {name: openapi_to_jsonschema(sub) for name, sub in v.items()}
        elif k in ("items", "not") and isinstance(v, dict):
            out[k] = openapi_to_jsonschema(v)
        elif k == "additionalProperties" and isinstance(v, dict):
            out[k] = openapi_to_jsonschema(v)
        elif k in ("anyOf", "oneOf", "allOf"):
            out[k] = [openapi_to_jsonschema(x) for x in v]
        elif k == "pattern" and "(?i)" in v:
            # RE2 allows an inline flag mid-pattern, JSON Schema's ECMA regexes do
            # not: such patterns (a few mute-time-interval fields) are not checked.
            continue
        else:
            out[k] = v
    if s.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if s.get("nullable") and "type" in out:
        out["type"] = (out["type"] if isinstance(out["type"], list) else [out["type"]]) + ["null"]
    if (out.get("type") == "object" and "properties" in out and "additionalProperties" not in out
            and not s.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def cmd_crd_schemas(outdir: Path) -> int:
    import hashlib
    r = Report()
    outdir.mkdir(parents=True, exist_ok=True)
    sources = yaml.safe_load(CRDS_SOURCES.read_text(encoding="utf-8")) or []
    listed = {str(CRDS_DIR / s["file"]) for s in sources}
    present = {str(f) for f in CRDS_DIR.rglob("*.yaml") if f != CRDS_SOURCES}
    r.check(listed == present, f"{CRDS_SOURCES} lists exactly the {len(present)} vendored CRDs",
            f"{CRDS_SOURCES} and {CRDS_DIR} disagree: not listed {sorted(present - listed)}, "
            f"missing {sorted(listed - present)}")
    written = []
    for s in sources:
        f = CRDS_DIR / s["file"]
        if not f.exists():
            continue
        missing = [k for k in ("repository", "path", "tag", "commit", "licence", "sha256") if not s.get(k)]
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        if not r.check(not missing and digest == s.get("sha256"),
                       f"{f}: official CRD from {s.get('repository')} {s.get('tag')} ({s.get('licence')}), sha256 matches",
                       f"{f}: " + (f"source entry lacks {missing}; " if missing else "")
                       + (f"sha256 {digest} != {s.get('sha256')} in {CRDS_SOURCES} (edited by hand?)"
                          if digest != s.get("sha256") else "")):
            continue
        crd = yaml.load(f.read_text(encoding="utf-8"), Loader=_CrdLoader)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            if not v.get("served", True):
                continue
            api = f"{group}/{v['name']}"
            schema = openapi_to_jsonschema(v["schema"]["openAPIV3Schema"])
            schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
            schema["title"] = f"{kind} {api} from {s['repository']} {s['tag']} ({s['file']})"
            schema.setdefault("required", [])
            for req in ("apiVersion", "kind"):
                if req not in schema["required"]:
                    schema["required"].append(req)
            schema["properties"]["apiVersion"] = {"const": api}
            schema["properties"]["kind"] = {"const": kind}
            # The API server validates metadata itself; a CRD need not declare it.
            schema["properties"].setdefault("metadata", {"type": "object"})
            (outdir / schema_file_name(api, kind)).write_text(json.dumps(schema, indent=1), encoding="utf-8")
            written.append(f"{kind} {api}")
    r.check(bool(written), f"JSON Schemas written for {', '.join(written)}", "no CRD schema written")
    return 1 if r.failed else 0


# --------------------------------------------------------------------------
# split


def cmd_split(rendered: Path, outdir: Path, schemas: Path) -> int:
    docs = load_docs(rendered)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "cr").mkdir(exist_ok=True)
    builtin = []
    for i, d in enumerate(docs):
        api = d.get("apiVersion", "")
        group = api.split("/")[0] if "/" in api else ""
        if group in CUSTOM_GROUPS:
            name = d.get("metadata", {}).get("name", "unnamed")
            f = outdir / "cr" / f"{i:02d}-{d.get('kind', 'Unknown').lower()}-{name}.yaml"
            f.write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
            sf = schemas / schema_file_name(api, d.get("kind", ""))
            schema = str(sf) if sf.exists() else "-"
            print(f"{f}\t{d.get('kind')}\t{ident(d)}\t{schema}")
        else:
            builtin.append(d)
    (outdir / "builtin.yaml").write_text(yaml.safe_dump_all(builtin, sort_keys=False), encoding="utf-8")
    return 0


# --------------------------------------------------------------------------
# runtime: what the pod reads, materialised for check-config


def cmd_runtime(rendered: Path, outdir: Path) -> int:
    docs = load_docs(rendered)
    deploy = one(docs, "Deployment")
    c = router_container(deploy)
    cfg_path = config_arg(c)
    mount, vol, rel = volume_for_path(deploy, c, cfg_path)
    if not vol or "configMap" not in vol:
        raise LookupError(f"--config {cfg_path} is not served by a ConfigMap volume")
    cm_name = vol["configMap"]["name"]
    cms = find(docs, "ConfigMap", cm_name, deploy["metadata"].get("namespace"))
    if not cms:
        raise LookupError(f"ConfigMap {cm_name} (volume {vol['name']}) is not in the rendered output")
    items = vol["configMap"].get("items")
    key = rel
    if items:
        key = next((it["key"] for it in items if it["path"] == rel), None)
    data = cms[0].get("data", {}) or {}
    if key not in data:
        raise LookupError(f"ConfigMap {cm_name} has no key {key!r} for {cfg_path}")
    text = data[key]

    outdir.mkdir(parents=True, exist_ok=True)
    sdir = outdir / "secrets"
    examples = example_secrets()
    env, _ = literal_env(c)
    for mount_path, secret_name, svol in secret_mounts(deploy, c):
        if secret_name not in examples:
            raise LookupError(f"Secret {secret_name} (mounted at {mount_path}) has no example "
                              f"({', '.join(str(f) for f, _ in examples.values())})")
        example_file, example = examples[secret_name]
        target = sdir / secret_name
        target.mkdir(parents=True, exist_ok=True)
        items = svol["secret"].get("items")
        files = {it["path"]: it["key"] for it in items} if items else {k: k for k in example}
        for path, k in files.items():
            if k in example:
                (target / path).write_text(example[k], encoding="utf-8")
        # The pod path does not exist on this machine: point it at the example.
        text = text.replace(mount_path.rstrip("/") + "/", str(target.resolve()) + "/")
        env = {k: v.replace(mount_path.rstrip("/") + "/", str(target.resolve()) + "/") for k, v in env.items()}
        print(f"note: Secret {secret_name} mounted at {mount_path} mapped to the values of {example_file}")
    (outdir / "config.yaml").write_text(text, encoding="utf-8")
    (outdir / "env").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))
    print(f"note: config = ConfigMap {cm_name} key {key} (mounted at {cfg_path}); "
          f"env: {', '.join(sorted(env)) or 'none'}")
    return 0


# --------------------------------------------------------------------------
# consistency


def check_ha_shape(r: Report, docs: list[dict], deploy: dict, pod: dict, c: dict,
                   replicas: int, strategy: dict) -> None:
    """Several replicas on PostgreSQL: rolling updates, no volume, a PodDisruptionBudget
    that lets a drain proceed while two keep serving, spread over nodes."""
    ns = deploy["metadata"].get("namespace")
    tmpl_labels = deploy["spec"]["template"]["metadata"].get("labels", {}) or {}
    ru = strategy.get("rollingUpdate") or {}
    r.check(isinstance(replicas, int) and replicas >= 3 and strategy.get("type", "RollingUpdate") == "RollingUpdate"
            and str(ru.get("maxUnavailable", "25%")) in ("0", "0%"),
            f"Deployment: {replicas} replicas on PostgreSQL, RollingUpdate with maxUnavailable 0",
            f"Deployment on PostgreSQL must have at least 3 replicas and strategy RollingUpdate with "
            f"maxUnavailable 0 (a new pod is ready before an old one goes), has replicas {replicas} / {strategy}")
    pvc_vols = [v["name"] for v in pod.get("volumes", []) or [] if "persistentVolumeClaim" in v]
    pvcs = find(docs, "PersistentVolumeClaim")
    r.check(not pvc_vols and not pvcs, "no PersistentVolumeClaim: the state is in PostgreSQL",
            f"a PostgreSQL overlay must not render or mount a PVC (3 replicas cannot share a "
            f"ReadWriteOnce volume): volumes {pvc_vols}, PVCs {[ident(d) for d in pvcs]}")

    # PodDisruptionBudget <-> replicas
    pdbs = [d for d in find(docs, "PodDisruptionBudget", namespace=ns)
            if all(tmpl_labels.get(k) == v for k, v in
                   ((d["spec"].get("selector") or {}).get("matchLabels") or {}).items())]
    if len(pdbs) != 1:
        r.fail(f"expected one PodDisruptionBudget selecting the router pods, found {len(pdbs)}")
    else:
        spec = pdbs[0]["spec"]

        def count(v):
            v = str(v)
            if v.endswith("%"):
                return None  # percentages: not modelled, asked to be absolute below
            return int(v)

        if "minAvailable" in spec:
            kept = count(spec["minAvailable"])
        elif "maxUnavailable" in spec:
            mu = count(spec["maxUnavailable"])
            kept = None if mu is None else replicas - mu
        else:
            kept = None
        r.check(kept is not None and 2 <= kept < replicas,
                f"PodDisruptionBudget {pdbs[0]['metadata']['name']}: of {replicas} replicas, {kept} stay "
                f"during a voluntary disruption, and a drain can proceed",
                f"PodDisruptionBudget {pdbs[0]['metadata']['name']} ({ {k: spec[k] for k in spec if k != 'selector'} }) "
                f"vs replicas {replicas}: at least 2 must stay (one more may fail on its own) and at most "
                f"replicas - 1 (else a drain never proceeds); give an absolute number")

    # Topology spread
    tsc = pod.get("topologySpreadConstraints") or []
    keys = {t.get("topologyKey") for t in tsc
            if all(tmpl_labels.get(k) == v for k, v in
                   ((t.get("labelSelector") or {}).get("matchLabels") or {}).items())
            and (t.get("labelSelector") or {}).get("matchLabels")}
    r.check("kubernetes.io/hostname" in keys,
            f"topologySpreadConstraints over {', '.join(sorted(keys))}, selecting the router pods",
            f"a PostgreSQL overlay must spread the router pods over nodes (topologySpreadConstraints on "
            f"kubernetes.io/hostname selecting the pod labels); has {sorted(k for k in keys if k)}")


def check_db_url(r: Report, file_cfg: dict, storage: dict, deploy: dict, c: dict, ns: str) -> str | None:
    """storage.postgres.url_file is a key of a mounted Secret that has an example (and,
    with the CloudNativePG example, is its generated `<cluster>-app` Secret). Returns
    the example URL (for the egress check)."""
    pg = storage.get("postgres") or {}
    inline = (file_cfg.get("storage") or {}).get("postgres", {}) or {}
    r.check(not inline.get("url") and not pg.get("url"),
            "storage.postgres.url is not set inline (the URL holds the password: url_file)",
            "storage.postgres.url is set in the ConfigMap or env: the URL carries the database password; "
            "use storage.postgres.url_file from a Secret")
    # No private key in the pod: a Secret volume that projects everything would
    # also hand the router CloudNativePG's ca.key.
    examples = example_secrets()
    keys_out = []
    for mp, sn, vol in secret_mounts(deploy, c):
        items = vol["secret"].get("items")
        keys = [it["key"] for it in items] if items else sorted(examples.get(sn, (None, {}))[1])
        keys_out += [f"Secret {sn} key {k} at {mp}" for k in keys if k.endswith(".key") or k == "ca.key"]
    r.check(not keys_out, "no private key is mounted into the router (Secret volumes project only what it reads)",
            f"private keys mounted into the router: {keys_out}; list the keys it reads under `items:`")

    ca_path = str(pg.get("ca_file") or "")
    ca_ref = None
    if ca_path:
        hit = [(mp, sn, v) for mp, sn, v in secret_mounts(deploy, c) if is_under(ca_path, mp)]
        if not hit:
            r.fail(f"storage.postgres.ca_file {ca_path} is not under a Secret mount of the router container")
        else:
            mp, sn, vol = hit[0]
            key = secret_file_key(vol, str(PurePosixPath(ca_path).relative_to(mp)))
            ex = examples.get(sn)
            if key is None or ex is None or key not in ex[1]:
                r.fail(f"storage.postgres.ca_file {ca_path} is Secret {sn} key {key}, which "
                       + (f"is not a key of {ex[0]} ({sorted(ex[1])})" if ex else "has no example Secret"))
            else:
                ca_ref = (sn, key)
                r.check("BEGIN CERTIFICATE" in ex[1][key],
                        f"storage.postgres.ca_file {ca_path} = Secret {sn} key {key} (a PEM certificate in {ex[0]})",
                        f"{ex[0]}: Secret {sn} key {key} is not a PEM certificate")

    path = str(pg.get("url_file") or "")
    if not path:
        r.fail("storage.backend is postgres but storage.postgres.url_file is not set")
        return None
    hit = [(mp, sn, v) for mp, sn, v in secret_mounts(deploy, c) if is_under(path, mp)]
    if not hit:
        r.fail(f"storage.postgres.url_file {path} is not under a Secret mount of the router container")
        return None
    mp, sn, vol = hit[0]
    key = secret_file_key(vol, str(PurePosixPath(path).relative_to(mp)))
    ex = examples.get(sn)
    if key is None or ex is None or key not in ex[1]:
        r.fail(f"storage.postgres.url_file {path} is Secret {sn} key {key}, which "
               + (f"is not a key of {ex[0]} ({sorted(ex[1])})" if ex else "has no example Secret"))
        return None
    url = ex[1][key].strip()
    u = urlsplit(url)
    r.check(u.scheme in ("postgres", "postgresql") and bool(u.hostname),
            f"storage.postgres.url_file {path} = Secret {sn} key {key} ({ex[0]}: a postgresql:// URL "
            f"to {u.hostname}:{u.port or CNPG_PORT})",
            f"{ex[0]} key {key} is not a postgres:// or postgresql:// URL with a host")
    try:
        cluster = pg_cluster_example()
    except LookupError as e:
        r.fail(str(e))
        cluster = None
    if cluster is not None:
        name, cns = cluster["metadata"]["name"], cluster["metadata"].get("namespace")
        init = ((cluster["spec"].get("bootstrap") or {}).get("initdb") or {})
        db, owner = init.get("database", "app"), init.get("owner", init.get("database", "app"))
        problems = []
        if sn != f"{name}-app":
            problems.append(f"the pod mounts Secret {sn}, CloudNativePG creates {name}-app")
        if key not in CNPG_APP_SECRET_KEYS:
            problems.append(f"key {key} is not one CloudNativePG writes ({sorted(CNPG_APP_SECRET_KEYS)})")
        if cns != ns:
            problems.append(f"the Cluster is in namespace {cns}, the router in {ns} (a Secret is not shared across namespaces)")
        svc = in_cluster(u.hostname or "")
        if svc != (f"{name}-rw", cns):
            problems.append(f"the example URL's host {u.hostname} is not the primary's Service {name}-rw.{cns}.svc")
        if ca_ref is not None and ca_ref != (f"{name}-ca", "ca.crt"):
            problems.append(f"storage.postgres.ca_file is Secret {ca_ref[0]} key {ca_ref[1]}, CloudNativePG's "
                            f"server CA is Secret {name}-ca key ca.crt")
        if (u.port or CNPG_PORT) != CNPG_PORT:
            problems.append(f"the example URL's port {u.port} is not CloudNativePG's {CNPG_PORT}")
        if u.path.lstrip("/") != db or (u.username or "") != owner:
            problems.append(f"the example URL names database {u.path.lstrip('/')!r} user {u.username!r}, "
                            f"the Cluster creates database {db!r} owned by {owner!r}")
        r.check(not problems,
                f"the database URL is what CloudNativePG writes for {PG_CLUSTER_EXAMPLE} "
                f"(Secret {name}-app key {key}: {name}-rw.{cns}.svc:{CNPG_PORT}/{db} as {owner})",
                f"{PG_CLUSTER_EXAMPLE} and the ha overlay disagree: " + "; ".join(problems))
    return url


def cmd_consistency(overlay: str, rendered: Path) -> int:
    r = Report(overlay)
    docs = load_docs(rendered)
    try:
        deploy = one(docs, "Deployment")
        c = router_container(deploy)
    except LookupError as e:
        r.fail(str(e))
        return 1
    ns = deploy["metadata"].get("namespace")
    pod = deploy["spec"]["template"]["spec"]
    env, indirect = literal_env(c)
    if indirect:
        r.note(f"env from valueFrom not modelled: {', '.join(indirect)}")

    # --- the config the pod reads (ConfigMap + env over the embedded default)
    file_cfg: dict = {}
    try:
        cfg_path = config_arg(c)
        _, vol, rel = volume_for_path(deploy, c, cfg_path)
        cm = find(docs, "ConfigMap", (vol or {}).get("configMap", {}).get("name"), ns)
        r.check(bool(cm) and rel in (cm[0].get("data") or {}),
                f"--config {cfg_path} is key {rel} of ConfigMap {cm[0]['metadata']['name'] if cm else '?'}",
                f"--config {cfg_path} is not backed by a rendered ConfigMap key")
        if cm and rel in (cm[0].get("data") or {}):
            file_cfg = yaml.safe_load(cm[0]["data"][rel]) or {}
    except LookupError as e:
        r.fail(str(e))
    cfg = effective_config(file_cfg, env)
    server, storage = cfg.get("server", {}) or {}, cfg.get("storage", {}) or {}
    auth, ingest = cfg.get("auth", {}) or {}, cfg.get("ingest", {}) or {}

    # --- Deployment shape: SQLite = one replica on a PVC; PostgreSQL = several, no volume
    backend = str(storage.get("backend") or "sqlite")
    replicas = deploy["spec"].get("replicas", 1)
    strategy = deploy["spec"].get("strategy", {}) or {}
    if backend == "sqlite":
        r.check(replicas == 1 and strategy.get("type") == "Recreate",
                "Deployment: 1 replica, strategy Recreate (SQLite on a RWO volume)",
                f"Deployment must have replicas 1 and strategy Recreate, has replicas "
                f"{replicas} / {strategy}")
    elif backend == "postgres":
        check_ha_shape(r, docs, deploy, pod, c, replicas, strategy)
    else:
        r.fail(f"storage.backend {backend!r} is neither sqlite nor postgres")

    # Every mount names a volume of the pod, every volume is mounted (an overlay's patch
    # that drops or adds one must do both).
    vol_names = {v["name"] for v in pod.get("volumes", []) or []}
    mount_names = {m["name"] for ct in pod.get("containers", []) or [] for m in ct.get("volumeMounts", []) or []}
    r.check(vol_names == mount_names, f"volumes and volumeMounts agree ({', '.join(sorted(vol_names))})",
            f"volumeMounts without a volume: {sorted(mount_names - vol_names)}; "
            f"volumes never mounted: {sorted(vol_names - mount_names)}")

    psc, csc = pod.get("securityContext", {}) or {}, c.get("securityContext", {}) or {}
    problems = []
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        problems.append("runAsNonRoot")
    if (csc.get("runAsUser", psc.get("runAsUser")) or 0) == 0:
        problems.append("runAsUser != 0")
    if csc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem")
    if csc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation: false")
    if csc.get("privileged"):
        problems.append("not privileged")
    if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []) or (csc.get("capabilities") or {}).get("add"):
        problems.append("capabilities drop [ALL], add nothing")
    seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        problems.append("seccompProfile RuntimeDefault")
    if pod.get("enableServiceLinks") is not False:
        problems.append("enableServiceLinks: false (Service env vars next to MLOPS_ALERT_ROUTER__*)")
    r.check(not problems, "pod hardening: non-root, read-only root fs, no privilege escalation, "
            "all capabilities dropped, seccomp RuntimeDefault, no service links",
            "pod hardening missing: " + "; ".join(problems))

    res = c.get("resources", {}) or {}
    missing = [f"{k}.{x}" for k in ("requests", "limits") for x in ("cpu", "memory")
               if x not in (res.get(k) or {})]
    r.check(not missing, "resources: cpu/memory requests and limits set",
            f"resources missing: {', '.join(missing)}")

    grace = seconds(server.get("grace_period", "10s"))
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    r.check(grace is not None and tgps > grace,
            f"terminationGracePeriodSeconds {tgps} > server.grace_period {server.get('grace_period')}",
            f"terminationGracePeriodSeconds {tgps} must exceed server.grace_period "
            f"{server.get('grace_period')!r} or the router is killed mid-drain")

    # --- ports and probes agree with server.listen
    listen = str(server.get("listen", ""))
    lport = int(listen.rsplit(":", 1)[1]) if re.fullmatch(r".+:\d+", listen) else None
    cports = {p.get("name"): p["containerPort"] for p in c.get("ports", []) or []}
    r.check(lport is not None and lport in cports.values() and not listen.startswith(("127.", "[::1]", "localhost")),
            f"server.listen {listen} is a containerPort reachable from outside the pod",
            f"server.listen {listen!r} must listen on all interfaces on a declared containerPort "
            f"({cports})")

    def port_no(p):
        return cports.get(p) if isinstance(p, str) else p

    probes_ok, why = True, []
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        h = (c.get(probe) or {}).get("httpGet") or {}
        if h.get("path") != path or port_no(h.get("port")) != lport:
            probes_ok = False
            why.append(f"{probe} must GET {path} on port {lport} (has {h.get('path')} on {h.get('port')})")
    r.check(probes_ok, "probes: liveness /healthz, readiness /readyz on the router's port", "; ".join(why))

    # --- storage.path on a writable PVC (SQLite), or the database URL from a Secret file (PostgreSQL)
    db_url = None
    if backend == "sqlite":
        spath = str(storage.get("path", ""))
        m, vol, _ = volume_for_path(deploy, c, spath) if spath.startswith("/") else (None, None, None)
        pvc_name = ((vol or {}).get("persistentVolumeClaim") or {}).get("claimName")
        pvcs = find(docs, "PersistentVolumeClaim", pvc_name, ns) if pvc_name else []
        r.check(bool(pvcs) and not m.get("readOnly") and "ReadWriteOnce" in pvcs[0]["spec"].get("accessModes", []),
                f"storage.path {spath} is on PVC {pvc_name} (ReadWriteOnce, mounted writable)",
                f"storage.path {spath!r} must be an absolute path on a writable mount of a rendered "
                f"ReadWriteOnce PVC (mount: {m and m['mountPath']}, claim: {pvc_name})")
    elif backend == "postgres":
        db_url = check_db_url(r, file_cfg, storage, deploy, c, ns)

    # --- secrets: never in the ConfigMap, only as files from the Secret
    inline = []
    if (file_cfg.get("auth") or {}).get("bearer_tokens"):
        inline.append("auth.bearer_tokens")
    for i, u in enumerate((file_cfg.get("auth") or {}).get("basic_users") or []):
        if isinstance(u, dict) and "password" in u:
            inline.append(f"auth.basic_users[{i}].password")
    r.check(not inline, "no credentials inline in the ConfigMap (only *_file keys)",
            f"credentials inline in the ConfigMap: {', '.join(inline)}; use the *_file keys")

    example = secret_example()
    ex_name, ex_keys = example["metadata"]["name"], secret_keys(example)
    smounts = secret_mounts(deploy, c)
    file_refs = []
    if auth.get("bearer_tokens_file"):
        file_refs.append(("auth.bearer_tokens_file", str(auth["bearer_tokens_file"])))
    for i, u in enumerate(auth.get("basic_users") or []):
        if isinstance(u, dict) and u.get("password_file"):
            file_refs.append((f"auth.basic_users[{i}].password_file", str(u["password_file"])))
    bad_refs = []
    for key, path in file_refs:
        hit = [(mp, sn, v) for mp, sn, v in smounts if is_under(path, mp)]
        if not hit:
            bad_refs.append(f"{key} {path} is not under a Secret mount")
            continue
        mp, sn, v = hit[0]
        skey = secret_file_key(v, str(PurePosixPath(path).relative_to(mp)))
        if sn != ex_name or skey not in ex_keys:
            bad_refs.append(f"{key} {path} is Secret {sn} key {skey}, not a key of {SECRET_EXAMPLE} ({ex_name}: {sorted(ex_keys)})")
    r.check(bool(auth.get("bearer_tokens_file")) and not bad_refs,
            f"auth.bearer_tokens_file {auth.get('bearer_tokens_file')} is a key of Secret {ex_name} mounted in the pod",
            "; ".join(bad_refs) or "auth.bearer_tokens_file is not configured (Alertmanager authenticates with a bearer token)")

    # --- Service
    svcs = find(docs, "Service", namespace=ns)
    tmpl_labels = deploy["spec"]["template"]["metadata"].get("labels", {}) or {}
    svc = svcs[0] if len(svcs) == 1 else None
    if svc is None:
        r.fail(f"expected one Service in {ns}, found {len(svcs)}")
        return 1
    sel = svc["spec"].get("selector", {}) or {}
    sport = next((p for p in svc["spec"].get("ports", []) if p.get("name") == "http"), None)
    r.check(bool(sel) and all(tmpl_labels.get(k) == v for k, v in sel.items())
            and sport is not None and port_no(sport.get("targetPort", sport.get("port"))) == lport,
            f"Service {svc['metadata']['name']} port http:{sport and sport['port']} -> pod port {lport}",
            f"Service must select the pod ({sel} vs {tmpl_labels}) and expose port `http` "
            f"targeting the router's port {lport} ({sport})")

    def check_url(where: str, url: str) -> None:
        u = urlsplit(url)
        host = u.hostname or ""
        svc_name, svc_ns = svc["metadata"]["name"], ns
        problems = []
        if u.scheme != "http":
            problems.append(f"scheme {u.scheme!r} (the router serves plain http)")
        ok_hosts = {f"{svc_name}.{svc_ns}", f"{svc_name}.{svc_ns}.svc", f"{svc_name}.{svc_ns}.svc.cluster.local"}
        if host not in ok_hosts:
            problems.append(f"host {host!r} is not Service {svc_name} in namespace {svc_ns} "
                            f"(expected {svc_name}.{svc_ns}.svc)")
        if u.port not in [p["port"] for p in svc["spec"].get("ports", [])]:
            problems.append(f"port {u.port} is not a port of Service {svc_name}")
        if u.path != WEBHOOK_PATH:
            problems.append(f"path {u.path!r} is not {WEBHOOK_PATH}")
        r.check(not problems, f"{where} URL {url} reaches Service {svc_name}.{svc_ns}:{u.port}{u.path}",
                f"{where} URL {url}: " + "; ".join(problems))

    # --- AlertmanagerConfig
    amcs = find(docs, "AlertmanagerConfig")
    am_matchers: list | None = None
    am_hook = None
    if len(amcs) != 1:
        r.fail(f"expected one AlertmanagerConfig, found {len(amcs)}")
    else:
        amc = amcs[0]
        route = amc["spec"].get("route", {}) or {}
        recv = {x["name"]: x for x in amc["spec"].get("receivers", []) or []}
        hooks = (recv.get(route.get("receiver")) or {}).get("webhookConfigs") or []
        if len(hooks) != 1:
            r.fail(f"AlertmanagerConfig route receiver {route.get('receiver')!r} must have exactly one webhookConfig")
        else:
            am_hook = hooks[0]
            check_url("AlertmanagerConfig", am_hook.get("url", ""))
            authz = (am_hook.get("httpConfig") or {}).get("authorization") or {}
            cred = authz.get("credentials") or {}
            tokens = [t.strip() for t in ex_keys.get("bearer_tokens", "").splitlines() if t.strip()]
            r.check((authz.get("type") or "Bearer").lower() == "bearer" and cred.get("name") == ex_name
                    and cred.get("key") in ex_keys and any(cred.get("name") == sn for _, sn, _ in smounts)
                    and bool(auth.get("bearer_tokens_file"))
                    and ex_keys.get(cred.get("key"), "").strip() in tokens,
                    f"AlertmanagerConfig bearer token = Secret {cred.get('name')} key {cred.get('key')}, "
                    f"one of the router's bearer_tokens_file tokens (example values)",
                    f"AlertmanagerConfig authorization {authz} must be Bearer from Secret {ex_name} "
                    f"(mounted in the pod), with a key whose value is a line of the router's "
                    f"bearer_tokens_file key")
            max_alerts = am_hook.get("maxAlerts", 0)
            limit = ingest.get("max_alerts")
            r.check(am_hook.get("sendResolved") is True and isinstance(limit, int) and 0 < max_alerts <= limit,
                    f"AlertmanagerConfig sendResolved, maxAlerts {max_alerts} <= router ingest.max_alerts {limit}",
                    f"AlertmanagerConfig needs sendResolved: true and 0 < maxAlerts ({max_alerts}) <= the router's "
                    f"ingest.max_alerts ({limit}; above it is a 413, never retried)")
        r.check(amc["metadata"].get("namespace") == ALERTMANAGER_NAMESPACE,
                f"AlertmanagerConfig lives in the Alertmanager's namespace {ALERTMANAGER_NAMESPACE} "
                f"(OnNamespaceExceptForAlertmanagerNamespace leaves its route unscoped)",
                f"AlertmanagerConfig is in namespace {amc['metadata'].get('namespace')!r}, not the "
                f"Alertmanager's {ALERTMANAGER_NAMESPACE!r}: the operator would add a namespace matcher "
                f"and no MLOps alert would match")
        r.check(route.get("groupBy") == ["alertname", "experiment"],
                "AlertmanagerConfig groups by [alertname, experiment]",
                f"AlertmanagerConfig groupBy is {route.get('groupBy')}, expected [alertname, experiment]")
        am_matchers = route.get("matchers") or []
        sm = find(docs, "ServiceMonitor")
        pr = find(docs, "PrometheusRule")
        unlabelled = [ident(d) for d in sm + pr + [amc]
                      if (d["metadata"].get("labels") or {}).get(RELEASE_LABEL[0]) != RELEASE_LABEL[1]]
        r.check(not unlabelled, f"ServiceMonitor, PrometheusRule, AlertmanagerConfig carry {RELEASE_LABEL[0]}={RELEASE_LABEL[1]}",
                f"missing label {RELEASE_LABEL[0]}={RELEASE_LABEL[1]} (kube-prometheus-stack selectors): {unlabelled}")

    # --- which alerts reach the router
    rdoc = rules_doc()
    if am_matchers is not None:
        names_m = [mm for mm in am_matchers if mm.get("name") == "alertname"]
        routed = None
        if len(names_m) == 1 and names_m[0].get("matchType") in ("=", "=~"):
            routed = matcher_names(names_m[0].get("value", ""))
        if routed is None:
            r.fail(f"AlertmanagerConfig must route by one `alertname =~ \"A|B|...\"` matcher, has {am_matchers}")
        elif rdoc is None:
            r.skip(f"{RULES_COPY} absent: routed alert names not compared with the rules")
        else:
            rules = alert_rules(rdoc)
            want = sorted({x["alert"] for x in rules
                           if (x.get("labels") or {}).get("component") != SELF_ALERT_COMPONENT})
            selfs = sorted({x["alert"] for x in rules
                            if (x.get("labels") or {}).get("component") == SELF_ALERT_COMPONENT})
            want = sorted(set(want) | {SELF_TEST_ALERT})
            missing = sorted(set(want) - set(routed))
            extra = sorted(set(routed) - set(want))
            r.check(not missing and not extra,
                    f"AlertmanagerConfig routes exactly the {len(want) - 1} MLOps alerts of the rules "
                    f"and {SELF_TEST_ALERT} ({len(selfs)} router self-alerts excluded)",
                    "AlertmanagerConfig alertname matcher drifted from the rules: "
                    + (f"not routed: {missing} " if missing else "")
                    + (f"routed but not in the rules (or self-alerts): {extra}" if extra else ""))

    # --- the plain Alertmanager snippet says the same
    if AM_SNIPPET.exists():
        snip = yaml.safe_load(AM_SNIPPET.read_text(encoding="utf-8")) or {}
        sroutes = ((snip.get("route") or {}).get("routes") or [])
        srecv = {x["name"]: x for x in snip.get("receivers", []) or []}
        if len(sroutes) != 1:
            r.fail(f"{AM_SNIPPET}: expected one route")
        else:
            sr = sroutes[0]
            shooks = (srecv.get(sr.get("receiver")) or {}).get("webhook_configs") or []
            if len(shooks) != 1:
                r.fail(f"{AM_SNIPPET}: receiver {sr.get('receiver')!r} needs exactly one webhook_config")
            else:
                sh = shooks[0]
                check_url(str(AM_SNIPPET), sh.get("url", ""))
                diffs = []
                if am_hook is not None:
                    cred = ((am_hook.get("httpConfig") or {}).get("authorization") or {}).get("credentials") or {}
                    cfile = (((sh.get("http_config") or {}).get("authorization")) or {}).get("credentials_file", "")
                    if not cfile.endswith(f"/{cred.get('name')}/{cred.get('key')}"):
                        diffs.append(f"credentials_file {cfile!r} is not .../{cred.get('name')}/{cred.get('key')}")
                    if sh.get("max_alerts") != am_hook.get("maxAlerts"):
                        diffs.append(f"max_alerts {sh.get('max_alerts')} != maxAlerts {am_hook.get('maxAlerts')}")
                    if sh.get("send_resolved") is not True:
                        diffs.append("send_resolved must be true")
                if am_matchers is not None:
                    if sr.get("group_by") != (amcs[0]["spec"]["route"].get("groupBy") if amcs else None):
                        diffs.append(f"group_by {sr.get('group_by')} differs from the AlertmanagerConfig")
                    want_m = sorted((mm.get("name"), mm.get("matchType", "="), mm.get("value", "")) for mm in am_matchers)
                    got_m = sorted(filter(None, (parse_am_matcher(x) for x in sr.get("matchers") or [])))
                    if want_m != got_m:
                        diffs.append(f"matchers {got_m} differ from the AlertmanagerConfig's {want_m}")
                r.check(not diffs, f"{AM_SNIPPET} agrees with the AlertmanagerConfig (auth file, matchers, grouping, max_alerts)",
                        f"{AM_SNIPPET} drifted from the AlertmanagerConfig: " + "; ".join(diffs))

    # --- NetworkPolicy
    nps = find(docs, "NetworkPolicy", namespace=ns)
    np_ok, np_why = False, "no NetworkPolicy selects the router pod"
    for np in nps:
        psel = (np["spec"].get("podSelector") or {}).get("matchLabels") or {}
        if not all(tmpl_labels.get(k) == v for k, v in psel.items()):
            continue
        types = np["spec"].get("policyTypes") or []
        allowed = set()
        for rule in np["spec"].get("ingress") or []:
            ports = [port_no(p.get("port")) for p in rule.get("ports") or []]
            if lport not in ports:
                continue
            for peer in rule.get("from") or []:
                if "namespaceSelector" in peer and (peer["namespaceSelector"].get("matchLabels") or {}).get(
                        "kubernetes.io/metadata.name") not in (None, ns):
                    continue
                ps = peer.get("podSelector") or {}
                allowed |= {v for k, v in (ps.get("matchLabels") or {}).items() if k == "app.kubernetes.io/name"}
                for ex in ps.get("matchExpressions") or []:
                    if ex.get("key") == "app.kubernetes.io/name" and ex.get("operator") == "In":
                        allowed |= set(ex.get("values") or [])
        dns = any(53 in [p.get("port") for p in rule.get("ports") or []] for rule in np["spec"].get("egress") or [])
        np_ok = {"Ingress", "Egress"} <= set(types) and allowed == {"alertmanager", "prometheus"} and dns
        np_why = (f"NetworkPolicy {np['metadata']['name']}: policyTypes {types}, ingress to port {lport} "
                  f"from {sorted(allowed)} (want exactly alertmanager, prometheus), DNS egress {dns}")
    r.check(np_ok, f"NetworkPolicy: ingress on port {lport} only from alertmanager and prometheus pods; egress incl. DNS",
            np_why)

    # --- messages link to the dashboard only with grafana.url
    gurl = (cfg.get("grafana") or {}).get("url")
    r.check(bool(gurl) and urlsplit(str(gurl)).scheme in ("http", "https"),
            f"grafana.url {gurl} set: messages carry a dashboard link",
            "grafana.url is not set in the deployed config: chat messages and pages carry no dashboard link")

    # --- the PrometheusRule's links: absolute, on the Grafana the config links to
    if rdoc is not None:
        bad_links = []
        for x in alert_rules(rdoc):
            ann = x.get("annotations") or {}
            du, rb = str(ann.get("dashboard_url", "")), str(ann.get("runbook_url", ""))
            if du and not (gurl and du.startswith(str(gurl).rstrip("/") + "/d/")):
                bad_links.append(f"{x['alert']} dashboard_url {du}")
            if rb and not re.match(r"https?://", rb):
                bad_links.append(f"{x['alert']} runbook_url {rb}")
        r.check(not bad_links,
                f"PrometheusRule links: dashboard_url on grafana.url {gurl}, absolute runbook_url",
                "PrometheusRule links do not match the deployed config (set grafana_url in "
                "alerts/rulegen.yaml to grafana.url, then rulegen.py generate and "
                "check-deploy.sh --sync): " + "; ".join(bad_links[:5])
                + (f" (+{len(bad_links) - 5} more)" if len(bad_links) > 5 else ""))

    # --- NetworkPolicy egress: every host:port the config calls is allowed
    router_nps = [np for np in nps
                  if all(tmpl_labels.get(k) == v for k, v in
                         ((np["spec"].get("podSelector") or {}).get("matchLabels") or {}).items())
                  and "Egress" in (np["spec"].get("policyTypes") or [])]
    if not router_nps:
        r.skip("no egress NetworkPolicy selects the router pod: every destination is allowed")
    else:
        missing_egress, allowed_egress = [], []
        dests = called_destinations(cfg)
        if db_url:
            u = urlsplit(db_url)
            dests.append(("storage.postgres (the database URL)", db_url, (u.port or CNPG_PORT,)))
        for where, url, ports_needed in dests:
            u = urlsplit(url)
            host = u.hostname or ""
            for port in ports_needed:
                why = egress_gap(router_nps, ns, host, port)
                (missing_egress if why else allowed_egress).append(
                    f"{where} -> {host}:{port}" + (f" ({why})" if why else ""))
        r.check(not missing_egress,
                f"NetworkPolicy egress allows every destination the config calls: {'; '.join(allowed_egress)}",
                "NetworkPolicy egress blocks destinations the config calls (requests would time out "
                "into dead letters): " + "; ".join(missing_egress))

    # --- ServiceMonitor scrapes this Service's /metrics, with the job name the rules use
    sms = find(docs, "ServiceMonitor")
    if len(sms) != 1:
        r.fail(f"expected one ServiceMonitor, found {len(sms)}")
    else:
        sm = sms[0]
        ssel = (sm["spec"].get("selector") or {}).get("matchLabels") or {}
        svc_labels = svc["metadata"].get("labels", {}) or {}
        ep = (sm["spec"].get("endpoints") or [{}])[0]
        nsel = sm["spec"].get("namespaceSelector") or {}
        same_ns = sm["metadata"].get("namespace") == ns or ns in (nsel.get("matchNames") or []) or nsel.get("any")
        r.check(bool(ssel) and all(svc_labels.get(k) == v for k, v in ssel.items()) and same_ns
                and ep.get("port") in [p.get("name") for p in svc["spec"]["ports"]]
                and ep.get("path", "/metrics") == "/metrics",
                f"ServiceMonitor scrapes Service {svc['metadata']['name']} port {ep.get('port')} /metrics",
                f"ServiceMonitor must select Service {svc['metadata']['name']} ({ssel} vs {svc_labels}, "
                f"namespace ok: {bool(same_ns)}) on a named Service port with path /metrics ({ep})")
        if auth.get("protect_metrics"):
            r.check(bool(ep.get("authorization") or ep.get("basicAuth")),
                    "auth.protect_metrics: the ServiceMonitor scrapes with credentials",
                    "auth.protect_metrics is true but the ServiceMonitor endpoint has no authorization/basicAuth")
        job = svc_labels.get(sm["spec"]["jobLabel"]) if sm["spec"].get("jobLabel") else svc["metadata"]["name"]
        if rdoc is None:
            r.skip("no rules: router job label not compared")
        else:
            used = set()
            for x in alert_rules(rdoc):
                if (x.get("labels") or {}).get("component") == SELF_ALERT_COMPONENT:
                    used |= set(re.findall(r'job\s*=\s*"([^"]*)"', str(x.get("expr", ""))))
            r.check(used == {job} or not used,
                    f"router self-alerts select job=\"{job}\", the job the ServiceMonitor produces",
                    f"router self-alerts select job {sorted(used)}, but the ServiceMonitor yields job=\"{job}\"")

    # --- RBAC: only named Experiments, only get/patch, only what the config targets
    cluster = find(docs, "ClusterRole") + find(docs, "ClusterRoleBinding")
    r.check(not cluster, "RBAC: nothing cluster-wide", f"cluster-wide RBAC rendered: {[ident(d) for d in cluster]}")
    sa = pod.get("serviceAccountName", "default")
    granted, rb_problems = set(), []
    for rb in find(docs, "RoleBinding"):
        subj = [s for s in rb.get("subjects", []) or []
                if s.get("kind") == "ServiceAccount" and s.get("name") == sa and s.get("namespace") == ns]
        if not subj:
            continue
        rns = rb["metadata"].get("namespace")
        ref = rb.get("roleRef", {})
        roles = find(docs, "Role", ref.get("name"), rns) if ref.get("kind") == "Role" else []
        if not roles:
            rb_problems.append(f"{ident(rb)} binds {ref.get('kind')}/{ref.get('name')}, not a rendered Role in {rns}")
            continue
        for rule in roles[0].get("rules", []) or []:
            if rule.get("apiGroups") != ["mlops.seldon.io"] or rule.get("resources") != ["experiments"]:
                rb_problems.append(f"{ident(roles[0])} grants {rule.get('apiGroups')}/{rule.get('resources')}")
            if sorted(rule.get("verbs") or []) != ["get", "patch"]:
                rb_problems.append(f"{ident(roles[0])} verbs {rule.get('verbs')} (want exactly get, patch)")
            if not rule.get("resourceNames"):
                rb_problems.append(f"{ident(roles[0])} is not restricted by resourceNames")
            granted |= {(rns, n) for n in rule.get("resourceNames") or []}
    r.check(not rb_problems, f"RBAC: ServiceAccount {sa} may only get/patch named mlops.seldon.io experiments",
            "; ".join(rb_problems))
    targets = {(t.get("namespace"), t.get("name"))
               for t in (cfg.get("traffic_targets") or {}).values()
               if isinstance(t, dict) and t.get("kind") == "seldon_experiment"}
    if targets:
        source = "the config's traffic_targets of kind seldon_experiment"
    else:
        ex = load_docs(EXPERIMENT_EXAMPLE)
        targets = {(d["metadata"].get("namespace"), d["metadata"]["name"]) for d in ex if d.get("kind") == "Experiment"}
        source = f"{EXPERIMENT_EXAMPLE} (the config has no seldon_experiment traffic_targets yet)"
    fmt = lambda s: ", ".join(f"{a}/{b}" for a, b in sorted(s, key=str)) or "none"  # noqa: E731
    r.check(granted == targets,
            f"RBAC resourceNames {fmt(granted)} match {source}",
            f"RBAC resourceNames drifted from {source}: granted {fmt(granted)}, needed {fmt(targets)}"
            + (f"; missing {fmt(targets - granted)}" if targets - granted else "")
            + (f"; not needed {fmt(granted - targets)}" if granted - targets else ""))

    # --- dev: traffic shifts never touch real weights
    shifts = {n: a for n, a in (cfg.get("actions") or {}).items()
              if isinstance(a, dict) and a.get("type") == "traffic_shift"}
    if overlay == "dev":
        stray = []
        for k in env:
            m2 = re.fullmatch(ENV_PREFIX + r"ACTIONS__(.+)__DRY_RUN", k)
            # Like the router: `_` and `-` in an entry's name count as the same.
            norm = lambda n: n.lower().replace("-", "_")  # noqa: E731
            if m2 and norm(m2.group(1)) not in {norm(n) for n in (file_cfg.get("actions") or {})}:
                stray.append(k)
        if not shifts:
            r.skip("no traffic_shift action in the config yet: nothing to force into dry-run")
            r.check(not stray, "no dry-run variable names a missing action",
                    f"dry-run variables name actions that do not exist: {stray}")
        else:
            live = sorted(n for n, a in shifts.items() if a.get("dry_run") is not True)
            hint = ", ".join(f"{ENV_PREFIX}ACTIONS__{n.upper()}__DRY_RUN=true" for n in live)
            r.check(not live and not stray, f"all {len(shifts)} traffic_shift actions run dry",
                    (f"traffic_shift actions not in dry-run in dev: {live} (add {hint} to "
                     f"deploy/overlays/dev/deployment-dry-run.yaml) " if live else "")
                    + (f"dry-run variables for missing actions: {stray}" if stray else ""))
    elif shifts:
        dry = sorted(n for n, a in shifts.items() if a.get("dry_run") is True)
        r.note(f"traffic_shift actions: {sorted(shifts)}; in dry-run: {dry or 'none'}")
    return 1 if r.failed else 0


# --------------------------------------------------------------------------
# sources: copies under deploy/ and the other committed inputs


RULES_WRAPPER_HEADER = (
    "# COPY of {src} wrapped as a PrometheusRule: kustomize may not read files\n"
    "# outside deploy/. Refresh with `scripts/check-deploy.sh --sync`.\n"
)


def expected_rules_copy() -> bytes | None:
    if not RULES_SOURCE.exists():
        return None
    raw = RULES_SOURCE.read_bytes()
    doc = yaml.safe_load(raw) or {}
    if doc.get("kind") == "PrometheusRule":
        return raw
    if "groups" in doc:
        wrapped = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": "mlops-alert-rules", "namespace": "monitoring",
                         "labels": {RELEASE_LABEL[0]: RELEASE_LABEL[1]}},
            "spec": {"groups": doc["groups"]},
        }
        return (RULES_WRAPPER_HEADER.format(src=RULES_SOURCE)
                + yaml.safe_dump(wrapped, sort_keys=False, allow_unicode=True)).encode("utf-8")
    raise ValueError(f"{RULES_SOURCE} is neither a PrometheusRule nor a rule file with `groups:`")


DASHBOARDS_HEADER = """\
# Grafana dashboards from the repository's dashboards/*.json, as ConfigMaps the
# kube-prometheus-stack Grafana sidecar picks up (label grafana_dashboard: "1").
#
# kustomize may not read files outside deploy/, so the JSON files are copied
# next to this file. This whole file is GENERATED: run
#   scripts/check-deploy.sh --sync
# after adding or changing a dashboard; scripts/check-deploy.sh fails when the
# copies or this list drift from dashboards/*.json.
#
# disableNameSuffixHash: the sidecar loads every labelled ConfigMap, so a
# hash-suffixed copy left behind by an edit would show up as a duplicate.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
"""


def dashboard_sources() -> list[Path]:
    return sorted(DASHBOARDS_SOURCE.glob("*.json")) if DASHBOARDS_SOURCE.is_dir() else []


def expected_dashboards_kustomization(sources: list[Path]) -> str:
    if not sources:
        return DASHBOARDS_HEADER + "# No dashboards yet (dashboards/*.json does not exist).\nresources: []\n"
    lines = [DASHBOARDS_HEADER,
             "generatorOptions:\n  disableNameSuffixHash: true\n  labels:\n    grafana_dashboard: \"1\"\n",
             "configMapGenerator:\n"]
    for s in sources:
        name = re.sub(r"[^a-z0-9]+", "-", s.stem.lower()).strip("-")
        # ConfigMap keys allow only [-._a-zA-Z0-9]: name the key explicitly.
        key = re.sub(r"[^-._a-zA-Z0-9]", "-", s.name)
        lines.append(f"  - name: mlops-dashboard-{name}\n    namespace: monitoring\n"
                     f"    files:\n      - {json.dumps(key + '=' + s.name)}\n")
    return "".join(lines)


def cmd_sources() -> int:
    r = Report()
    # Alert rules copy
    try:
        want = expected_rules_copy()
    except ValueError as e:
        r.fail(str(e))
        want = b""
    if want is None:
        r.skip(f"{RULES_SOURCE} not written yet: {RULES_COPY} is not compared")
    elif want:
        have = RULES_COPY.read_bytes() if RULES_COPY.exists() else b""
        r.check(have == want, f"{RULES_COPY} is identical to {RULES_SOURCE}",
                f"{RULES_COPY} drifted from {RULES_SOURCE}: run scripts/check-deploy.sh --sync")

    # Dashboards
    srcs = dashboard_sources()
    copies = sorted(DASHBOARDS_COPY.glob("*.json"))
    kfile = DASHBOARDS_COPY / "kustomization.yaml"
    kust_ok = kfile.exists() and kfile.read_text(encoding="utf-8") == expected_dashboards_kustomization(srcs)
    if not srcs:
        r.skip("no dashboards yet (dashboards/*.json): nothing to package")
        r.check(not copies and kust_ok, f"{DASHBOARDS_COPY} holds no stale dashboard",
                f"{DASHBOARDS_COPY} has copies {[c.name for c in copies]} or a kustomization.yaml "
                f"without a source in dashboards/: run scripts/check-deploy.sh --sync")
    else:
        bad = []
        for s in srcs:
            cp = DASHBOARDS_COPY / s.name
            if not cp.exists() or cp.read_bytes() != s.read_bytes():
                bad.append(f"{cp} differs from {s}")
            try:
                json.loads(s.read_text(encoding="utf-8"))
            except ValueError as e:
                bad.append(f"{s} is not JSON: {e}")
            if s.stat().st_size > 900_000:
                bad.append(f"{s} is too big for one ConfigMap (1 MiB limit)")
        stale = sorted({c.name for c in copies} - {s.name for s in srcs})
        if stale:
            bad.append(f"stale copies {stale}")
        if not kust_ok:
            bad.append(f"{kfile} does not list exactly dashboards/*.json")
        r.check(not bad, f"{len(srcs)} dashboards packaged as ConfigMaps, copies identical to dashboards/",
                "; ".join(bad) + ": run scripts/check-deploy.sh --sync")

    # Experiment example: default is one of the candidates
    ex = [d for d in load_docs(EXPERIMENT_EXAMPLE) if d.get("kind") == "Experiment"]
    if len(ex) != 1:
        r.fail(f"{EXPERIMENT_EXAMPLE} must hold one Experiment")
    else:
        spec = ex[0].get("spec", {})
        names = [c.get("name") for c in spec.get("candidates", [])]
        r.check(spec.get("default") in names and sum(c.get("weight", 0) for c in spec.get("candidates", [])) > 0,
                f"{EXPERIMENT_EXAMPLE}: default {spec.get('default')} is a candidate of {names}, weights sum > 0",
                f"{EXPERIMENT_EXAMPLE}: default {spec.get('default')!r} must be one of the candidates {names}")

    # Secret example: the token Alertmanager sends is one the router accepts
    keys = secret_keys(secret_example())
    tokens = [t.strip() for t in keys.get("bearer_tokens", "").splitlines() if t.strip()]
    r.check(keys.get("alertmanager_token", "").strip() in tokens,
            f"{SECRET_EXAMPLE}: alertmanager_token is one of the bearer_tokens",
            f"{SECRET_EXAMPLE}: alertmanager_token must be one of the lines of bearer_tokens")

    # Dockerfile: the contract the manifests rely on
    if not DOCKERFILE.exists():
        r.fail(f"{DOCKERFILE} missing")
    else:
        text = DOCKERFILE.read_text(encoding="utf-8")
        stages = re.findall(r"(?im)^FROM\s+(\S+)", text)
        unpinned = [s for s in stages if not re.search(r"@sha256:[0-9a-f]{64}$", s)]
        final = re.sub(r"@sha256:[0-9a-f]{64}$", "", stages[-1]) if stages else ""
        want_lines = {
            'ENTRYPOINT ["/mlops-alert-router"]': r'(?m)^ENTRYPOINT \["/mlops-alert-router"\]\s*$',
            'CMD ["serve","--config","/etc/mlops-alert-router/config.yaml"]':
                r'(?m)^CMD \[\s*"serve",\s*"--config",\s*"/etc/mlops-alert-router/config\.yaml"\s*\]\s*$',
        }
        missing = [k for k, rx in want_lines.items() if not re.search(rx, text)]
        users = re.findall(r"(?im)^USER\s+(\S+)", text)
        problems = missing[:]
        if len(stages) < 2:
            problems.append("not multi-stage")
        if unpinned:
            problems.append(f"base images not pinned by digest (@sha256:...): {unpinned}")
        if not re.search(r"(?m)^\s*(ENV|ARG)\b.*CARGO_PROFILE_RELEASE_DEBUG=(0|false|none)\b", text):
            problems.append("the build stage must set CARGO_PROFILE_RELEASE_DEBUG=0 (no debuginfo in the image)")
        if not (final.startswith("gcr.io/distroless/") and final.endswith(":nonroot") or final == "scratch"):
            problems.append(f"final image {final!r} is not distroless :nonroot or scratch")
        if not users or users[-1].split(":")[0] not in ("nonroot", "65532"):
            problems.append("last USER is not nonroot/65532 (the Deployment runs as 65532)")
        r.check(not problems, "Dockerfile: multi-stage, bases pinned by digest, no debuginfo, distroless nonroot, "
                "ENTRYPOINT/CMD as the Deployment expects",
                "Dockerfile: " + "; ".join(problems))
    if DOCKERIGNORE.exists():
        lines = [x.strip() for x in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
        r.check("*" in lines or "target" in lines or "/target" in lines or "target/" in lines,
                ".dockerignore keeps target/ out of the build context",
                ".dockerignore must exclude target/ (gigabytes of build output)")
    else:
        r.fail(".dockerignore missing")
    return 1 if r.failed else 0


def cmd_sync() -> int:
    want = expected_rules_copy()
    if want is not None:
        RULES_COPY.write_bytes(want)
        print(f"wrote {RULES_COPY} from {RULES_SOURCE}")
    srcs = dashboard_sources()
    DASHBOARDS_COPY.mkdir(parents=True, exist_ok=True)
    for c in DASHBOARDS_COPY.glob("*.json"):
        if c.name not in {s.name for s in srcs}:
            c.unlink()
            print(f"removed stale {c}")
    for s in srcs:
        shutil.copyfile(s, DASHBOARDS_COPY / s.name)
        print(f"copied {s} -> {DASHBOARDS_COPY / s.name}")
    (DASHBOARDS_COPY / "kustomization.yaml").write_text(expected_dashboards_kustomization(srcs), encoding="utf-8")
    print(f"wrote {DASHBOARDS_COPY / 'kustomization.yaml'} ({len(srcs)} dashboards)")
    return 0


# --------------------------------------------------------------------------
# docs: the shell steps of the deployment docs, run or inspected offline


def sh_blocks(path: Path, section: str | None) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if section is not None:
        start = text.find(section + "\n")
        if start < 0:
            raise LookupError(f"{path}: no section {section!r}")
        end = text.find("\n## ", start + len(section))
        text = text[start:end if end >= 0 else None]
    return re.findall(r"(?ms)^```(?:sh|bash|console)\n(.*?)^```", text)


def sh_commands(block: str) -> list[str]:
    """One string per command: continuation lines joined, comment lines dropped."""
    out, cur = [], []
    for line in block.splitlines():
        s = line.rstrip()
        if not cur and s.lstrip().startswith("#"):
            continue
        if s.endswith("\\"):
            cur.append(s[:-1].strip())
            continue
        cur.append(s.strip())
        cmd = " ".join(cur).strip()
        if cmd:
            out.append(cmd)
        cur = []
    if cur:
        out.append(" ".join(cur).strip())
    return out


def run_sh(script: str, cwd: Path, stdin: bytes = b"") -> tuple[int, str]:
    import subprocess
    p = subprocess.run(["bash", "-c", script], cwd=cwd, input=stdin, capture_output=True, timeout=60)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def cmd_docs(router_bin: str | None) -> int:
    import tempfile
    r = Report()
    secret_recipes, verifications = 0, 0
    for doc, section in DEPLOY_DOCS:
        for block in sh_blocks(doc, section):
            cmds = sh_commands(block)
            # 1. The Secret recipe: run what it does before `kubectl create secret`.
            i = next((n for n, c in enumerate(cmds) if "create secret generic mlops-alert-router-auth" in c), None)
            if i is not None:
                secret_recipes += 1
                with tempfile.TemporaryDirectory() as d:
                    rc, out = run_sh("set -e\n" + "\n".join(cmds[:i]), Path(d))
                    tok = Path(d, "alertmanager_token")
                    if rc != 0 or not tok.exists():
                        r.fail(f"{doc}: the Secret recipe failed before kubectl (exit {rc}): {out.strip()[:200]}")
                    else:
                        raw = tok.read_bytes()
                        lines = [x.strip() for x in Path(d, "bearer_tokens").read_text().splitlines()] \
                            if Path(d, "bearer_tokens").exists() else []
                        r.check(bool(raw) and raw == raw.strip() and raw.decode() in lines,
                                f"{doc}: the Secret recipe writes alertmanager_token without surrounding "
                                f"whitespace, as one of the bearer_tokens lines",
                                f"{doc}: the Secret recipe writes alertmanager_token as {len(raw)} bytes ending "
                                f"{raw[-1:]!r}: the operator copies it verbatim into the Authorization header "
                                f"(a trailing newline makes Alertmanager's request invalid)")
            # 2. The token verification: reads the Secret without $(...), and works.
            for c in cmds:
                if "{.data.alertmanager_token}" not in c or "$(" in c:
                    continue
                verifications += 1
                results = {}
                for label, value in (("good", b"tok-123"), ("trailing newline", b"tok-123\n"),
                                     ("trailing space", b"tok-123 ")):
                    b64 = base64.b64encode(value).decode()
                    stub = f"kubectl() {{ printf %s {b64}; }}\n"
                    with tempfile.TemporaryDirectory() as d:
                        results[label] = run_sh(stub + c, Path(d))
                good_rc = results["good"][0]
                bad_ok = [k for k, (rc, _) in results.items() if k != "good" and rc == 0]
                r.check(good_rc == 0 and not bad_ok,
                        f"{doc}: the token check accepts a clean token and rejects a trailing newline or space",
                        f"{doc}: the token check `{c[:80]}...` "
                        + (f"rejects a clean token ({results['good'][1].strip()[:120]}) " if good_rc else "")
                        + (f"accepts a token with {', '.join(bad_ok)}" if bad_ok else ""))
            # 3. "Check that it works" changes nothing.
            for c in cmds:
                if "curl" in c and "/api/v1/alerts" in c and re.search(r"(--data|-d\s|-X\s*POST|-F\s)", c):
                    r.check("dry_run=true" in c or str(SELF_TEST_PAYLOAD) in c,
                            f"{doc}: `curl ... /api/v1/alerts` posts a dry run or the self-test",
                            f"{doc}: `{c[:140]}` posts an alert for real: use ?dry_run=true or {SELF_TEST_PAYLOAD}")
                if "curl" in c and "/replay" in c:
                    r.check("dry_run=true" in c, f"{doc}: a replay is a dry run",
                            f"{doc}: `{c[:140]}` replays for real: add ?dry_run=true")
                if re.search(r"\bamtool\b.*\balert add\b", c):
                    r.check(re.search(rf"alert add\s+(alertname=)?{SELF_TEST_ALERT}\b", c) is not None,
                            f"{doc}: `amtool alert add` adds only {SELF_TEST_ALERT}",
                            f"{doc}: `{c[:140]}` adds an alert other than {SELF_TEST_ALERT}")
    # 5. The matcher strategy: never `None` (it unscopes every team's AlertmanagerConfig).
    texts = [d for d, _ in DEPLOY_DOCS] + sorted(f for f in Path("deploy").rglob("*.yaml")
                                                 if CRDS_DIR not in f.parents)
    unscoping = []
    for f in texts:
        s = f.read_text(encoding="utf-8")
        for m in re.finditer(r"alertmanagerConfigMatcherStrategy(?:\.type)?\W{0,20}(?:type\W{0,5})?(\w+)", s):
            if m.group(1) != "OnNamespaceExceptForAlertmanagerNamespace":
                unscoping.append(f"{f}: alertmanagerConfigMatcherStrategy {m.group(1)}")
    r.check(not unscoping,
            "the docs and manifests ask for alertmanagerConfigMatcherStrategy "
            "OnNamespaceExceptForAlertmanagerNamespace (never None)",
            "alertmanagerConfigMatcherStrategy must be OnNamespaceExceptForAlertmanagerNamespace "
            "(None removes every team's namespace scoping): " + "; ".join(unscoping))

    r.check(secret_recipes >= 1, f"{secret_recipes} Secret recipes run",
            f"no Secret recipe (`kubectl -n monitoring create secret generic mlops-alert-router-auth`) in "
            f"{', '.join(str(d) for d, _ in DEPLOY_DOCS)}")
    r.check(verifications >= secret_recipes,
            f"{verifications} token checks read the Secret's bytes without $(...)",
            f"{verifications} token check(s) for {secret_recipes} Secret recipes: each doc with a recipe must "
            f"show how to check `.data.alertmanager_token` byte for byte (not through $(...))")

    # 4. The self-test routes to log-only actions in the deployed config.
    payload = json.loads(SELF_TEST_PAYLOAD.read_text(encoding="utf-8"))
    labels = payload["alerts"][0]["labels"]
    r.check(labels.get("alertname") == SELF_TEST_ALERT, f"{SELF_TEST_PAYLOAD} is alert {SELF_TEST_ALERT}",
            f"{SELF_TEST_PAYLOAD} must carry alertname={SELF_TEST_ALERT}")
    if not router_bin:
        r.skip("no router binary: the self-test's route not resolved")
        return 1 if r.failed else 0
    import subprocess
    cfg_path = Path("deploy/base/config.yaml")
    # Secret files do not exist here: drop auth (routing does not depend on it).
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    cfg.pop("auth", None)
    with tempfile.TemporaryDirectory() as d:
        f = Path(d, "config.yaml")
        f.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        # Labels an operator could add must not make it page or shift traffic either.
        hostile = dict(labels, severity="critical", model_name="enhanced-predictor", component="infrastructure")
        for lab in (labels, hostile):
            p = subprocess.run([router_bin, "routes", "test", "--config", str(f)]
                               + [f"{k}={v}" for k, v in lab.items()], capture_output=True, text=True,
                               env={"PATH": os.environ.get("PATH", ""), "HOME": d})
            if p.returncode != 0:
                r.fail(f"routes test for the self-test failed: {p.stderr.strip()[:300]}")
                continue
            acts = [a for a in p.stdout.strip().split(",") if a]
            actions = cfg.get("actions") or {}
            not_log = [a for a in acts if (actions.get(a) or {}).get("type", "log" if a == "log" else None) != "log"]
            r.check(bool(acts) and not not_log,
                    f"{cfg_path}: {SELF_TEST_ALERT} ({', '.join(f'{k}={v}' for k, v in sorted(lab.items()))}) "
                    f"routes to log-only actions {acts}",
                    f"{cfg_path}: {SELF_TEST_ALERT} routes to {acts}; not log-only: {not_log}")
    return 1 if r.failed else 0


# --------------------------------------------------------------------------
# mutate: negative control for the schemas


def cmd_mutate(src: Path, dst: Path, setting: str | None = None) -> int:
    doc = load_docs(src)[0]
    if setting is None:
        doc.setdefault("spec", {})["unknownFieldForNegativeControl"] = True
    else:
        path, value = setting.split("=", 1)
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        node = doc
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = json.loads(value)
    dst.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return 0


# --------------------------------------------------------------------------
# amconfig: the plain snippet as a whole alertmanager.yml, and what should route where


def cmd_amconfig(out: Path) -> int:
    snip = yaml.safe_load(AM_SNIPPET.read_text(encoding="utf-8")) or {}
    routes = (snip.get("route") or {}).get("routes") or []
    cfg = {
        "route": {"receiver": "default-for-amtool", "routes": routes},
        "receivers": [{"name": "default-for-amtool"}] + list(snip.get("receivers") or []),
    }
    out.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    rdoc = rules_doc()
    if rdoc is None:
        return 0
    router = routes[0].get("receiver") if routes else "?"
    for rule in alert_rules(rdoc):
        labels = rule.get("labels") or {}
        want = "default-for-amtool" if labels.get("component") == SELF_ALERT_COMPONENT else router
        print(f"{rule['alert']}\t{want}")
    print(f"{SELF_TEST_ALERT}\t{router}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    try:
        if cmd == "split":
            return cmd_split(Path(args[0]), Path(args[1]), Path(args[2]))
        if cmd == "crd-schemas":
            return cmd_crd_schemas(Path(args[0]))
        if cmd == "runtime":
            return cmd_runtime(Path(args[0]), Path(args[1]))
        if cmd == "consistency":
            return cmd_consistency(args[0], Path(args[1]))
        if cmd == "sources":
            return cmd_sources()
        if cmd == "sync":
            return cmd_sync()
        if cmd == "docs":
            return cmd_docs(args[0] if args else None)
        if cmd == "mutate":
            return cmd_mutate(Path(args[0]), Path(args[1]), args[2] if len(args) > 2 else None)
        if cmd == "amconfig":
            return cmd_amconfig(Path(args[0]))
    except (LookupError, KeyError, ValueError, OSError, yaml.YAMLError) as e:
        print(f"FAIL - {cmd}: {type(e).__name__}: {e}")
        return 1
    print(f"unknown subcommand {cmd!r}\n{__doc__}")
    return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main(sys.argv))
