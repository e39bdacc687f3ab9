#!/usr/bin/env python3
"""Connection abuse against a running router: N connections that stall in
their request head, then one fresh request. Prints the router's RSS (VmRSS,
and the peak VmHWM) and whether the fresh request was answered.

usage: slow_clients.py PID HOST:PORT [--connections 1000] [--pad 300000]

--pad is how many header bytes each connection sends before it stalls (an
unterminated `X-Pad:` header). Loopback only.
"""
import argparse
import json
import socket
import time


def rss_kib(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                fields[k] = int(v.split()[0])
    return fields


def fresh_request(host, port, timeout):
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: router\r\nConnection: close\r\n\r\n")
            data = b""
            while not data.endswith(b"}"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        status = data.split(b"\r\n", 1)[0].decode(errors="replace")
    except OSError as e:
        status = f"error: {e}"
    return status, round(time.monotonic() - started, 3)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("pid", type=int)
    p.add_argument("addr")
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--pad", type=int, default=300_000)
    p.add_argument("--timeout", type=float, default=5.0)
    a = p.parse_args()
    host, port = a.addr.rsplit(":", 1)
    port = int(port)
    before = rss_kib(a.pid)
    head = b"POST /api/v1/alerts HTTP/1.1\r\nHost: router\r\nX-Pad: " + b"a" * a.pad
    socks, refused = [], 0
    for _ in range(a.connections):
        try:
            s = socket.create_connection((host, port), timeout=0.5)
            s.settimeout(2)
            try:
                s.sendall(head)
            except OSError:
                pass  # the router closed it (431) or its buffers are full
            socks.append(s)
        except OSError:
            refused += 1
    time.sleep(1)  # let the router read what was sent
    after = rss_kib(a.pid)
    status, took = fresh_request(host, port, a.timeout)
    print(json.dumps({
        "connections": a.connections, "pad_bytes": a.pad, "refused": refused,
        "rss_before_kib": before["VmRSS"], "rss_after_kib": after["VmRSS"],
        "peak_kib": after["VmHWM"], "fresh_request": status, "fresh_request_s": took,
    }))
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
