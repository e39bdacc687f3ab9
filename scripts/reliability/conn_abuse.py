#!/usr/bin/env python3
"""Connection abuse: thousands of slow or idle connections held open against
the router while fresh requests keep arriving.

The abusive connections (an equal share of each kind, none reconnects):
- half headers: a request line and part of a header, then nothing;
- stalled body: complete headers with `content-length: 100000`, 10 bytes of body;
- idle keep-alive: one complete GET, its answer read, then nothing;
- silent: connected, nothing sent.

The router runs with a soft file-descriptor limit of --router-nofile (1024
by default, a common container default) so the abuse reaches it.

Promise: fresh requests are still answered. A probe (alternately GET /readyz
and a POST of a new notification, each on a new connection, 10 s timeout)
goes out every second for --duration seconds; the promise holds when at
least 95% of the probes are answered and the last 15 all are. Peak RSS and
the router's open descriptors are reported.

Usage: conn_abuse.py [--connections N] [--duration S] [--router-nofile N]
Prints a figures line and a verdict; exit 0 when the promise holds, 1 if not.
"""

from __future__ import annotations

import argparse
import resource
import socket
import sys
import time

from common import Router, base_config, discard, free_port, notification, open_fds, proc_status, request, workdir

KINDS = ("half-headers", "stalled-body", "idle-keepalive", "silent")


def abuse(port: int, kind: str) -> socket.socket | None:
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect(("127.0.0.1", port))
        if kind == "half-headers":
            s.sendall(b"POST /api/v1/alerts HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-ty")
        elif kind == "stalled-body":
            s.sendall(
                b"POST /api/v1/alerts HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                b"content-length: 100000\r\n\r\n{\"version\":"
            )
        elif kind == "idle-keepalive":
            # A complete request; its answer is left unread in our buffer and
            # the connection then idles (keep-alive) from the server's view.
            s.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        return s
    except OSError:
        s.close()
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=3000)
    ap.add_argument("--duration", type=float, default=45)
    ap.add_argument("--router-nofile", type=int, default=1024)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    work = workdir("conn-abuse")
    port = free_port()
    actions = "  quiet:\n    type: log\n"
    router = Router(work, base_config(port, work, actions, ["quiet"]).replace("level: info", "level: warn"), port)
    nofile = args.router_nofile

    # The router gets its own descriptor limit (prlimit on the child).
    def start():
        router.start()
        resource.prlimit(router.pid, resource.RLIMIT_NOFILE, (nofile, hard))

    start()
    baseline_rss = proc_status(router.pid, "VmRSS") or 0

    conns: list[socket.socket] = []
    failed = {k: 0 for k in KINDS}
    t0 = time.monotonic()
    open_deadline = t0 + 60
    for i in range(args.connections):
        if time.monotonic() > open_deadline:
            break
        kind = KINDS[i % len(KINDS)]
        s = abuse(port, kind)
        if s is None:
            failed[kind] += 1
        else:
            conns.append(s)
        if i % 100 == 0:
            router.sample_rss()
    opened_in = time.monotonic() - t0

    probes = []  # (t, kind, answered, latency)
    peak_fds = 0
    start_probe = time.monotonic()
    i = 0
    while time.monotonic() - start_probe < args.duration:
        t = time.monotonic()
        router.sample_rss()
        peak_fds = max(peak_fds, open_fds(router.pid) or 0)
        kind = "readyz" if i % 2 == 0 else "post"
        try:
            if kind == "readyz":
                status, _ = request(port, "GET", "/readyz", timeout=10)
            else:
                status, _ = request(port, "POST", "/api/v1/alerts", notification(f"probe-{i}"), timeout=10)
            answered = status == 200
        except OSError:
            answered = False
        probes.append((t - start_probe, kind, answered, time.monotonic() - t))
        i += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))

    still_open = 0
    for s in conns:
        try:
            s.settimeout(0)
            data = s.recv(1, socket.MSG_PEEK)
            if data != b"":
                still_open += 1
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
        finally:
            s.close()
    router.sample_rss()
    rss_now = proc_status(router.pid, "VmRSS") or 0
    router.stop()

    answered = sum(1 for p in probes if p[2])
    tail = probes[-15:]
    tail_ok = all(p[2] for p in tail)
    worst = max((p[3] for p in probes if p[2]), default=0)
    first_fail = next((round(p[0], 1) for p in probes if not p[2]), None)
    print(
        f"conn-abuse: connections={args.connections} opened={len(conns)} open_failed={sum(failed.values())} "
        f"opened_in_s={opened_in:.1f} router_nofile={nofile} probes={len(probes)} answered={answered} "
        f"last15_answered={sum(1 for p in tail if p[2])} first_unanswered_at_s={first_fail} "
        f"slowest_answer_s={worst:.2f} abusers_still_open_at_end={still_open} "
        f"router_peak_fds={peak_fds} rss_baseline_mb={baseline_rss / 1024:.1f} "
        f"rss_end_mb={rss_now / 1024:.1f} peak_rss_mb={router.peak_rss_kb / 1024:.1f} workdir={work}"
    )
    if probes and answered >= 0.95 * len(probes) and tail_ok:
        print(f"conn-abuse: PASS: {answered}/{len(probes)} fresh requests answered under {args.connections} abusive connections")
        discard(work)
        return 0
    print(f"conn-abuse: FAIL: only {answered}/{len(probes)} fresh requests answered under {args.connections} abusive connections")
    return 1


if __name__ == "__main__":
    sys.exit(main())
