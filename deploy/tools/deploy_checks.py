#!/usr/bin/env python3
"""Consistency checks behind scripts/check-deploy.sh (run that, not this).

Subcommands (all paths relative to the repository root, which is the cwd):

  split RENDERED OUTDIR        split `kubectl kustomize` output into built-in
                               kinds (OUTDIR/builtin.yaml) and one file per custom
                               resource; prints "file<TAB>kind<TAB>name<TAB>schema"
  runtime RENDERED OUTDIR      what the router pod would read: the ConfigMap'd
                               config file, the Secret files (example values) and
                               the container's literal env; writes OUTDIR/config.yaml,
                               OUTDIR/secrets/*, OUTDIR/env (NUL-separated KEY=VALUE)
  consistency OVERLAY RENDERED cross-object checks of one rendered overlay
  sources                      copies under deploy/ vs their sources (alert rules,
                               dashboards), the Experiment example, the Dockerfile
  sync                         rewrite those copies from their sources
  mutate IN OUT                write IN with one unknown spec field added (negative control)
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
# kube-prometheus-stack release: its Prometheus selects these by label.
RELEASE_LABEL = ("release", "prometheus-stack")

CUSTOM_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): "deploy/schemas/prometheusrule.schema.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "deploy/schemas/servicemonitor.schema.json",
    ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): "deploy/schemas/alertmanagerconfig.schema.json",
    ("mlops.seldon.io/v1alpha1", "Experiment"): "deploy/schemas/experiment.schema.json",
}
CUSTOM_GROUPS = {"monitoring.coreos.com", "mlops.seldon.io"}

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
# split


def cmd_split(rendered: Path, outdir: Path) -> int:
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
            schema = CUSTOM_SCHEMAS.get((api, d.get("kind")), "-")
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
    example = secret_keys(secret_example())
    env, _ = literal_env(c)
    for mount_path, secret_name, svol in secret_mounts(deploy, c):
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
        print(f"note: Secret {secret_name} mounted at {mount_path} mapped to the values of {SECRET_EXAMPLE}")
    (outdir / "config.yaml").write_text(text, encoding="utf-8")
    (outdir / "env").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))
    print(f"note: config = ConfigMap {cm_name} key {key} (mounted at {cfg_path}); "
          f"env: {', '.join(sorted(env)) or 'none'}")
    return 0


# --------------------------------------------------------------------------
# consistency


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

    # --- Deployment shape (one replica, SQLite on a PVC)
    r.check(deploy["spec"].get("replicas") == 1 and deploy["spec"].get("strategy", {}).get("type") == "Recreate",
            "Deployment: 1 replica, strategy Recreate (SQLite on a RWO volume)",
            f"Deployment must have replicas 1 and strategy Recreate, has replicas "
            f"{deploy['spec'].get('replicas')} / {deploy['spec'].get('strategy')}")

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

    # --- storage.path on a writable PVC
    spath = str(storage.get("path", ""))
    m, vol, _ = volume_for_path(deploy, c, spath) if spath.startswith("/") else (None, None, None)
    pvc_name = ((vol or {}).get("persistentVolumeClaim") or {}).get("claimName")
    pvcs = find(docs, "PersistentVolumeClaim", pvc_name, ns) if pvc_name else []
    r.check(bool(pvcs) and not m.get("readOnly") and "ReadWriteOnce" in pvcs[0]["spec"].get("accessModes", []),
            f"storage.path {spath} is on PVC {pvc_name} (ReadWriteOnce, mounted writable)",
            f"storage.path {spath!r} must be an absolute path on a writable mount of a rendered "
            f"ReadWriteOnce PVC (mount: {m and m['mountPath']}, claim: {pvc_name})")

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
            missing = sorted(set(want) - set(routed))
            extra = sorted(set(routed) - set(want))
            r.check(not missing and not extra,
                    f"AlertmanagerConfig routes exactly the {len(want)} MLOps alerts of the rules "
                    f"({len(selfs)} router self-alerts excluded)",
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
        final = stages[-1] if stages else ""
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
        if not (final.startswith("gcr.io/distroless/") and final.endswith(":nonroot") or final == "scratch"):
            problems.append(f"final image {final!r} is not distroless :nonroot or scratch")
        if not users or users[-1].split(":")[0] not in ("nonroot", "65532"):
            problems.append("last USER is not nonroot/65532 (the Deployment runs as 65532)")
        r.check(not problems, "Dockerfile: multi-stage, distroless nonroot, ENTRYPOINT/CMD as the Deployment expects",
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
# mutate: negative control for the schemas


def cmd_mutate(src: Path, dst: Path) -> int:
    doc = load_docs(src)[0]
    doc.setdefault("spec", {})["unknownFieldForNegativeControl"] = True
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
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    try:
        if cmd == "split":
            return cmd_split(Path(args[0]), Path(args[1]))
        if cmd == "runtime":
            return cmd_runtime(Path(args[0]), Path(args[1]))
        if cmd == "consistency":
            return cmd_consistency(args[0], Path(args[1]))
        if cmd == "sources":
            return cmd_sources()
        if cmd == "sync":
            return cmd_sync()
        if cmd == "mutate":
            return cmd_mutate(Path(args[0]), Path(args[1]))
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
