"""Shared pieces of the reliability scripts: the router process, ports,
config files, loopback HTTP. Python 3.11 standard library only.

Everything listens and connects on 127.0.0.1. Every wait has a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = ROOT / "target" / "release" / "mlops-alert-router"


def router_bin() -> Path:
    path = Path(os.environ.get("ROUTER_BIN", DEFAULT_BIN)).resolve()
    if not path.is_file():
        raise SystemExit(
            f"router binary {path} not found: run `cargo build --release --bins` "
            "(or set ROUTER_BIN)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"router-{prefix}-"))


def discard(work: Path) -> None:
    """Removes a passing run's directory (KEEP_WORKDIR=1 keeps it)."""
    if not os.environ.get("KEEP_WORKDIR"):
        shutil.rmtree(work, ignore_errors=True)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """One request on a fresh connection; raises OSError on connection failure."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"content-type": "application/json"} if body is not None else {}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def proc_status(pid: int, field: str) -> int | None:
    """A kB field of /proc/PID/status (VmRSS, VmHWM), in kB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Router:
    """The release router binary with a generated config, on a free port."""

    def __init__(self, work: Path, config_yaml: str, port: int, env: dict | None = None):
        self.work = work
        self.port = port
        self.config = work / "router.yaml"
        self.config.write_text(config_yaml)
        self.log = work / "router.log"
        self.env = dict(os.environ, **(env or {}))
        self.env.pop("RUST_LOG", None)
        self.proc: subprocess.Popen | None = None
        self.peak_rss_kb = 0

    def start(self, ready_within: float = 30.0) -> None:
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(router_bin()), "--config", str(self.config), "serve"],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.work,
        )
        logf.close()
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited with {self.proc.returncode}; see {self.log}")
            try:
                status, _ = request(self.port, "GET", "/readyz", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"router not ready within {ready_within}s; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def sample_rss(self) -> int:
        """Records and returns the process's peak RSS so far (VmHWM, kB)."""
        if self.proc is None:
            return self.peak_rss_kb
        hwm = proc_status(self.proc.pid, "VmHWM") or 0
        self.peak_rss_kb = max(self.peak_rss_kb, hwm)
        return hwm

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.sample_rss()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, within: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL after `within` seconds. Returns the exit code."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.sample_rss()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return None

    def alive(self) -> bool:
        return bool(self.proc) and self.proc.poll() is None

    def get_json(self, path: str, timeout: float = 10.0):
        status, body = request(self.port, "GET", path, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
        return json.loads(body)

    def all_notifications(self) -> list[dict]:
        rows, before = [], None
        while True:
            path = "/api/v1/notifications?limit=500" + (f"&before={before}" if before else "")
            page = self.get_json(path)
            rows.extend(page["notifications"])
            before = page.get("next_before")
            if not before:
                return rows


def base_config(
    port: int, work: Path, actions_yaml: str, names: list[str], extra: str = ""
) -> str:
    """Router config: loopback port, a data dir under `work`, every alert routed
    to the actions `names` defined in `actions_yaml` (YAML, indented 2)."""
    return f"""server:
  listen: 127.0.0.1:{port}
  grace_period: 3s
storage:
  path: {work}/data/router.db
log:
  format: json
  level: info
actions:
{actions_yaml}
route:
  actions: [{", ".join(names)}]
{extra}"""


def notification(uid: str, alertname: str = "ReliabilityProbe", extra_labels: dict | None = None) -> bytes:
    """An Alertmanager v4 notification with one firing alert labelled `uid`."""
    labels = {"alertname": alertname, "uid": uid, "severity": "warning"}
    labels.update(extra_labels or {})
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps(
        {
            "version": "4",
            "receiver": "reliability",
            "status": "firing",
            "groupKey": f'{{}}:{{uid="{uid}"}}',
            "groupLabels": {"uid": uid},
            "commonLabels": labels,
            "commonAnnotations": {"summary": f"probe {uid}"},
            "externalURL": "http://127.0.0.1:9093",
            "truncatedAlerts": 0,
            "alerts": [
                {
                    "status": "firing",
                    "labels": labels,
                    "annotations": {"summary": f"probe {uid}"},
                    "startsAt": starts,
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://127.0.0.1:9090/graph",
                }
            ],
        }
    ).encode()
