#!/usr/bin/env python3
"""Hostile downstreams and a hostile Prometheus.

One phase per hostile behaviour: a fresh router whose webhook action, Slack
action or Prometheus points at a loopback server that misbehaves, two
notifications sent, then the router is watched until every run has ended
(succeeded or dead-lettered) or the phase's time bound passes.

Promises checked per phase:
- peak RSS of the router (VmHWM) stays under --rss-bound-mb (default 100);
- every run ends within --bound seconds (success or dead letter);
- a redirect is not followed;
- no secret (URL, its path and query tokens, the bearer token) appears in the
  router's log, API answers or /metrics, raw, percent-encoded, JSON-escaped
  (also with `\\/`), or cut (a 10-character prefix of a token).

Safety: the router is SIGKILLed if its RSS passes --kill-rss-mb (default
1536), so a broken build cannot take the machine's memory.

Usage: hostile.py [--only PHASE,...] [--bound S] [--rss-bound-mb M]
Prints one line per phase and a verdict; exit 0 when every promise holds.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

from common import Router, base_config, discard, free_port, notification, proc_status, request, workdir

PATH_TOKEN = "B0PATHSECRET7f3a9c1e5b2d4a6f0e8c"
QUERY_TOKEN = "qtokSECRET5b2d4a6f0e8c7f3a9c1e"
BEARER = "bearerSECRET9c1e5b2d4a6f0e8c7f3a"
CHUNK = b"x" * 65536


class HostileServer:
    """Raw-socket HTTP server; the first path segment picks the behaviour."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.hits: Counter = Counter()
        self.lock = threading.Lock()
        self.many = self._many_series(100_000)
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, behaviour: str) -> str:
        return f"http://127.0.0.1:{self.port}/{behaviour}/hooks/{PATH_TOKEN}?token={QUERY_TOKEN}"

    @staticmethod
    def _many_series(n: int) -> bytes:
        ts = time.time()
        result = ",".join(
            f'{{"metric":{{"__name__":"m","model_name":"variant-{i}","instance":"10.0.{i // 256 % 256}.{i % 256}:8080"}},"value":[{ts},"0.{i}"]}}'
            for i in range(n)
        )
        return f'{{"status":"success","data":{{"resultType":"vector","result":[{result}]}}}}'.encode()

    def _accept(self) -> None:
        self.sock.settimeout(0.5)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            data = b""
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            target = lines[0].split(" ")[1]
            length = 0
            for h in lines[1:]:
                k, _, v = h.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
            while len(rest) < length:
                more = conn.recv(65536)
                if not more:
                    break
                rest += more
            behaviour = target.split("?")[0].strip("/").split("/")[0]
            with self.lock:
                self.hits[behaviour] += 1
            if behaviour.startswith("echo-"):
                self.echo(conn, behaviour)
            else:
                getattr(self, "b_" + behaviour, self.b_ok)(conn)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _stream(self, conn: socket.socket, head: bytes, chunked: bool = False) -> None:
        conn.sendall(head)
        framed = b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n" if chunked else CHUNK
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            conn.sendall(framed)

    def b_ok(self, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")

    def b_endless500(self, conn):
        self._stream(conn, b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n")

    def b_endless200(self, conn):
        self._stream(conn, b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n", chunked=True)

    def b_huge500(self, conn):
        size = 512 * 1024 * 1024
        conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % size)
        sent = 0
        while sent < size and not self.stop.is_set():
            conn.sendall(CHUNK)
            sent += len(CHUNK)

    def b_silent(self, conn):
        self.stop.wait(120)

    def b_slowheaders(self, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nx-slow: ")
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            conn.sendall(b"a")
            self.stop.wait(1)

    def b_toomany(self, conn):
        conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 999999999\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

    def b_redirect(self, conn):
        conn.sendall(
            b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:%d/landing\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % self.port
        )

    def b_landing(self, conn):
        self.b_ok(conn)

    def echo(self, conn, behaviour: str):
        """A 400 whose body echoes the secrets in one encoding a platform might use."""
        url = self.url(behaviour)
        form = behaviour.split("-", 1)[1]
        body = {
            "raw": f"invalid_token for {url}",
            "percent": "invalid_token for " + urllib.parse.quote(url, safe=""),
            "json": json.dumps({"ok": False, "error": f"no_hook {url}"}).replace("/", "\\/"),
            "bare": f"token {QUERY_TOKEN} for hook {PATH_TOKEN}; auth Bearer {BEARER}",
            # The error is cut at about 200 characters: make the cut land 16
            # characters into a bare token.
            "cut": "e" * (200 - len("HTTP 400 Bad Request: ") - 16) + PATH_TOKEN,
        }[form].encode()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))

    # Prometheus behaviours (the query URL is /<behaviour>/api/v1/query).
    def b_prommany(self, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(self.many) + self.many)

    def b_promendless(self, conn):
        self._stream(conn, b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"status":"success","data":{"resultType":"vector","result":[')

    def b_promsilent(self, conn):
        self.b_silent(conn)

    def b_promecho(self, conn):
        err = json.dumps(
            {"status": "error", "errorType": "bad_data", "error": f"bad token {BEARER} / {urllib.parse.quote(BEARER)} in {self.url('x')}"}
        ).replace("/", "\\/")
        body = err.encode()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))


# (phase, what points at the hostile server, behaviour)
PHASES = [
    ("webhook-endless-500", "webhook", "endless500"),
    ("webhook-endless-200", "webhook", "endless200"),
    ("webhook-huge-500", "webhook", "huge500"),
    ("webhook-silent", "webhook", "silent"),
    ("webhook-slow-headers", "webhook", "slowheaders"),
    ("webhook-429-absurd-retry-after", "webhook", "toomany"),
    ("webhook-redirect", "webhook", "redirect"),
    ("webhook-echo-raw", "webhook", "echo-raw"),
    ("webhook-echo-percent-encoded", "webhook", "echo-percent"),
    ("webhook-echo-json-escaped", "webhook", "echo-json"),
    ("webhook-echo-bare-tokens", "webhook", "echo-bare"),
    ("webhook-echo-cut-token", "webhook", "echo-cut"),
    ("slack-endless-500", "slack", "endless500"),
    ("slack-echo-bare-tokens", "slack", "echo-bare"),
    ("slack-echo-json-escaped", "slack", "echo-json"),
    ("prometheus-100k-series", "prometheus", "prommany"),
    ("prometheus-endless", "prometheus", "promendless"),
    ("prometheus-silent", "prometheus", "promsilent"),
    ("prometheus-echo-secrets", "prometheus", "promecho"),
]


def secret_forms(kind: str) -> dict[str, str]:
    """Every form of every secret of an action of `kind` that must not appear
    in an output: the URL (webhook, Slack), the bearer token (webhook,
    Prometheus)."""
    forms = {}
    secrets = []
    if kind in ("webhook", "slack"):
        secrets += [
            ("url", f"/hooks/{PATH_TOKEN}?token={QUERY_TOKEN}"),
            ("path-token", PATH_TOKEN),
            ("query-token", QUERY_TOKEN),
        ]
    if kind in ("webhook", "prometheus"):
        secrets.append(("bearer", BEARER))
    for name, s in secrets:
        forms[f"{name} raw"] = s
        forms[f"{name} percent-encoded"] = urllib.parse.quote(s, safe="")
        forms[f"{name} json-escaped"] = json.dumps(s)[1:-1].replace("/", "\\/")
    for name, tok in secrets:
        if name != "url":
            forms[f"{name} cut (10-char prefix)"] = tok[:10]
    return forms


def config_for(kind: str, behaviour: str, server: HostileServer, port: int, work) -> str:
    worker = """worker:
  poll_interval: 200ms
  backoff_initial: 200ms
  backoff_max: 2s
  max_attempts: 3
"""
    if kind in ("webhook", "slack"):
        actions = f"""  hostile:
    type: {kind}
    url: "{server.url(behaviour)}"
    timeout: 5s
    max_attempts: 3
"""
        if kind == "webhook":
            actions += f"    bearer_token: {BEARER}\n"
        return base_config(port, work, actions, ["hostile"], worker)
    actions = f"""  sink:
    type: webhook
    url: "http://127.0.0.1:{server.port}/ok/sink"
    timeout: 5s
"""
    extra = (
        worker
        + f"""prometheus:
  url: http://127.0.0.1:{server.port}/{behaviour}
  timeout: 5s
  bearer_token: {BEARER}
enrichments:
  hostile: {{query: 'm{{uid="{{{{ labels.uid }}}}"}}', by: model_name}}
"""
    )
    cfg = base_config(port, work, actions, ["sink"], extra)
    return cfg.replace("route:\n  actions: [sink]\n", "route:\n  actions: [sink]\n  enrich: [hostile]\n")


def run_phase(name, kind, behaviour, server, args) -> dict:
    forms = secret_forms(kind)
    work = workdir("hostile")
    port = free_port()
    router = Router(work, config_for(kind, behaviour, server, port, work), port)
    router.start()
    sent = []
    for i in range(2):
        uid = f"{name}-{i}"
        status, _ = request(port, "POST", "/api/v1/alerts", notification(uid, "HostileProbe"))
        sent.append(status)
    started = time.monotonic()
    ended_after = None
    killed_at_cap = False
    last_poll = 0.0
    rows = []
    while time.monotonic() - started < args.bound:
        rss = proc_status(router.pid, "VmRSS") or 0
        router.sample_rss()
        if rss > args.kill_rss_mb * 1024:
            router.kill9()
            killed_at_cap = True
            break
        if not router.alive():
            break
        if time.monotonic() - last_poll > 0.5:
            last_poll = time.monotonic()
            try:
                rows = router.all_notifications()
            except (OSError, RuntimeError):
                rows = []
            if len(rows) == 2 and all(r["state"] == "done" for r in rows):
                ended_after = time.monotonic() - started
                break
        time.sleep(0.05)

    outputs = router.log.read_bytes().decode("utf-8", "replace")
    details = []
    if router.alive():
        try:
            for r in router.all_notifications():
                details.append(json.dumps(router.get_json(f"/api/v1/notifications/{r['id']}")))
            details.append(json.dumps(router.get_json("/api/v1/dead-letters")))
            _, metrics = request(port, "GET", "/metrics")
            details.append(metrics.decode("utf-8", "replace"))
        except (OSError, RuntimeError) as e:
            details.append(f"(API unavailable: {e})")
    router.stop(within=10)
    outputs += router.log.read_bytes().decode("utf-8", "replace")
    text = outputs + "\n".join(details)
    leaks = sorted({form for form, s in forms.items() if s in text})
    dead = sum(1 for r in rows if r["state"] == "done")
    return {
        "phase": name,
        "peak_rss_mb": round(router.peak_rss_kb / 1024, 1),
        "ended_s": None if ended_after is None else round(ended_after, 1),
        "killed_at_cap": killed_at_cap,
        "accepted": sent,
        "done": dead,
        "leaks": leaks,
        "redirect_followed": server.hits["landing"] if behaviour == "redirect" else 0,
        "workdir": str(work),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated phase names")
    ap.add_argument("--bound", type=float, default=60, help="seconds for every run to end")
    ap.add_argument("--rss-bound-mb", type=float, default=100)
    ap.add_argument("--kill-rss-mb", type=float, default=1536)
    args = ap.parse_args()
    only = {p for p in args.only.split(",") if p}
    server = HostileServer()
    broken = []
    for name, kind, behaviour in PHASES:
        if only and name not in only:
            continue
        server.hits.clear()
        r = run_phase(name, kind, behaviour, server, args)
        problems = []
        if r["killed_at_cap"]:
            problems.append(f"RSS over {args.kill_rss_mb:.0f} MB (killed)")
        elif r["peak_rss_mb"] > args.rss_bound_mb:
            problems.append(f"peak RSS {r['peak_rss_mb']} MB > {args.rss_bound_mb:.0f} MB")
        if r["ended_s"] is None and not r["killed_at_cap"]:
            problems.append(f"runs not ended within {args.bound:.0f}s")
        if r["accepted"] != [200, 200]:
            problems.append(f"ingest answered {r['accepted']}")
        if r["redirect_followed"]:
            problems.append("redirect followed")
        if r["leaks"]:
            by_secret: dict[str, list[str]] = {}
            for leak in r["leaks"]:
                secret, _, form = leak.partition(" ")
                by_secret.setdefault(secret, []).append(form)
            problems.append(
                "secret in outputs: "
                + ", ".join(f"{k} ({'/'.join(v)})" for k, v in sorted(by_secret.items()))
            )
        print(
            f"hostile: {name:32} peak_rss_mb={r['peak_rss_mb']:<8} "
            f"ended_s={r['ended_s']} {'OK' if not problems else 'BROKEN: ' + '; '.join(problems)}",
            flush=True,
        )
        if problems:
            broken.append(name)
        else:
            discard(Path(r["workdir"]))
    server.stop.set()
    if broken:
        print(f"hostile: FAIL: {len(broken)} phase(s) broke a promise: {', '.join(broken)}")
        return 1
    print(f"hostile: PASS: every phase under {args.rss_bound_mb:.0f} MB, ended within {args.bound:.0f}s, no secret out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
