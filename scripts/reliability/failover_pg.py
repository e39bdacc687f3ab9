#!/usr/bin/env python3
"""Failover proof: three routers sharing one PostgreSQL, a round-robin storm
of notifications, one random replica killed with SIGKILL every few seconds and
restarted, PostgreSQL itself crashed (pg_ctl stop -m immediate) and restarted
once mid-storm.

Promise, across replicas as for one:
  - acknowledged lost = 0: a notification answered 200 by any replica is
    stored and delivered (its webhook action), whatever dies afterwards;
  - stored twice = 0: the same notification sent to two replicas at once (an
    HA Alertmanager pair) is stored once;
  - stored but never acted on = 0: every stored notification is delivered,
    and every traffic-shift episode gets a decision;
  - traffic shifts repeated = 0: an episode shifts a target at most once,
    and the weights file moved exactly as many points as the ledger records.
Deliveries are at-least-once across a kill (a kill between the send and its
record sends again): duplicate webhook deliveries are counted and reported.

The sender behaves like Alertmanager behind a Service: each notification is
retried (connection errors, timeouts, 503) until answered 200, each attempt
on the next replica in turn.

Usage: failover_pg.py [--notifications N] [--concurrency C] [--seed S] ...
Prints one figures line and a verdict; exit 0 when the promise holds, 1 when
it is broken, 2 when the run could not complete within its time bound.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import discard, free_port, request, router_bin, workdir
from pgserver import PgServer

EXPERIMENT = "failover-exp"
START_CANDIDATE = 100  # the candidate's weight before the storm; step 1 per episode


class Receiver:
    """The webhook stand-in: counts deliveries per notification (group key)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.deliveries: Counter[str] = Counter()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length))
                key = body.get("group_key")
                if key is None:  # not the default body: fall back to the alert's uid
                    key = "uid:" + body["alerts"][0]["labels"]["uid"]
                with receiver.lock:
                    receiver.deliveries[key] += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> Counter[str]:
        with self.lock:
            return Counter(self.deliveries)


def notification(group_key: str, labels: dict, starts: str, note: str) -> bytes:
    """An Alertmanager v4 notification with one firing alert."""
    return json.dumps(
        {
            "version": "4",
            "receiver": "failover",
            "status": "firing",
            "groupKey": group_key,
            "groupLabels": {"uid": labels["uid"]},
            "commonLabels": labels,
            "commonAnnotations": {"summary": f"probe {labels['uid']}"},
            "externalURL": "http://127.0.0.1:9093",
            "truncatedAlerts": 0,
            "alerts": [
                {
                    "status": "firing",
                    "labels": labels,
                    "annotations": {"summary": f"probe {labels['uid']}", "note": note},
                    "startsAt": starts,
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://127.0.0.1:9090/graph",
                }
            ],
        }
    ).encode()


def plan(n: int, shifts: int, ha_share: float, rng: random.Random) -> list[tuple[str, bytes, int]]:
    """(group key, body, copies) of every notification to send, shuffled.

    `shifts` traffic-shift episodes (alertname ShiftProbe on the experiment's
    candidate), each notified twice: the first notification and a reminder of
    the same episode (same alert, another notification); the rest plain
    probes. A share `ha_share` of all is sent as two simultaneous copies to
    two replicas (an HA Alertmanager pair)."""
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = []
    for i in range(shifts):
        labels = {"alertname": "ShiftProbe", "uid": f"s{i:05d}", "severity": "warning",
                  "experiment": EXPERIMENT, "model_name": "candidate"}
        for rep in ("first", "reminder"):
            gk = f'{{}}:{{uid="s{i:05d}"}}#{rep}'
            out.append((gk, notification(gk, labels, starts, rep)))
    for i in range(n - 2 * shifts):
        labels = {"alertname": "FailoverProbe", "uid": f"n{i:06d}", "severity": "warning"}
        gk = f'{{}}:{{uid="n{i:06d}"}}'
        out.append((gk, notification(gk, labels, starts, "only")))
    rng.shuffle(out)
    return [(gk, body, 2 if rng.random() < ha_share else 1) for gk, body in out]


