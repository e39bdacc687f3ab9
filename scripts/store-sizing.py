#!/usr/bin/env python3
"""Bytes per notification in the store, for sizing its volume.

For each group size (alerts per notification) this starts the router on a
fresh database, posts N notifications (every alert routed to the `log`
action: one action run per alert), waits until all are processed, stops the
router cleanly (which checkpoints and empties the WAL) and divides the
database file by N.

  scripts/store-sizing.py                      # 1, 5 and 20 alerts, 2000 notifications each
  scripts/store-sizing.py --alerts 1 --count 500

Payloads are the soak's (scripts/soak-retention.py): realistic labels and
annotations, about 600 bytes of JSON per alert. Only loopback traffic.
"""

import argparse
import importlib.util
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("soak", os.path.join(HERE, "soak-retention.py"))
soak = importlib.util.module_from_spec(spec)
spec.loader.exec_module(soak)


def measure(binary, alerts, count):
    tmp = tempfile.mkdtemp(prefix="store-sizing-")
    db = os.path.join(tmp, "router.db")
    port = soak.free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        f.write("route:\n  actions: [log]\n")
    env = dict(os.environ)
    env.update({
        "MLOPS_ALERT_ROUTER__SERVER__LISTEN": f"127.0.0.1:{port}",
        "MLOPS_ALERT_ROUTER__STORAGE__PATH": db,
        "RUST_LOG": "warn",
    })
    log = open(os.path.join(tmp, "router.log"), "w")
    router = subprocess.Popen([binary, "serve", "--config", cfg], env=env, stdout=log, stderr=log)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.time() > deadline or router.poll() is not None:
                sys.exit(f"router did not start; see {tmp}/router.log")
            time.sleep(0.05)
    body_bytes = 0

    def post(i):
        body = soak.payload(i, alerts)
        status, _ = soak.request(f"{base}/api/v1/alerts", body)
        if status != 200:
            sys.exit(f"POST answered {status}")
        return len(body)

    with ThreadPoolExecutor(8) as pool:
        body_bytes = sum(pool.map(post, range(count)))
    deadline = time.time() + 300
    while True:
        _, metrics = soak.request(f"{base}/metrics")
        m = re.search(rb"^inbox_depth (\d+)", metrics, re.M)
        if m and int(m.group(1)) == 0:
            break
        if time.time() > deadline:
            sys.exit("the inbox did not drain")
        time.sleep(0.2)
    router.send_signal(signal.SIGTERM)
    router.wait(timeout=30)
    # Move what is left in the WAL into the file, as the next start would.
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(db), body_bytes


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(HERE), "target/release/mlops-alert-router"))
    ap.add_argument("--alerts", type=int, nargs="*", default=[1, 5, 20])
    ap.add_argument("--count", type=int, default=2000)
    args = ap.parse_args()
    print(f"{'alerts':>6} {'notifications':>13} {'payload B/notif':>15} {'store B/notif':>13}")
    for k in args.alerts:
        size, body = measure(args.bin, k, args.count)
        print(f"{k:>6} {args.count:>13} {body // args.count:>15} {size // args.count:>13}")


if __name__ == "__main__":
    main()
