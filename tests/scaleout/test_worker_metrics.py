"""/metrics and /readyz of `realtime serve --workers 2`, the real command line in a subprocess:
whichever worker answers, a scrape shows every live worker's series with a `worker` label, and
/readyz counts what is down in any of them.

Which worker answers a request is chosen from outside: connections are opened until one is held
by the wanted process (tests/support/sockets.py reads that from /proc).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.scaleout.test_workers import (
    Served,
    killed_if_left,
    make_slot,
    serve,
    stop,
    until,
    workers_connected,
    workers_directory,
)
from tests.support.server import free_port
from tests.support.sockets import alive, holders

Samples = list[tuple[str, dict[str, str], float]]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str,
                    path: str, body: bytes) -> tuple[int, bytes]:
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                 f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return int(head.split(b" ", 2)[1]), await reader.readexactly(length)


async def request(served: Served, pid: int | None, method: str, path: str,
                  body: Any = None) -> tuple[int, bytes]:
    """One request answered by worker `pid` (any worker if None): connections are opened until
    that process holds one."""
    data = b"" if body is None else orjson.dumps(body)
    opened = []
    try:
        for _ in range(100):
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            opened.append(writer)
            # Answered once: accepted by a worker, which /proc then names.
            status, _ = await _exchange(reader, writer, "GET", "/healthz", b"")
            assert status == 200
            if pid is None or holders(served.port, [pid]).get(writer.get_extra_info("sockname")[:2]) == pid:
                return await _exchange(reader, writer, method, path, data)
        raise AssertionError(f"no connection reached worker {pid} in 100")
    finally:
        for writer in opened:
            writer.close()


async def scrape(served: Served, pid: int | None = None) -> Samples:
    status, text = await request(served, pid, "GET", "/metrics")
    assert status == 200, text
    assert len(text) < 1 << 20
    decoded = text.decode()
    types = [line for line in decoded.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)), "a family's TYPE twice: not one exposition"
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(decoded)
            for s in f.samples]


def indexes(samples: Samples) -> dict[int, str]:
    """pid -> worker index, from `realtime_worker_info`."""
    return {int(labels["pid"]): labels["worker"] for name, labels, _ in samples
            if name == "realtime_worker_info"}


def booked(samples: Samples) -> dict[str, float]:
    """Successful bookings by worker index."""
    return {labels["worker"]: value for name, labels, value in samples
            if name == "realtime_bookings_total" and labels["operation"] == "book"
            and labels["outcome"] == "ok"}


def environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(p.split("=", 1) for p in pairs if "=" in p)


def serve_one(env: dict[str, str], log: Path) -> Served:
    """`realtime serve` without --workers."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "realtime", "serve", "--port", str(port)],
                                env={**env, "REALTIME_RATE_LIMIT": "0"}, stdout=out,
                                stderr=subprocess.STDOUT)
    return Served(proc, port, log)


async def book(served: Served, pid: int, slot: str, times: int) -> None:
    for i in range(times):
        status, body = await request(served, pid, "POST", "/api/bookings",
                                     {"slot_id": slot, "customer_id": f"c-{pid}-{i}"})
        assert status == 201, body


async def bookings_in(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM rt_reservations WHERE status = "
                                       "'confirmed'"))
    finally:
        await conn.close()


async def test_every_scrape_shows_every_worker(database_url: str, tmp_path: Path) -> None:
    """Scrapes answered by either worker show both workers' series, each labelled; bookings
    made through each worker count in that worker's series, and they add up to the database's."""
    served = serve({**os.environ, "DATABASE_URL": database_url}, tmp_path / "serve.log")
    pids: list[int] = []
    with killed_if_left(served, pids):
        pids[:] = await workers_connected(served, database_url)
        directory = workers_directory(pids[0])
        _, slot = await make_slot(f"http://127.0.0.1:{served.port}")
        wanted = {pids[0]: 3, pids[1]: 5}
        for pid, times in wanted.items():
            await book(served, pid, slot, times)

        async def counted() -> bool:
            # Through each worker: the other's series are as it published them (each second).
            for answering in pids:
                index = indexes(samples := await scrape(served, answering))
                if set(index) != set(pids) or booked(samples) != {
                        index[p]: float(n) for p, n in wanted.items()}:
                    return False
            return True

        await until("each worker's bookings in scrapes through either", counted, 5, served)
        assert await bookings_in(database_url) == sum(wanted.values())
        for answering in [*pids, *pids, None, None]:
            samples = await scrape(served, answering)
            index = indexes(samples)
            assert set(index) == set(pids) and sorted(index.values()) == ["0", "1"], index
            assert all("worker" in labels for _, labels, _ in samples)
            assert booked(samples) == {index[p]: float(n) for p, n in wanted.items()}
            assert sum(booked(samples).values()) == sum(wanted.values())
            for family in ("realtime_db_queries_total", "process_resident_memory_bytes",
                           "realtime_ws_connections"):
                got = {labels["worker"] for name, labels, _ in samples if name == family}
                assert got == {"0", "1"}, (family, got)
        assert directory.is_dir() and sorted(p.name for p in directory.glob("*.json")) == [
            "worker-0.json", "worker-1.json"]
        code, _ = await asyncio.to_thread(stop, served)
    assert code == 0, served.output()
    assert not directory.exists(), "the workers' directory outlived the server"


