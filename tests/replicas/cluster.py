"""A PostgreSQL primary and its streaming hot standby, both clusters of the tests' own.

`initdb` a primary in a temporary directory, `pg_basebackup -R` a standby from it (streaming
replication, `hot_standby` on), each on a free loopback port with its sockets in that
directory. The machine's PostgreSQL is not touched. `close()` stops both servers and removes
the directory, whatever state they were left in.

PostgreSQL refuses to run as root: as root, every binary runs as the `postgres` user (setpriv
execs in place, so the pid stays the server's); as anyone else, as that user.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from tests.support.server import free_port


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_basebackup"))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = Path(os.environ.get("PG_BIN") or _pg_bin())
PROGRAMS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
# A test database: durability is not under test, speed on two shared cores is.
FAST = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100")


def missing() -> str | None:
    """Why a primary and standby cannot be built here, or None."""
    absent = [p for p in PROGRAMS if not (PG_BIN / p).exists()]
    if absent:
        return f"PostgreSQL server binaries missing in {PG_BIN}: {', '.join(absent)}"
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            return "running as root needs setpriv to start PostgreSQL as another user"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root needs a `postgres` user to run PostgreSQL as"
    return None


def _as_owner(argv: Sequence[str]) -> list[str]:
    if os.geteuid() != 0:
        return list(argv)
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv]


def _run(argv: Sequence[str], timeout: float = 60) -> None:
    done = subprocess.run(_as_owner(argv), capture_output=True, timeout=timeout,
                          env={**os.environ, "PGPASSFILE": os.devnull})
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n"
                           f"{done.stdout.decode(errors='replace')}"
                           f"{done.stderr.decode(errors='replace')}")


class Node:
    """One server of the pair: a data directory, a port, a log."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.data = root / name
        self.log = root / f"{name}.log"
        self.port = free_port()

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 {FAST}"
        _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
              "-t", "60", "-o", options, "start"], timeout=90)

    def running(self) -> bool:
        return self._pid() is not None

    def stop(self) -> None:
        """Immediate shutdown (a crash, as far as clients can tell); kill it if that fails."""
        if not (self.data / "postmaster.pid").exists():
            return
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                  "stop"], timeout=30)
        pid = self._pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                if self._pid() is None:
                    break
                time.sleep(0.05)

    def _pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Pair:
    """A primary and a hot standby streaming from it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rt-replica-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.primary = Node(self.root, "primary")
        self.standby = Node(self.root, "standby")

    def start(self) -> Pair:
        try:
            _run([str(PG_BIN / "initdb"), "-D", str(self.primary.data), "-U", "postgres",
                  "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"])
            self.primary.start()
            # initdb -A trust lets replication connections in from loopback.
            _run([str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port),
                  "-U", "postgres", "-D", str(self.standby.data), "-R", "-X", "stream",
                  "-c", "fast"])
            self.standby.start()
        except BaseException:
            logs = f"primary:\n{self.primary.tail()}\nstandby:\n{self.standby.tail()}"
            self.close()
            raise RuntimeError(f"could not build a primary and its standby:\n{logs}") from None
        return self

    def close(self) -> None:
        for node in (self.standby, self.primary):
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- the standby's replay -------------------------------------------------------------

    async def _standby(self, sql: str) -> object:
        conn = await asyncpg.connect(self.standby.dsn(), timeout=10)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async def pause_replay(self) -> None:
        """Stop applying WAL (the standby still receives it) until `resume_replay`."""
        await self._standby("SELECT pg_wal_replay_pause()")
        for _ in range(200):
            if await self._standby("SELECT pg_get_wal_replay_pause_state()") == "paused":
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the standby did not pause its replay")

    async def resume_replay(self) -> None:
        await self._standby("SELECT pg_wal_replay_resume()")

    async def heal(self) -> None:
        """The standby running and replaying, whatever a test left it in."""
        if not self.standby.running():
            self.standby.start()
        await self.resume_replay()

