#!/usr/bin/env python3
"""Storm benchmark: an alert storm end to end, on loopback only.

N notifications of 10 alerts each (default 1,000: 10,000 alerts), one
experiment, distinct fingerprints, go through the release router: durable
ingest, routing, enrichment from a real Prometheus (started here on a free
port, scraping a few series this script serves) and one chat action per
notification, delivered to a local stand-in that counts what it receives.

Measured:
  ready       time from spawning the router until /readyz answers 200
  idle RSS    the router's RSS one second after it is ready
  storm       time from the first request until every notification is acted
              on (the stand-in has the deliveries and no notification is pending)
  queries     queries Prometheus answered during the storm (its own
              prometheus_http_requests_total) vs distinct rendered queries
  peak RSS    the router's VmHWM at the end

Use scripts/bench/storm.sh (it builds the release binary first). Options:
  --action slack|teams|mattermost|discord|google_chat|webhook
                                 the chat action type (default slack)
  --rate-limit default|off       the action's rate limit: the platform's
                                 default, or lifted (default off)
  --notifications N              notifications of 10 alerts (default 1000)
  --alerts-per-notification K    (default 10)
  --timeout S                    give up waiting after S seconds (default 120)
  --router PATH                  the router binary (default target/release/mlops-alert-router)
  --extra-config FILE            YAML deep-merged into the generated config, e.g.
                                 `actions: {chat: {...}}` or `worker: {concurrency: 16}`
                                 (needs PyYAML)
  --digest default|on|off        the chat action's digest (`digest.enabled`;
                                 default: the type's default, on for chat)

The chat stand-in answers 429 (Retry-After: 1) to a request over the
platform's documented rate (a token bucket of the action's default rate and
burst, one request of slack for timing jitter): "429s" counts requests the
router sent too fast. It reads each message: a digest ("ALERT STORM: N
notifications") represents N notifications, any other message one; "all
represented" is the time until the messages represent every notification.
After the storm every notification's chat run is read back from the API:
exactly one succeeded run each, sent alone or naming a digest that arrived.
  --json                         also print the figures as one JSON line
Exit status: 0 when everything was acted on within the timeout, 1 otherwise.
"""

import argparse
import re
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

