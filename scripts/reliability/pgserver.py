"""A throwaway PostgreSQL server for the reliability scripts and benchmarks:
initdb into a temporary directory, pg_ctl on a free loopback port, stopped
and removed at the end. Python 3.11 standard library only.

Debian's `postgresql` package puts the server binaries in
/usr/lib/postgresql/<major>/bin (PG_BINDIR overrides). initdb refuses to
run as root: when this process is root, every server command runs as the
`postgres` user (`runuser -u postgres --`), which then owns the data
directory.

    python3 scripts/reliability/pgserver.py [DIR]   # starts one, prints its URL, stops on Enter
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import free_port


def bindir() -> Path:
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise SystemExit("PostgreSQL server binaries not found: apt-get install postgresql (or set PG_BINDIR)")


class PgServer:
    """One PostgreSQL cluster in `root` (created), listening on 127.0.0.1:port.

    `trust` authentication on loopback only: the cluster lives for one run."""

    def __init__(self, root: Path, port: int | None = None, database: str = "router",
                 synchronous_commit: str = "on") -> None:
        self.root = root
        self.synchronous_commit = synchronous_commit
        self.port = port or free_port()
        self.database = database
        self.bin = bindir()
        self.data = root / "data"
        self.sock = root / "sock"
        self.log = root / "postgres.log"
        self.as_postgres = os.geteuid() == 0
        root.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            # The postgres user must reach root/ through its parents.
            for parent in [root, *root.parents]:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
            for p in (root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, args: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = (["runuser", "-u", "postgres", "--"] if self.as_postgres else []) + args
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)

    def init(self) -> None:
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"])
        # Loopback only, its own socket directory; durable commits (fsync,
        # synchronous_commit on: the defaults) - the proofs rely on them.
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.sock}'\nmax_connections = 200\n"
                f"fsync = on\nsynchronous_commit = {self.synchronous_commit}\nlog_min_messages = warning\n"
            )

    def start(self, timeout: float = 60) -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                   "-t", str(int(timeout)), "start"], timeout=timeout + 10)

    def stop(self, mode: str = "fast") -> None:
        """mode: smart, fast or immediate (a crash: recovery from the WAL at the next start)."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"], check=False)

    def running(self) -> bool:
        return self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "status"], check=False).returncode == 0

    def psql(self, sql: str, database: str | None = None) -> str:
        out = self._run([str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                         "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                         "-d", database or self.database, "-c", sql])
        return out.stdout.strip()

    def create_database(self) -> None:
        self.psql(f'CREATE DATABASE "{self.database}"', database="postgres")

    def setup(self) -> "PgServer":
        """initdb, start, create the database."""
        self.init()
        self.start()
        self.create_database()
        return self


def main() -> int:
    import tempfile
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="router-pg-"))
    pg = PgServer(root / "pg").setup()
    print(pg.url, flush=True)
    try:
        input("PostgreSQL running; Enter stops it\n")
    except EOFError:
        while True:
            time.sleep(3600)
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
