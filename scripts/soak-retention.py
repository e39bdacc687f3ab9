#!/usr/bin/env python3
"""Retention soak: the store stays bounded under a steady notification rate.

Starts the router binary on a fresh database with a short retention, posts
notifications at a steady rate for a while, and reports:

  - database + WAL size over time (does it plateau?),
  - that every acknowledged notification still within the retention can be
    read back, checked repeatedly during the run,
  - that notifications well past the retention are gone,
  - POST latency (p50/p99/max) of this run.

Run it twice, with and without pruning, to see what pruning costs ingest:

  scripts/soak-retention.py --retention 20s              # pruning every 2 s
  scripts/soak-retention.py --retention 1000h            # same load, nothing pruned

Only loopback traffic. Needs python3 (standard library only).
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_duration(s):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", s)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {s}")
    n, unit = int(m.group(1)), m.group(2)
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def payload(i, alerts):
    """A notification of `alerts` firing alerts, distinct per i."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    items = []
    for a in range(alerts):
        labels = {
            "alertname": "ModelAccuracyDegraded",
            "experiment": "financial-ab-test-experiment",
            "model_name": f"variant-{a}",
            "severity": "critical",
            "instance": f"10.0.{a}.{i % 250}:8080",
            "soak": str(i),
        }
        items.append({
            "status": "firing",
            "labels": labels,
            "annotations": {
                "summary": f"Model accuracy dropped below 55% for variant-{a}",
                "description": "Accuracy 52.1% over the last 5 minutes, below the 55% threshold.",
            },
            "startsAt": now,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=ab_test_model_accuracy+%3C+55",
            "fingerprint": f"{i:012x}{a:04x}",
        })
    return json.dumps({
        "version": "4",
        "groupKey": f'{{}}:{{alertname="ModelAccuracyDegraded", soak="{i}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "mlops-alert-router",
        "groupLabels": {"alertname": "ModelAccuracyDegraded", "soak": str(i)},
        "commonLabels": {"alertname": "ModelAccuracyDegraded"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": items,
    }).encode()


def request(url, data=None, timeout=10):
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if data:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/mlops-alert-router"))
    ap.add_argument("--retention", default="20s", type=str)
    ap.add_argument("--prune-interval", default="2s")
    ap.add_argument("--rate", type=float, default=50.0, help="notifications per second")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    ap.add_argument("--workers", type=int, default=8, help="concurrent senders")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    retention = parse_duration(args.retention)
    prune_every = parse_duration(args.prune_interval)
    rng = random.Random(args.seed)

    tmp = tempfile.mkdtemp(prefix="soak-retention-")
    db = os.path.join(tmp, "router.db")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update({
        "MLOPS_ALERT_ROUTER__SERVER__LISTEN": f"127.0.0.1:{port}",
        "MLOPS_ALERT_ROUTER__STORAGE__PATH": db,
        "MLOPS_ALERT_ROUTER__STORAGE__RETENTION": args.retention,
        "MLOPS_ALERT_ROUTER__STORAGE__DEAD_LETTER_RETENTION": args.retention,
        "MLOPS_ALERT_ROUTER__STORAGE__PRUNE_INTERVAL": args.prune_interval,
        "MLOPS_ALERT_ROUTER__INGEST__DEDUP_WINDOW": "5s",
        "RUST_LOG": "warn",
    })
    # Route every alert to the log action only (one run per alert).
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        f.write("route:\n  actions: [log]\n")
    log = open(os.path.join(tmp, "router.log"), "w")
    router = subprocess.Popen([args.bin, "serve", "--config", cfg], env=env, stdout=log, stderr=log)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.time() > deadline or router.poll() is not None:
                sys.exit(f"router did not start; see {tmp}/router.log")
            time.sleep(0.05)

    acked = []  # (ack time, id)
    latencies = []
    failures = []
    lock = threading.Lock()
    total = int(args.rate * args.duration)
    start = time.time()
    next_index = [0]

    def sender():
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= total:
                return
            due = start + i / args.rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            body = payload(i, rng.choice([1, 1, 1, 2, 3, 5]))
            t0 = time.time()
            status, answer = request(f"{base}/api/v1/alerts", body)
            t1 = time.time()
            with lock:
                latencies.append(t1 - t0)
                if status == 200:
                    acked.append((t1, json.loads(answer)["id"]))
                else:
                    failures.append((i, status, answer[:200]))

    samples = []  # (t, db bytes, wal bytes)
    checks = {"within_checked": 0, "within_missing": 0, "expired_checked": 0, "expired_present": 0}
    stop = threading.Event()

    def size(p):
        try:
            return os.path.getsize(p)
        except OSError:
            return 0

    def monitor():
        while not stop.is_set():
            now = time.time()
            samples.append((now - start, size(db), size(db + "-wal")))
            # Every acknowledged notification within the retention must be there.
            with lock:
                within = [i for (t, i) in acked if t > now - retention + 1.0]
                expired = [i for (t, i) in acked if t < now - retention - 2 * prune_every - 5]
            for i in rng.sample(within, min(50, len(within))):
                status, _ = request(f"{base}/api/v1/notifications/{i}")
                checks["within_checked"] += 1
                if status != 200:
                    checks["within_missing"] += 1
                    print(f"MISSING: notification {i} acknowledged within the retention answers {status}")
            for i in rng.sample(expired, min(20, len(expired))):
                status, _ = request(f"{base}/api/v1/notifications/{i}")
                checks["expired_checked"] += 1
                if status == 200:
                    checks["expired_present"] += 1
            stop.wait(2.0)

    mon = threading.Thread(target=monitor)
    mon.start()
    threads = [threading.Thread(target=sender) for _ in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - start
    stop.set()
    mon.join()
    _, metrics = request(f"{base}/metrics")
    rows = {m.group(1).decode(): int(m.group(2)) for m in re.finditer(rb'store_rows\{kind="(\w+)"\} (\d+)', metrics)}
    pruned = {m.group(1).decode(): int(m.group(2)) for m in re.finditer(rb'store_pruned_rows_total\{kind="(\w+)"\} (\d+)', metrics)}
    router.send_signal(signal.SIGTERM)
    router.wait(timeout=30)

    print(f"binary: {args.bin}")
    print(f"load: {len(latencies)} notifications in {elapsed:.0f} s ({len(latencies) / elapsed:.1f}/s), "
          f"{args.workers} senders, 1-5 alerts each; retention {args.retention}, prune every {args.prune_interval}")
    print(f"acknowledged: {len(acked)}, refused: {len(failures)}")
    for f in failures[:5]:
        print(f"  refused: {f}")
    print(f"POST latency: p50 {percentile(latencies, 50) * 1000:.1f} ms, p99 {percentile(latencies, 99) * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms")
    print("size over time (s: database + WAL, KiB):")
    step = max(1, len(samples) // 12)
    for t, d, w in samples[::step] + [samples[-1]]:
        print(f"  {t:6.0f}: {d // 1024:7d} + {w // 1024:6d} = {(d + w) // 1024:7d}")
    half = [d + w for t, d, w in samples if t > elapsed / 2]
    quarter = [d + w for t, d, w in samples if elapsed / 4 < t <= elapsed / 2]
    if half and quarter:
        print(f"max size 2nd quarter: {max(quarter) // 1024} KiB; max size 2nd half: {max(half) // 1024} KiB")
    print(f"rows at the end: {rows}")
    print(f"pruned rows: {pruned}")
    print(f"within-retention reads: {checks['within_checked']} checked, {checks['within_missing']} missing")
    print(f"past-retention reads: {checks['expired_checked']} checked, {checks['expired_present']} still present")
    ok = not failures and checks["within_missing"] == 0
    print("RESULT:", "ok" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