EXPERIMENT = "financial-ab-test-experiment"
VARIANTS = ["baseline-predictor", "enhanced-predictor"]
ENRICHMENTS = {
    "accuracy": 'max by (model_name) (ab_test_model_accuracy{experiment="{{ labels.experiment }}"})',
    "traffic_share": (
        '100 * sum by (model_name) (rate(ab_test_requests_total{experiment="{{ labels.experiment }}"}[5m]))'
        ' / ignoring (model_name) group_left'
        ' sum(rate(ab_test_requests_total{experiment="{{ labels.experiment }}"}[5m]))'
    ),
    "p95_latency": (
        "histogram_quantile(0.95, sum by (le, model_name)"
        ' (rate(ab_test_response_time_seconds_bucket{experiment="{{ labels.experiment }}"}[5m])))'
    ),
    "error_rate": (
        '100 * sum by (model_name) (rate(ab_test_requests_total{experiment="{{ labels.experiment }}", status="error"}[5m]))'
        ' / sum by (model_name) (rate(ab_test_requests_total{experiment="{{ labels.experiment }}"}[5m]))'
    ),
    "net_business_value": (
        'max by (model_name) (ab_test_business_impact{experiment="{{ labels.experiment }}",'
        ' metric_type="net_business_value"})'
    ),
}
ACTION_TYPES = {
    "slack": "slack",
    "teams": "msteams",
    "mattermost": "mattermost",
    "discord": "discord",
    "google_chat": "google_chat",
    "webhook": "webhook",
}
# The router's default rate per type (per second, burst): the stand-in holds it.
DEFAULT_RATES = {
    "slack": (1.0, 3),
    "teams": (1.0, 3),
    "mattermost": (5.0, 10),
    "discord": (2.5, 5),
    "google_chat": (1.0, 1),
    "webhook": (10.0, 10),
}
DIGEST_TITLE = re.compile(r"(?:ALERT|RESOLVED) STORM(?: \(continued\))?: (\d+) notifications?")
DIGEST_ID = re.compile(r"digest (chat\\*#\d+)")  # Markdown platforms escape the #


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(f"[storm {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # http.server writes the head and the body of an answer separately:
        # with Nagle on, the body waits for the client's delayed ACK (40 ms),
        # and the router's sends to one destination, which go one at a time,
        # would measure that instead of the router.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass


def serve(handler, port):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- the series Prometheus scrapes --------------------------------------------
started = time.time()


class Exporter(Quiet):
    def do_GET(self):
        t = time.time() - started
        lines = []
        for v, acc, err in ((VARIANTS[0], 0.82, 0.01), (VARIANTS[1], 0.48, 0.04)):
            lbl = f'experiment="{EXPERIMENT}",model_name="{v}"'
            total = int(100 * t)
            lines.append(f"ab_test_model_accuracy{{{lbl}}} {acc}")
            lines.append(f'ab_test_requests_total{{{lbl},status="success"}} {int(total * (1 - err))}')
            lines.append(f'ab_test_requests_total{{{lbl},status="error"}} {int(total * err)}')
            for le, share in (("0.1", 0.5), ("0.25", 0.9), ("0.5", 0.97), ("+Inf", 1.0)):
                lines.append(f'ab_test_response_time_seconds_bucket{{{lbl},le="{le}"}} {int(total * share)}')
            lines.append(f'ab_test_business_impact{{{lbl},metric_type="net_business_value"}} {1000 if v == VARIANTS[0] else -250}')
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# --- the chat stand-in ----------------------------------------------------------
class Deliveries:
    def __init__(self):
        self.lock = threading.Lock()
        self.count = 0
        self.first = None
        self.last = None
        self.bytes = 0
        self.represented = 0
        self.digests = []  # (digest id, notifications)
        self.too_fast = 0
        self.rate = None  # (per second, burst) enforced, or None
        self.tokens = 0.0
        self.refilled = None
        self.represented_at = []  # (monotonic time, represented so far)

    def admit(self, now):
        """Token bucket of the platform's rate, one request of slack for jitter."""
        if self.rate is None:
            return True
        per_second, burst = self.rate
        capacity = burst + 1
        if self.refilled is None:
            self.tokens, self.refilled = capacity, now
        self.tokens = min(capacity, self.tokens + (now - self.refilled) * per_second)
        self.refilled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


deliveries = Deliveries()


class ChatStandIn(Quiet):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        now = time.monotonic()
        text = body.decode("utf-8", "replace")
        with deliveries.lock:
            if not deliveries.admit(now):
                deliveries.too_fast += 1
                self.send_response(429)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            deliveries.count += 1
            deliveries.bytes += len(body)
            deliveries.first = deliveries.first or now
            deliveries.last = now
            title = DIGEST_TITLE.search(text)
            if title:
                n = int(title.group(1))
                ident = DIGEST_ID.search(text)
                deliveries.digests.append((ident.group(1).replace("\\", "") if ident else None, n))
                deliveries.represented += n
            else:
                deliveries.represented += 1
            deliveries.represented_at.append((now, deliveries.represented))
        answer = b"ok"  # what a Slack incoming webhook answers; others take any 2xx
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


# --- payloads -------------------------------------------------------------------
def fingerprint(labels):
    """Alertmanager's label fingerprint: FNV-1a 64 over sorted name/value pairs."""
    h = 0xCBF29CE484222325
    for name in sorted(labels):
        for part in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
            for b in part:
                h ^= b
                h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def notification(i, k, run):
    alerts = []
    for j in range(k):
        labels = {
            "alertname": "ModelAccuracyDegraded",
            "experiment": EXPERIMENT,
            "model_name": VARIANTS[j % 2],
            "severity": "critical",
            "pod": f"storm-{run}-{i}-{j}",
        }
        alerts.append({
            "status": "firing",
            "labels": labels,
            "annotations": {
                "summary": f"Model accuracy degraded for {labels['model_name']}",
                "description": f"Pod {labels['pod']}: accuracy below the 55% threshold",
            },
            "startsAt": "2026-11-27T01:03:18.255Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=ab_test_model_accuracy+%3C+55",
            "fingerprint": fingerprint(labels),
        })
    return json.dumps({
        "receiver": "mlops-alert-router",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": "ModelAccuracyDegraded", "pod": f"storm-{run}-{i}"},
        "commonLabels": {"alertname": "ModelAccuracyDegraded", "experiment": EXPERIMENT},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="ModelAccuracyDegraded", pod="storm-{run}-{i}"}}',
        "truncatedAlerts": 0,
    }).encode()