class Replica:
    """One router process on its own port, sharing the database."""

    def __init__(self, idx: int, work: Path, config: str, port: int) -> None:
        self.idx = idx
        self.port = port
        self.dir = work / f"replica-{idx}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "router.yaml"
        self.config.write_text(config)
        self.log = self.dir / "router.log"
        self.proc: subprocess.Popen | None = None
        self.kills = 0
        self.start_failures = 0
        self.env = dict(os.environ)
        self.env.pop("RUST_LOG", None)

    def spawn(self) -> None:
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(router_bin()), "--config", str(self.config), "serve"],
            stdout=logf, stderr=subprocess.STDOUT, env=self.env, cwd=self.dir,
        )
        logf.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            return request(self.port, "GET", "/healthz", timeout=1.0)[0] == 200
        except OSError:
            return False

    def ready(self) -> bool:
        try:
            return request(self.port, "GET", "/readyz", timeout=2.0)[0] == 200
        except OSError:
            return False

    def start(self, deadline: float, need_ready: bool) -> bool:
        """Starts the process and waits until it answers (/healthz; /readyz if
        `need_ready`). A process that exits at start (e.g. the database is
        down) is started again every second until `deadline`."""
        while time.monotonic() < deadline:
            if not self.alive():
                rc = self.proc.returncode if self.proc is not None else None
                if rc is not None and rc != -signal.SIGKILL:
                    # It exited by itself (e.g. the database is down): like a
                    # restarting pod, try again a second later.
                    self.start_failures += 1
                    time.sleep(1.0)
                self.spawn()
            if (self.ready() if need_ready else self.healthy()):
                return True
            time.sleep(0.05)
        return False

    def kill9(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.kills += 1

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def get_json(self, path: str):
        status, body = request(self.port, "GET", path, timeout=10.0)
        if status != 200:
            raise RuntimeError(f"replica {self.idx} GET {path}: {status} {body[:200]!r}")
        return json.loads(body)


class Storm:
    """C threads sending the planned notifications round-robin over the
    replicas, each retried until answered 200 (an HA copy: sent to two
    replicas at once, each copy retried until 200)."""

    def __init__(self, ports: list[int], todo: list, concurrency: int, deadline: float, rate: float) -> None:
        self.ports = ports
        self.todo = list(reversed(todo))
        # Paced: the i-th notification leaves no earlier than i / rate seconds
        # after the start, so the kills and the database restart fall mid-storm.
        self.rate = rate
        self.sent = 0
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.acked: set[str] = set()
        self.duplicate_answers = 0
        self.attempts = 0
        self.errors = 0
        self.unavailable = 0
        self.retry_after_missing = 0
        self.refused: list[tuple[str, int, bytes]] = []
        self.next_port = 0
        self.deadline = deadline
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(concurrency)]

    def start(self) -> None:
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()

    def done(self) -> bool:
        return not any(t.is_alive() for t in self.threads)

    def pick(self) -> int:
        with self.lock:
            self.next_port = (self.next_port + 1) % len(self.ports)
            return self.ports[self.next_port]

    def send_until_acked(self, gk: str, body: bytes) -> None:
        while time.monotonic() < self.deadline:
            port = self.pick()
            with self.lock:
                self.attempts += 1
            try:
                conn_status, answer = request_full(port, body)
            except OSError:
                with self.lock:
                    self.errors += 1
                time.sleep(0.05)
                continue
            status, headers = conn_status
            if status == 200:
                with self.lock:
                    self.acked.add(gk)
                    if b'"duplicate":true' in answer.replace(b" ", b""):
                        self.duplicate_answers += 1
                return
            if status == 503:
                with self.lock:
                    self.unavailable += 1
                    if "retry-after" not in headers:
                        self.retry_after_missing += 1
                time.sleep(0.2)
                continue
            with self.lock:
                self.refused.append((gk, status, answer[:200]))
            return

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            with self.lock:
                if not self.todo:
                    return
                gk, body, copies = self.todo.pop()
                due = self.t0 + self.sent / self.rate
                self.sent += 1
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if copies == 1:
                self.send_until_acked(gk, body)
            else:
                pair = [threading.Thread(target=self.send_until_acked, args=(gk, body)) for _ in range(copies)]
                for t in pair:
                    t.start()
                for t in pair:
                    t.join()


def request_full(port: int, body: bytes):
    """POST /api/v1/alerts; returns ((status, lower-cased header names), body)."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
    try:
        conn.request("POST", "/api/v1/alerts", body=body, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return (resp.status, {k.lower() for k, _ in resp.getheaders()}), data
    finally:
        conn.close()


def router_config(port: int, pg_url: str | None, hook_port: int, weights: Path, lease: str, db: Path) -> str:
    storage = (f"  backend: postgres\n  postgres:\n    url: {pg_url}\n" if pg_url
               else f"  path: {db}\n")
    return f"""server:
  listen: 127.0.0.1:{port}
  grace_period: 3s
