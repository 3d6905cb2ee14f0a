"""The processes a fault test owns and breaks: a PostgreSQL cluster it stops, crashes and
starts again, and a Redis it kills. Never the machine's own servers (5432, 6379).

The cluster is `initdb`'d in a temporary directory with the machine's PostgreSQL binaries, on a
free port (as tests/replicas builds its pair). Commits are synchronous: a crash
(`-m immediate`) must not lose a commit that was acknowledged, or the tests could not tell the
server's losses from the database's. fsync stays off: a killed process loses nothing the
kernel already has, and the machine does not crash in these tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.replicas.cluster import PG_BIN, Node, _run, missing
from tests.support.server import free_port, start_redis

__all__ = ["Cluster", "Redis", "missing"]

SETTINGS = "-c fsync=off -c full_page_writes=off -c max_connections=100"


class Cluster:
    """One PostgreSQL server of the test's own, stopped and started at will."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rt-faults-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.node = Node(self.root, "data")
        self.port = self.node.port

    def dsn(self, database: str = "postgres") -> str:
        return self.node.dsn(database)

    def init(self) -> Cluster:
        _run([str(PG_BIN / "initdb"), "-D", str(self.node.data), "-U", "postgres", "-A", "trust",
              "--no-sync", "-E", "UTF8", "--locale=C"])
        return self.start()

    def start(self) -> Cluster:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 {SETTINGS}")
        _run([str(PG_BIN / "pg_ctl"), "-D", str(self.node.data), "-l", str(self.node.log), "-w",
              "-t", "60", "-o", options, "start"], timeout=90)
        return self

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast` (clients are disconnected, a clean shutdown) or `immediate`
        (every process quits at once: crash recovery at the next start)."""
        _run([str(PG_BIN / "pg_ctl"), "-D", str(self.node.data), "-m", mode, "-w", "-t", "30",
              "stop"], timeout=45)

    def running(self) -> bool:
        return self.node.running()

    def close(self) -> None:
        self.node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    """A redis-server of the test's own on a free port, killed and started again on it."""

    def __init__(self, directory: Path) -> None:
        self.binary = shutil.which("redis-server")
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        assert self.binary is not None
        self.proc = start_redis(self.binary, self.port, self.directory)
        return self

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None