async def test_a_killed_worker_leaves_metrics(database_url: str, tmp_path: Path) -> None:
    """SIGKILL to a worker: its series leave every scrape within 3 s; the worker uvicorn starts
    in its place takes its index, with counters from zero."""
    served = serve({**os.environ, "DATABASE_URL": database_url}, tmp_path / "serve.log")
    pids: list[int] = []
    with killed_if_left(served, pids):
        pids[:] = await workers_connected(served, database_url)
        _, slot = await make_slot(f"http://127.0.0.1:{served.port}")
        victim, survivor = pids
        await book(served, victim, slot, 2)
        await book(served, survivor, slot, 1)

        async def both() -> dict[int, str] | None:
            index = indexes(await scrape(served))
            return index if set(index) == set(pids) else None

        index = await until("both workers in a scrape", both, 5, served)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()

        async def gone() -> Samples | None:
            samples = await scrape(served)
            return samples if victim not in indexes(samples) else None

        samples = await until("the killed worker's series gone", gone, 3, served)
        assert time.monotonic() - killed < 3
        assert booked(samples).get(index[survivor]) == 1.0
        assert {labels["worker"] for name, labels, _ in samples
                if name == "realtime_db_queries_total"} <= {"0", "1"}

        async def replaced() -> dict[int, str] | None:
            now = indexes(await scrape(served))
            return now if len(now) == 2 and victim not in now else None

        now = await until("a new worker in its place", replaced, 30, served)
        newcomer = next(p for p in now if p != survivor)
        pids.append(newcomer)
        assert alive(newcomer) and not alive(victim)
        assert now == {survivor: index[survivor], newcomer: index[victim]}
        # The newcomer's counters start from zero: none of the killed worker's are shown.
        samples = await scrape(served, survivor)
        assert booked(samples) == {index[survivor]: 1.0}
        code, _ = await asyncio.to_thread(stop, served)
    assert code == 0, served.output()


async def test_readyz_counts_every_worker(database_url: str, tmp_path: Path) -> None:
    """While one worker's listener keeps losing its database connection, /readyz answered by
    the other worker says 503 naming that worker's listener; ready again once it reconnects."""
    served = serve({**os.environ, "DATABASE_URL": database_url}, tmp_path / "serve.log")
    pids: list[int] = []
    with killed_if_left(served, pids):
        pids[:] = await workers_connected(served, database_url)
        blind, healthy = pids
        index = indexes(await scrape(served))

        async def ready() -> bool:
            return (await request(served, healthy, "GET", "/readyz"))[0] == 200

        # A worker's first publication may predate its listener's connection.
        await until("ready through the healthy worker", ready, 5, served)
        admin = await asyncpg.connect(database_url)
        cutting = asyncio.Event()

        async def cut() -> None:
            while not cutting.is_set():
                await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE application_name = $1", f"realtime-listener:{blind}")
                await asyncio.sleep(0.02)

        cutter = asyncio.create_task(cut())
        try:
            async def refused() -> dict[str, Any] | None:
                status, body = await request(served, healthy, "GET", "/readyz")
                return orjson.loads(body)["error"] if status == 503 else None

            error = await until("503 from the healthy worker", refused, 10, served)
            assert error["code"] == "NOT_READY"
            assert list(error["down"]) == ["listener"], error
            assert error["down"]["listener"].startswith(f"worker {index[blind]}: "), error
        finally:
            cutting.set()
            await cutter
            await admin.close()
        await until("ready again", ready, 20, served)
        code, _ = await asyncio.to_thread(stop, served)
    assert code == 0, served.output()


async def test_one_process_has_no_worker_label(database_url: str, tmp_path: Path) -> None:
    """`realtime serve` in one process: /metrics as ever, without `worker` labels."""
    served = serve_one({**os.environ, "DATABASE_URL": database_url}, tmp_path / "serve.log")
    proc = served.proc
    try:
        async def answered() -> Samples | None:
            try:
                return await scrape(served)
            except OSError:
                return None

        samples = await until("/metrics", answered, 40, served)
        names = {name for name, _, _ in samples}
        assert "realtime_db_queries_total" in names and "realtime_worker_info" not in names
        assert not any("worker" in labels for _, labels, _ in samples)
        assert "REALTIME_WORKERS_DIR" not in environ(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, served.output()


pytestmark = pytest.mark.slow