storage:
{storage}log:
  format: json
  level: info
worker:
  concurrency: 8
  lease: {lease}
  poll_interval: 100ms
  backoff_initial: 100ms
  backoff_max: 1s
  max_attempts: 1000
  max_age: 1h
traffic_targets:
  {EXPERIMENT}:
    kind: file
    file: {{path: {weights}}}
actions:
  storm_hook:
    type: webhook
    url: http://127.0.0.1:{hook_port}/deliver
    timeout: 5s
    max_attempts: 1000
    # The webhook default (10/s) would make the drain, not the failover, the test.
    rate_limit: {{per_second: 5000, burst: 5000}}
  shift:
    type: traffic_shift
    step: 1
    min_weight: 0
    max_weight: 100
    # Every episode may shift (one point each): repeats show in the weights.
    cooldown: 0s
    max_shifts_per_hour: 100000
    on_resolve: hold
route:
  actions: [storm_hook]
  routes:
    - matchers: ['alertname="ShiftProbe"']
      actions: [shift, storm_hook]
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notifications", type=int, default=4000)
    ap.add_argument("--shift-episodes", type=int, default=60, help="< 100 (step 1 from weight 100)")
    ap.add_argument("--ha-share", type=float, default=0.1, help="share sent to two replicas at once")
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rate", type=float, default=150, help="notifications per second the client offers")
    ap.add_argument("--kill-every", type=float, nargs=2, default=[2.0, 5.0], metavar=("MIN", "MAX"),
                    help="seconds between kills (uniform)")
    ap.add_argument("--min-kills", type=int, default=6)
    ap.add_argument("--pg-down", type=float, default=3.0, help="seconds PostgreSQL stays down")
    ap.add_argument("--lease", default="5s", help="worker.lease: a killed replica's work is taken over after it")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-seconds", type=float, default=420, help="bound on the whole run")
    ap.add_argument("--unsafe-async-commit", action="store_true",
                    help="negative control: PostgreSQL with synchronous_commit=off, so its crash "
                         "loses acknowledged commits; the run must FAIL")
    ap.add_argument("--sqlite-self-test", action="store_true",
                    help="check the harness itself: one replica on SQLite, no PostgreSQL restart")
    args = ap.parse_args()
    if args.sqlite_self_test:
        args.replicas = 1
    if not 0 < args.shift_episodes < START_CANDIDATE:
        ap.error(f"--shift-episodes must be between 1 and {START_CANDIDATE - 1}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + args.max_seconds

    work = workdir("failover-pg")
    pg = PgServer(work / "pg", synchronous_commit="off" if args.unsafe_async_commit else "on")
    replicas: list[Replica] = []
    try:
        pg.setup()
        receiver = Receiver()
        weights = work / "weights.yaml"
        weights.write_text(
            f"experiment: {EXPERIMENT}\ndefault: baseline\ncandidates:\n"
            f"  - {{name: baseline, weight: {100 - START_CANDIDATE}}}\n"
            f"  - {{name: candidate, weight: {START_CANDIDATE}}}\n"
        )
        for i in range(args.replicas):
            port = free_port()
            url = None if args.sqlite_self_test else pg.url
            cfg = router_config(port, url, receiver.port, weights, args.lease, work / f"replica-{i}" / "router.db")
            replicas.append(Replica(i, work, cfg, port))
        # All three at once: the schema migration must be safe when replicas start together.
        for r in replicas:
            r.spawn()
        for r in replicas:
            if not r.start(time.monotonic() + 60, need_ready=True):
                print(f"failover-pg: replica {r.idx} not ready within 60s; see {r.log}")
                return 2
        todo = plan(args.notifications, args.shift_episodes, args.ha_share, rng)
        storm = Storm([r.port for r in replicas], todo, args.concurrency, deadline, args.rate)

        kills: list[tuple[int, int]] = []  # (replica, acked so far)
        pg_restart: dict = {}
        storm.start()
        t_storm = time.monotonic()
        while time.monotonic() < deadline:
            if storm.done() and len(kills) >= args.min_kills and (pg_restart or args.sqlite_self_test):
                break
            time.sleep(rng.uniform(*args.kill_every))
            with storm.lock:
                acked = len(storm.acked)
            if not pg_restart and not args.sqlite_self_test and (acked >= len(todo) // 2 or storm.done() or len(kills) >= args.min_kills // 2):
                # PostgreSQL crashes (no shutdown checkpoint) and comes back.
                pg_restart["acked_at"] = acked
                t0 = time.monotonic()
                pg.stop("immediate")
                # A pod rescheduled while the database is down: killed now and
                # started at once; it cannot open its store and exits until
                # PostgreSQL is back (started again every second meanwhile).
                victim = rng.choice(replicas)
                victim.kill9()
                kills.append((victim.idx, acked))
                starter = threading.Thread(target=victim.start, args=(deadline, False), daemon=True)
                starter.start()
                time.sleep(args.pg_down)
                pg.start()
                pg_restart["down_s"] = time.monotonic() - t0
                starter.join(timeout=max(0.0, deadline - time.monotonic()))
                # Replicas resume by themselves: time until every one is ready again.
                t1 = time.monotonic()
                while time.monotonic() < deadline and not all(r.ready() for r in replicas if r.alive()):
                    time.sleep(0.1)
                pg_restart["all_ready_after_s"] = time.monotonic() - t1
                continue
            victim = rng.choice(replicas)
            victim.kill9()
            kills.append((victim.idx, acked))
            time.sleep(rng.uniform(0.0, 1.0))
            victim.start(deadline, need_ready=False)
        storm_seconds = time.monotonic() - t_storm

        # Every replica up again; let the backlog drain (no more chaos).
        for r in replicas:
            r.start(deadline, need_ready=True)
        pending = None
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = all_notifications(replicas[0])
            pending = sum(1 for r in rows if r["state"] != "done")
            if pending == 0 and storm.done():
                break
            time.sleep(0.5)
        drain_seconds = time.monotonic() - t_storm - storm_seconds
        rows = all_notifications(replicas[0])
        pending = sum(1 for r in rows if r["state"] != "done")
        traffic = replicas[1 % len(replicas)].get_json(f"/api/v1/traffic?target={EXPERIMENT}&limit=500")
        dead = replicas[2 % len(replicas)].get_json("/api/v1/dead-letters?limit=500")
        for r in replicas:
            r.stop()

        # ---- figures
        delivered = receiver.delivered()
        stored = Counter(r["group_key"] for r in rows)
        acked = storm.acked
        not_stored = sorted(acked - set(stored))
        stored_twice = sorted(k for k, c in stored.items() if c > 1)
        lost = sorted(acked - set(delivered))
        stored_not_delivered = sorted(set(stored) - set(delivered))
        duplicates = sum(c - 1 for c in delivered.values() if c > 1)
        dup_notifications = sum(1 for c in delivered.values() if c > 1)
        unacked = len(todo) - len(acked)

        decisions = traffic["decisions"]
        by_episode: dict[str, Counter] = {}
        for d in decisions:
            by_episode.setdefault(d["episode"], Counter())[d["decision"]] += 1
        shifted_total = sum(c["shifted"] for c in by_episode.values())
        episodes_shifted = sum(1 for c in by_episode.values() if c["shifted"])
        # Extra `shifted` records of an episode: a second run of the same episode
        # that found the change already on the target records it again ("found
        # this episode's change already applied"). Reported; the weights decide
        # whether a shift was really repeated.
        ledger_extra = shifted_total - episodes_shifted
        episodes_acked = {gk.split("#")[0] for gk in acked if "#" in gk}
        # An episode is acted on when it has a final decision (shifted or noop).
        episodes_decided = sum(1 for c in by_episode.values() if c["shifted"] or c["noop"])
        episodes_undecided = len(episodes_acked) - episodes_decided
        final = traffic["targets"][EXPERIMENT]
        candidate_now = (final.get("weights") or {}).get("candidate")
        moved = None if candidate_now is None else START_CANDIDATE - candidate_now
        # Each episode moves one point: points moved beyond one per shifted
        # episode are shifts applied again.
        repeated = None if moved is None else moved - episodes_shifted
        other_decisions = Counter(d["decision"] for d in decisions)
        took = time.monotonic() - started
        starts_failed = sum(r.start_failures for r in replicas)

        print(
            f"failover-pg: seed={seed} replicas={args.replicas} notifications={len(todo)} "
            f"ha_copies={sum(1 for _, _, c in todo if c > 1)} kills={len(kills)} "
            f"kills_at_acked={[a for _, a in kills]} kills_per_replica={[r.kills for r in replicas]} "
            f"pg_restart_at_acked={pg_restart.get('acked_at')} pg_down_s={pg_restart.get('down_s', 0):.1f} "
            f"all_ready_after_pg_s={pg_restart.get('all_ready_after_s', 0):.1f} "
            f"acknowledged={len(acked)} stored={len(stored)} acknowledged_not_stored={len(not_stored)} "
            f"stored_twice={len(stored_twice)} acknowledged_lost={len(lost)} "
            f"stored_not_acted_on={len(stored_not_delivered) + max(episodes_undecided, 0)} "
            f"(undelivered {len(stored_not_delivered)}, episodes without decision {max(episodes_undecided, 0)}) "
            f"duplicate_deliveries={duplicates} (notifications delivered twice or more: {dup_notifications}) "
            f"shift_episodes={len(episodes_acked)} episodes_shifted={episodes_shifted} weights_moved={moved} "
            f"shifts_repeated={repeated} ledger_shifted_records={shifted_total} "
            f"(extra records of an applied shift: {ledger_extra}) decisions={dict(other_decisions)} "
            f"duplicate_answers={storm.duplicate_answers} send_attempts={storm.attempts} "
            f"connection_errors={storm.errors} answers_503={storm.unavailable} "
            f"503_without_retry_after={storm.retry_after_missing} refused={len(storm.refused)} "
            f"replica_start_failures={starts_failed} pending={pending} dead_letters={len(dead['dead_letters'])} "
            f"storm_s={storm_seconds:.0f} drain_s={drain_seconds:.0f} seconds={took:.0f} workdir={work}"
        )
        broken = []
        if not_stored:
            broken.append(f"{len(not_stored)} acknowledged notifications not in the store (e.g. {not_stored[:3]})")
        if stored_twice:
            broken.append(f"{len(stored_twice)} notifications stored twice (e.g. {stored_twice[:3]})")
        if repeated is None:
            broken.append(f"cannot read the weights of {EXPERIMENT}: {final}")
        elif repeated > 0:
            broken.append(f"{repeated} traffic shifts applied again (the weights moved {moved} points "
                          f"for {episodes_shifted} shifted episodes)")
        elif repeated < 0:
            broken.append(f"{-repeated} shifts recorded but never applied (the weights moved {moved} points "
                          f"for {episodes_shifted} shifted episodes)")
        if storm.retry_after_missing:
            broken.append(f"{storm.retry_after_missing} answers 503 without Retry-After")
        if pending:
            print(f"failover-pg: INCOMPLETE: {pending} stored notifications still pending after "
                  f"{args.max_seconds:.0f}s")
            return 1 if broken else 2
        if lost:
            broken.append(f"{len(lost)} acknowledged notifications never delivered (e.g. {lost[:3]})")
        if stored_not_delivered:
            broken.append(f"{len(stored_not_delivered)} stored notifications never delivered")
        if episodes_undecided > 0:
            broken.append(f"{episodes_undecided} acknowledged shift episodes without a decision")
        if storm.refused:
            broken.append(f"{len(storm.refused)} refused, e.g. {storm.refused[0]}")
        if dead["dead_letters"]:
            broken.append(f"{len(dead['dead_letters'])} dead letters")
        if broken:
            print("failover-pg: FAIL: " + "; ".join(broken))
            return 1
        if unacked:
            print(f"failover-pg: INCOMPLETE: {unacked} never acknowledged after {args.max_seconds:.0f}s")
            return 2
        print(
            f"failover-pg: PASS: {len(acked)} acknowledged by {args.replicas} replicas across {len(kills)} "
            f"kill -9{'' if args.sqlite_self_test else ' and a PostgreSQL crash-restart'}: 0 lost, 0 stored twice, 0 stored-but-not-acted-on, "
            f"{moved} shifts applied for {len(episodes_acked)} episodes (0 repeated), "
            f"{duplicates} duplicate webhook deliveries"
        )
        discard(work)
        return 0
    finally:
        for r in replicas:
            if r.alive():
                assert r.proc is not None
                r.proc.kill()
        pg.stop("fast")


def all_notifications(replica: Replica) -> list[dict]:
    rows, before = [], None
    while True:
        path = "/api/v1/notifications?limit=500" + (f"&before={before}" if before else "")
        page = replica.get_json(path)
        rows.extend(page["notifications"])
        before = page.get("next_before")
        if not before:
            return rows


if __name__ == "__main__":
    sys.exit(main())