def post_all(port, bodies, connections):
    """POSTs every body (keep-alive connections in parallel); returns failures."""
    failures = []
    lock = threading.Lock()
    queue = list(enumerate(bodies))

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not queue:
                    break
                i, body = queue.pop()
            try:
                conn.request("POST", "/api/v1/alerts", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                text = resp.read()
                if resp.status != 200:
                    with lock:
                        failures.append((i, resp.status, text[:200]))
            except OSError as e:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                with lock:
                    failures.append((i, "error", str(e)))
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


# --- helpers --------------------------------------------------------------------
def check_records(port, n):
    """Every notification's chat run, read back: one succeeded run each, sent
    alone or through a digest the stand-in received."""
    ids, before = [], None
    while True:
        q = "limit=500" + (f"&before={before}" if before else "")
        _, body = get(f"http://127.0.0.1:{port}/api/v1/notifications?{q}")
        page = json.loads(body)
        ids += [row["id"] for row in page["notifications"]]
        before = page.get("next_before")
        if not before:
            break
    with deliveries.lock:
        received = {d for d, _ in deliveries.digests}
    out = {"notifications": len(ids), "succeeded_once": 0, "lost": 0, "duplicated": 0,
           "through_digest": 0, "unknown_digest": 0}
    for i in ids:
        _, body = get(f"http://127.0.0.1:{port}/api/v1/notifications/{i}")
        runs = [r for r in json.loads(body)["action_runs"] if r["action"] == "chat"]
        ok = [r for r in runs if r["status"] == "succeeded"]
        if not ok:
            out["lost"] += 1
        elif len(ok) > 1:
            out["duplicated"] += 1
        else:
            out["succeeded_once"] += 1
            digest = (ok[0].get("result") or {}).get("digest")
            if digest:
                out["through_digest"] += 1
                if digest.get("id") not in received:
                    out["unknown_digest"] += 1
    out["lost"] += max(0, n - len(ids))
    return out



def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def prom_query_count(port):
    """Queries answered by Prometheus' instant-query endpoint so far."""
    _, text = get(f"http://127.0.0.1:{port}/metrics")
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def router_config(args, prom_port, chat_port):
    """The router's config (written as JSON, which YAML reads as is)."""
    chat = {"type": ACTION_TYPES[args.action], "url": f"http://127.0.0.1:{chat_port}/{args.action}"}
    if args.rate_limit == "off":
        chat["rate_limit"] = {"per_second": 1000000, "burst": 1000000}
    if args.digest != "default":
        chat["digest"] = {"enabled": args.digest == "on"}
    config = {
        "prometheus": {"url": f"http://127.0.0.1:{prom_port}", "timeout": "5s", "cache_ttl": "15s"},
        "enrichments": {name: {"query": q, "by": "model_name"} for name, q in ENRICHMENTS.items()},
        "actions": {"chat": chat},
        "route": {"actions": ["chat"], "enrich": list(ENRICHMENTS)},
    }
    if args.extra_config:
        try:
            import yaml  # only needed to read --extra-config
        except ImportError:
            sys.exit("missing: PyYAML, needed to read --extra-config (Debian: apt-get install -y python3-yaml)")
        with open(args.extra_config) as f:
            merge(config, yaml.safe_load(f) or {})
    return json.dumps(config, indent=2) + "\n"


def merge(into, extra):
    """Deep merge: mappings are merged key by key, anything else replaced."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--action", choices=sorted(ACTION_TYPES), default="slack")
    p.add_argument("--rate-limit", choices=["default", "off"], default="off")
    p.add_argument("--notifications", type=int, default=1000)
    p.add_argument("--alerts-per-notification", type=int, default=10)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--router", default="target/release/mlops-alert-router")
    p.add_argument("--extra-config")
    p.add_argument("--digest", choices=["default", "on", "off"], default="default")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    for tool in ("prometheus",):
        if not shutil.which(tool):
            sys.exit(f"missing: {tool} (Debian: apt-get install -y prometheus)")
    router_bin = os.path.abspath(args.router)
    if not os.access(router_bin, os.X_OK):
        sys.exit(f"missing: {router_bin} (cargo build --release --bin mlops-alert-router)")

    work = tempfile.mkdtemp(prefix="storm.")
    procs = []

    def cleanup():
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if os.environ.get("BENCH_KEEP") == "1":
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    try:
        return run(args, router_bin, work, procs)
    finally:
        cleanup()


def run(args, router_bin, work, procs):
    # 1. The series, and a real Prometheus scraping them every second.
    exporter_port, prom_port, chat_port, router_port = free_port(), free_port(), free_port(), free_port()
    serve(Exporter, exporter_port)
    serve(ChatStandIn, chat_port)
    if args.rate_limit == "default":
        deliveries.rate = DEFAULT_RATES[args.action]
    with open(f"{work}/prometheus.yml", "w") as f:
        f.write(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: ab\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
        )
    prom_log = open(f"{work}/prometheus.log", "w")
    procs.append(subprocess.Popen(
        ["prometheus", f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={work}/prom",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=prom_log, stderr=subprocess.STDOUT))
    log(f"prometheus on 127.0.0.1:{prom_port}, waiting for two scrapes")
    rate_q = urllib.parse.quote(f'sum(rate(ab_test_requests_total{{experiment="{EXPERIMENT}"}}[5m]))')
    deadline = time.monotonic() + 60
    while True:
        try:
            _, body = get(f"http://127.0.0.1:{prom_port}/api/v1/query?query={rate_q}")
            if json.loads(body)["data"]["result"]:
                break
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            sys.exit("prometheus has no data after 60 s (see its log with BENCH_KEEP=1)")
        time.sleep(0.25)

    # 2. The router: time to ready, idle RSS.
    config = f"{work}/router.yaml"
    with open(config, "w") as f:
        f.write(router_config(args, prom_port, chat_port))
    cmd = [router_bin, "serve", "--config", config]
    env = dict(os.environ,
               MLOPS_ALERT_ROUTER__SERVER__LISTEN=f"127.0.0.1:{router_port}",
               MLOPS_ALERT_ROUTER__STORAGE__PATH=f"{work}/router.db",
               MLOPS_ALERT_ROUTER__LOG__LEVEL="warn")
    router_log = open(f"{work}/router.log", "w")
    os.makedirs(f"{work}/data", exist_ok=True)
    spawned = time.monotonic()
    router = subprocess.Popen(cmd, env=env, cwd=work, stdout=router_log, stderr=subprocess.STDOUT)
    procs.insert(0, router)
    ready_ms = None
    while time.monotonic() - spawned < 30:
        if router.poll() is not None:
            sys.exit(f"router exited with {router.returncode}: {open(f'{work}/router.log').read()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", router_port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                ready_ms = (time.monotonic() - spawned) * 1000
                conn.close()
                break
            conn.close()
        except OSError:
            pass
        time.sleep(0.002)
    if ready_ms is None:
        sys.exit("router not ready within 30 s")
    time.sleep(1)
    idle_kib = kib(router.pid, "VmRSS")
    log(f"router ready after {ready_ms:.0f} ms, idle RSS {idle_kib / 1024:.1f} MiB")

    # 3. The storm.
    n, k = args.notifications, args.alerts_per_notification
    run_id = f"{os.getpid()}-{int(time.time())}"
    bodies = [notification(i, k, run_id) for i in range(n)]
    queries_before = prom_query_count(prom_port)
    log(f"storm: {n} notifications x {k} alerts, action {args.action}, rate limit {args.rate_limit}")
    t0 = time.monotonic()
    failures = post_all(router_port, bodies, args.connections)
    ingest_s = time.monotonic() - t0
    if failures:
        log(f"{len(failures)} requests failed, first: {failures[0]}")
    pending_url = f"http://127.0.0.1:{router_port}/api/v1/notifications?state=pending&limit=1"
    done_s = None
    while time.monotonic() - t0 < args.timeout:
        with deliveries.lock:
            count = deliveries.represented
        if count >= n - len(failures):
            _, body = get(pending_url)
            if not json.loads(body)["notifications"]:
                done_s = time.monotonic() - t0
                break
        time.sleep(0.01)
    elapsed = done_s if done_s is not None else time.monotonic() - t0
    with deliveries.lock:
        delivered = deliveries.count
        acted_s = (deliveries.last - t0) if deliveries.last else None
        represented = deliveries.represented
        too_fast = deliveries.too_fast
        digests = list(deliveries.digests)
        all_represented_s = next(
            (t - t0 for t, r in deliveries.represented_at if r >= n - len(failures)), None)
    records = check_records(router_port, n) if done_s is not None else None
    queries = prom_query_count(prom_port) - queries_before
    peak_kib = kib(router.pid, "VmHWM")
    rss_after = kib(router.pid, "VmRSS")
    distinct = len(ENRICHMENTS)  # every query renders only labels.experiment: one experiment

    # 4. Report.
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    ok = done_s is not None and not failures
    res = {
        "action": args.action, "rate_limit": args.rate_limit, "notifications": n, "alerts": n * k,
        "ingest_s": round(ingest_s, 3), "all_acted_on_s": round(done_s, 3) if done_s is not None else None,
        "last_delivery_s": round(acted_s, 3) if acted_s is not None else None,
        "delivered": delivered, "failed_requests": len(failures),
        "digest": args.digest, "represented": represented,
        "all_represented_s": round(all_represented_s, 3) if all_represented_s is not None else None,
        "digests": len(digests), "answered_429": too_fast, "records": records,
        "prometheus_queries": queries, "distinct_rendered_queries": distinct,
        "ready_ms": round(ready_ms, 1), "idle_rss_mib": round(idle_kib / 1024, 1),
        "peak_rss_mib": round(peak_kib / 1024, 1), "rss_after_mib": round(rss_after / 1024, 1),
        "load": load,
    }
    verdict = lambda good: "ok" if good else "MISSED"
    print(f"== storm: {n} notifications x {k} alerts = {n * k} alerts, action {args.action}, "
          f"rate limit {args.rate_limit}; load average {load}")
    print("| measurement | result | goal |")
    print("|---|---|---|")
    print(f"| all {n * k} alerts stored (last 200 after the first request) | {ingest_s:.2f} s | |")
    if done_s is not None:
        print(f"| all acted on ({delivered} deliveries), from the first request | **{done_s:.2f} s** | ≤ 10 s: {verdict(done_s <= 10)} |")
    else:
        print(f"| acted on within {args.timeout:.0f} s | {delivered} of {n} deliveries | ≤ 10 s: MISSED |")
    if all_represented_s is not None:
        print(f"| every notification represented in chat ({len(digests)} digests, {delivered - len(digests)} single messages) | **{all_represented_s:.2f} s** | ≤ 30 s: {verdict(all_represented_s <= 30)} |")
    else:
        print(f"| represented in chat within {args.timeout:.0f} s | {represented} of {n} ({len(digests)} digests) | ≤ 30 s: MISSED |")
    print(f"| 429 answered by the stand-in (router too fast) | {too_fast} | 0: {verdict(too_fast == 0)} |")
    if records is not None:
        print(f"| chat runs read back: succeeded once / lost / duplicated / naming a digest not received | {records['succeeded_once']} / {records['lost']} / {records['duplicated']} / {records['unknown_digest']} | {n} / 0 / 0 / 0: {verdict(records['succeeded_once'] == n and not records['lost'] and not records['duplicated'] and not records['unknown_digest'])} |")
        ok = ok and records["succeeded_once"] == n and records["unknown_digest"] == 0
    print(f"| Prometheus queries / distinct rendered queries | {queries} / {distinct} | ≤: {verdict(queries <= distinct)} |")
    print(f"| router peak RSS | {peak_kib / 1024:.1f} MiB | ≤ 100 MB: {verdict(peak_kib * 1024 <= 100e6)} |")
    print(f"| router RSS idle (1 s after ready) | {idle_kib / 1024:.1f} MiB | ≤ 20 MB: {verdict(idle_kib * 1024 <= 20e6)} |")
    print(f"| ready after start (spawn to /readyz 200) | {ready_ms:.0f} ms | ≤ 200 ms: {verdict(ready_ms <= 200)} |")
    if failures:
        print(f"| failed requests | {len(failures)} | 0 |")
    if args.json:
        print(json.dumps(res))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
