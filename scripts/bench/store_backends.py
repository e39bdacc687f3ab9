#!/usr/bin/env python3
"""Durable ingest, side by side: SQLite (one replica) vs PostgreSQL (one
replica, three replicas on one database). Loopback only; run through
scripts/bench/store-backends.sh.

Each round runs, in turn:
  sqlite-1   one router on SQLite: wrk -t2 -c64
  pg-1       one router on PostgreSQL: wrk -t2 -c64
  pg-3       three routers on the same PostgreSQL database, one wrk -t1 -cC/3
             per replica, all at once (C = 64: the same connections in all)
with the worker off (ingest only: every 200 is a commit), a fresh database
per run, the fixture payloads of tests/fixtures made unique per request
(scripts/bench/store-backends.lua). SQLite has no three-replica case: its file
belongs to one process.

The machine is shared: the load average before and after every run is
printed next to its figures.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "reliability"))

from common import free_port, request, router_bin  # noqa: E402
from pgserver import PgServer  # noqa: E402

LUA = ROOT / "scripts" / "bench" / "store-backends.lua"
FIXTURES = ROOT / "tests" / "fixtures"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def config(port: int, storage: str) -> str:
    return f"""server:
  listen: 127.0.0.1:{port}
storage:
{storage}log:
  level: warn
worker:
  enabled: false
"""


class Proc:
    def __init__(self, work: Path, name: str, storage: str) -> None:
        self.port = free_port()
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "router.yaml").write_text(config(self.port, storage))
        env = dict(os.environ)
        env.pop("RUST_LOG", None)
        with open(self.dir / "router.log", "ab") as log:
            self.proc = subprocess.Popen([str(router_bin()), "--config", str(self.dir / "router.yaml"), "serve"],
                                         stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"router exited with {self.proc.returncode}: {self.dir / 'router.log'}")
            try:
                if request(self.port, "GET", "/readyz", timeout=1.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"router not ready within 60s: {self.dir / 'router.log'}")

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(port: int, threads: int, conns: int, secs: int, prefix: str) -> subprocess.Popen:
    env = dict(os.environ, FIXTURE_DIR=str(FIXTURES), WRK_PREFIX=prefix)
    return subprocess.Popen(["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--latency", "-s", str(LUA),
                             f"http://127.0.0.1:{port}/api/v1/alerts"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def parse(out: str) -> dict:
    def grab(rx: str) -> str:
        m = re.search(rx, out, re.M)
        return m.group(1) if m else "nan"
    return {
        "rps": float(grab(r"Requests/sec:\s+([\d.]+)")),
        "p50": ms(grab(r"^\s+50%\s+(\S+)")),
        "p99": ms(grab(r"^\s+99%\s+(\S+)")),
        "requests": int(float(grab(r"^\s+(\d+) requests in"))),
        "errors": int(grab(r"non2xx_or_errors=(\d+)")),
    }


def run_case(case: str, work: Path, pg: PgServer, secs: int, conns: int, rnd: int) -> dict:
    load_before = loadavg()
    procs: list[Proc] = []
    if case == "sqlite-1":
        procs.append(Proc(work, f"{case}-{rnd}", f"  path: {work / f'{case}-{rnd}' / 'router.db'}\n"))
    else:
        pg.psql(f'DROP DATABASE IF EXISTS "{pg.database}"', database="postgres")
        pg.create_database()
        storage = f"  backend: postgres\n  postgres:\n    url: {pg.url}\n"
        n = 1 if case == "pg-1" else 3
        procs.extend(Proc(work, f"{case}-{rnd}-r{i}", storage) for i in range(n))
    if len(procs) == 1:
        runs = [wrk(procs[0].port, 2, conns, secs, f"{case}-{rnd}")]
    else:
        per = max(1, conns // len(procs))
        runs = [wrk(p.port, 1, per, secs, f"{case}-{rnd}-r{i}") for i, p in enumerate(procs)]
    results = []
    for r in runs:
        out, _ = r.communicate(timeout=secs + 60)
        results.append(parse(out))
    rss = [p.peak_rss_kib() for p in procs]
    for p in procs:
        p.stop()
    return {
        "case": case,
        "rps": sum(x["rps"] for x in results),
        "p50": max(x["p50"] for x in results),
        "p99": max(x["p99"] for x in results),
        "requests": sum(x["requests"] for x in results),
        "errors": sum(x["errors"] for x in results),
        "rss_kib": max(rss),
        "load_before": load_before,
        "load_after": loadavg(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seconds", nargs="?", type=int, default=10, help="per run")
    ap.add_argument("rounds", nargs="?", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--cases", default="sqlite-1,pg-1,pg-3", help="comma-separated subset, sqlite-1 first")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="router-bench-backends-"))
    pg = PgServer(work / "pg")
    cases = args.cases.split(",")
    if cases[0] != "sqlite-1" or not set(cases) <= {"sqlite-1", "pg-1", "pg-3"}:
        ap.error("--cases: a subset of sqlite-1,pg-1,pg-3 starting with sqlite-1 (the reference)")
    rows: list[dict] = []
    try:
        pg.setup()
        print(f"== machine: {os.cpu_count()} cores, {os.uname().release}, load before: {loadavg()}; "
              f"PostgreSQL {pg.psql('SHOW server_version')} (fsync on, synchronous_commit on); "
              f"router {router_bin()}")
        print(f"== wrk, {args.connections} connections in all, {args.seconds}s per run, {args.rounds} rounds, "
              f"worker off (every 200 is a commit)")
        for rnd in range(1, args.rounds + 1):
            for case in cases:
                r = run_case(case, work, pg, args.seconds, args.connections, rnd)
                rows.append(r)
                print(f"round {rnd} {case:8s}: {r['rps']:8.0f} req/s p50={r['p50']:.2f}ms p99={r['p99']:.2f}ms "
                      f"requests={r['requests']} non2xx_or_errors={r['errors']} peak_rss={r['rss_kib'] / 1024:.1f}MiB "
                      f"load {r['load_before']} -> {r['load_after']}", flush=True)
        print("== medians")
        base = statistics.median(r["rps"] for r in rows if r["case"] == "sqlite-1")
        for case in cases:
            mine = [r for r in rows if r["case"] == case]
            rps = statistics.median(r["rps"] for r in mine)
            print(f"{case:8s}: {rps:8.0f} req/s ({rps / base:.0%} of sqlite-1), "
                  f"p99 median {statistics.median(r['p99'] for r in mine):.2f}ms, "
                  f"rounds {', '.join(str(round(r['rps'])) for r in mine)}")
        print(f"== load after: {loadavg()}")
    finally:
        pg.stop("fast")
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
