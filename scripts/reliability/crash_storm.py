#!/usr/bin/env python3
"""Crash storm: kill -9 the router at random moments during a concurrent storm
of unique notifications, restart it, and count what a webhook receiver got.

Promise: a notification answered 200 is delivered (acknowledged lost = 0);
a notification the router stored is delivered (stored but never delivered =
0). Deliveries are at-least-once across a crash: duplicates are counted and
reported, not failed.

The sender behaves like Alertmanager: each notification is retried (after
connection errors, timeouts, 503) until it is answered 200; a retry of a
stored notification is answered as a duplicate and processed once.

Usage: crash_storm.py [--notifications N] [--rounds R] [--concurrency C] [--seed S]
Prints one figures line and a verdict; exit 0 when the promise holds, 1 when
it is broken, 2 when the run could not complete within its time bound.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common import Router, base_config, discard, free_port, notification, request, workdir


class Receiver:
    """A webhook endpoint counting deliveries per notification uid."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.deliveries: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length))
                with receiver.lock:
                    for a in body.get("alerts", []):
                        uid = a["labels"]["uid"]
                        receiver.deliveries[uid] = receiver.deliveries.get(uid, 0) + 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> dict[str, int]:
        with self.lock:
            return dict(self.deliveries)


class Storm:
    """C threads sending N unique notifications, each retried until answered 200."""

    def __init__(self, port: int, n: int, concurrency: int, deadline: float) -> None:
        self.port = port
        self.todo = [f"n{i:06d}" for i in range(n)]
        self.lock = threading.Lock()
        self.acked: set[str] = set()
        self.duplicate_answers = 0
        self.attempts = 0
        self.errors = 0  # connection refused/reset, timeouts
        self.unavailable = 0  # 503
        self.refused: list[tuple[str, int, bytes]] = []  # 4xx/other: the promise's business too
        self.deadline = deadline
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(concurrency)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def done(self) -> bool:
        return not any(t.is_alive() for t in self.threads)

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            with self.lock:
                if not self.todo:
                    return
                uid = self.todo.pop()
            body = notification(uid, "CrashStorm")
            while time.monotonic() < self.deadline:
                with self.lock:
                    self.attempts += 1
                try:
                    status, answer = request(self.port, "POST", "/api/v1/alerts", body, timeout=3.0)
                except OSError:
                    with self.lock:
                        self.errors += 1
                    time.sleep(0.05)
                    continue
                if status == 200:
                    with self.lock:
                        self.acked.add(uid)
                        if b'"duplicate":true' in answer.replace(b" ", b""):
                            self.duplicate_answers += 1
                    break
                if status == 503:
                    with self.lock:
                        self.unavailable += 1
                    time.sleep(0.1)
                    continue
                with self.lock:
                    self.refused.append((uid, status, answer[:200]))
                break


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notifications", type=int, default=6000)
    ap.add_argument("--rounds", type=int, default=5, help="kill -9 rounds")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-seconds", type=float, default=300, help="bound on the whole run")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + args.max_seconds

    receiver = Receiver()
    work = workdir("crash-storm")
    port = free_port()
    actions = f"""  storm_hook:
    type: webhook
    url: http://127.0.0.1:{receiver.port}/deliver
    timeout: 5s
    max_attempts: 100
    # The webhook default (10/s) would make the drain, not the crash, the test.
    rate_limit: {{per_second: 2000, burst: 2000}}
"""
    extra = """worker:
  concurrency: 8
  poll_interval: 100ms
  backoff_initial: 100ms
  backoff_max: 1s
  max_attempts: 100
"""
    router = Router(work, base_config(port, work, actions, ["storm_hook"], extra), port)
    storm = Storm(port, args.notifications, args.concurrency, deadline)

    kills = []
    router.start()
    storm.start()
    for r in range(args.rounds):
        # A random moment of the storm (or of the delivery backlog after it).
        time.sleep(rng.uniform(0.2, 2.5))
        with storm.lock:
            acked_at_kill = len(storm.acked)
        router.kill9()
        kills.append(acked_at_kill)
        time.sleep(rng.uniform(0.0, 0.5))
        router.start()

    # Let the storm finish and the backlog drain.
    while not storm.done() and time.monotonic() < deadline:
        time.sleep(0.2)
    pending = None
    while time.monotonic() < deadline:
        rows = router.all_notifications()
        pending = sum(1 for r in rows if r["state"] != "done")
        if pending == 0 and storm.done():
            break
        time.sleep(0.5)
    rows = router.all_notifications()
    pending = sum(1 for r in rows if r["state"] != "done")
    dead = router.get_json("/api/v1/dead-letters")
    router.sample_rss()
    router.stop()

    delivered = receiver.delivered()
    stored = {r["group_key"].split('uid="')[1].rstrip('"}') for r in rows}
    acked = storm.acked
    not_stored = sorted(acked - stored)
    lost = sorted(acked - set(delivered))
    stored_undelivered = sorted(stored - set(delivered))
    unacked = args.notifications - len(acked)
    duplicates = sum(c - 1 for c in delivered.values() if c > 1)
    dup_notifications = sum(1 for c in delivered.values() if c > 1)
    dead_count = len(dead["dead_letters"])
    took = time.monotonic() - started

    print(
        f"crash-storm: seed={seed} notifications={args.notifications} rounds={args.rounds} "
        f"kills_at_acked={kills} acknowledged={len(acked)} stored={len(stored)} "
        f"delivered={len(delivered)} acknowledged_not_stored={len(not_stored)} "
        f"acknowledged_lost={len(lost)} "
        f"stored_not_delivered={len(stored_undelivered)} duplicate_deliveries={duplicates} "
        f"(notifications delivered twice or more: {dup_notifications}) "
        f"duplicate_answers={storm.duplicate_answers} send_attempts={storm.attempts} "
        f"connection_errors={storm.errors} answers_503={storm.unavailable} "
        f"refused={len(storm.refused)} pending={pending} dead_letters={dead_count} "
        f"peak_rss_mb={router.peak_rss_kb / 1024:.1f} seconds={took:.0f} workdir={work}"
    )
    broken = []
    if not_stored:
        broken.append(f"{len(not_stored)} acknowledged notifications not in the store (e.g. {not_stored[:5]})")
    if pending:
        # Not drained within the bound: undelivered may still be delivered.
        print(
            f"crash-storm: INCOMPLETE: {pending} stored notifications still pending after "
            f"{args.max_seconds:.0f}s ({len(not_stored)} acknowledged but not stored)"
        )
        return 1 if broken else 2
    if lost:
        broken.append(f"{len(lost)} acknowledged notifications never delivered (e.g. {lost[:5]})")
    if stored_undelivered:
        broken.append(f"{len(stored_undelivered)} stored notifications never delivered")
    if storm.refused:
        broken.append(f"{len(storm.refused)} refused, e.g. {storm.refused[0]}")
    if dead_count:
        broken.append(f"{dead_count} dead letters")
    if broken:
        print("crash-storm: FAIL: " + "; ".join(broken))
        return 1
    if unacked:
        print(f"crash-storm: INCOMPLETE: {unacked} never acknowledged after {args.max_seconds:.0f}s")
        return 2
    print(
        f"crash-storm: PASS: {len(acked)} acknowledged across {args.rounds} kill -9 rounds, "
        f"0 lost, 0 stored-but-undelivered, {duplicates} duplicate deliveries"
    )
    discard(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
