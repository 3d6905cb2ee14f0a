"""The parts of bench/scaleout.py: a `realtime serve --workers N` process and its workers,
every worker's /metrics, the world of services and slots, and the database's truth.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.lib import pg, server
from realtime.db.connect import dsn_for_database
from tests.hosts.clients import World
from tests.support.sockets import holders, workers

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "bench" / "results" / "logs"


@dataclass
class Served:
    """`realtime serve --workers N` on `port`, against `dsn`."""

    proc: Any
    port: int
    dsn: str
    count: int

    def workers(self) -> list[int]:
        """The processes that serve: the workers, or the process itself when it has none."""
        return workers(self.proc.pid) if self.count > 1 else [self.proc.pid]

    def pids(self) -> list[int]:
        return sorted({self.proc.pid, *self.workers()})

    def split(self) -> dict[int, int]:
        """Accepted connections each serving process holds now."""
        held = holders(self.port, self.workers())
        return {pid: sum(1 for p in held.values() if p == pid) for pid in self.workers()}


def spawn(argv: list[str], name: str, env: dict[str, str] | None = None) -> Any:
    """A process of this bench, its output in bench/results/logs/scaleout-NAME.log."""
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / f"scaleout-{name}.log", "wb") as log:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


async def start_serve(dsn: str, port: int, count: int, name: str,
                      env: dict[str, str] | None = None) -> Served:
    """Starts it, then waits until it answers /readyz and every worker's listener is connected
    (each names itself in pg_stat_activity)."""
    proc = spawn([sys.executable, "-m", "realtime", "serve", "--host", "127.0.0.1", "--workers",
                  str(count), "--port", str(port)], name, server.server_env(dsn, env))
    served = Served(proc, port, dsn, count)
    await server.until_ready(proc, port, within=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        names = await listeners(dsn)
        pids = served.workers()
        if len(pids) == count and all(f"realtime-listener:{p}" in names for p in pids):
            return served
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{name}: not every worker's listener connected within 60 s")


async def listeners(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT application_name FROM pg_stat_activity WHERE datname = "
                                "current_database() AND application_name LIKE 'realtime-listener:%'")
        return {r[0] for r in rows}
    finally:
        await conn.close()


async def _get_metrics(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return (await reader.readexactly(length)).decode()
    finally:
        writer.close()


async def queries_by_worker(served: Served) -> dict[int, float]:
    """`realtime_db_queries_total` (both kinds) of each serving process, from one scrape:
    under --workers N whichever worker answers shows every worker's series with a `worker`
    label, and `realtime_worker_info` names the pid behind each index. The answering worker's
    counts are current, the others' as published at most a second before."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = [s for f in text_string_to_metric_families(await _get_metrics(served.port))
               for s in f.samples]
    if served.count == 1:
        return {served.proc.pid: sum(s.value for s in samples
                                     if s.name == "realtime_db_queries_total")}
    pids = {s.labels["worker"]: int(s.labels["pid"]) for s in samples
            if s.name == "realtime_worker_info"}
    got: dict[int, float] = dict.fromkeys(pids.values(), 0.0)
    for s in samples:
        if s.name == "realtime_db_queries_total":
            got[pids[s.labels["worker"]]] += s.value
    if sorted(got) != served.workers():
        raise RuntimeError(f"/metrics shows workers {sorted(got)}, not {served.workers()}")
    return got


async def scratch_database(label: str) -> tuple[str, str]:
    from realtime.db.migrate import migrate

    name = f"rt_bench_so_{label}_{uuid.uuid4().hex[:8]}"
    await pg.create_database(pg.admin_dsn(), name)
    dsn = dsn_for_database(pg.admin_dsn(), name)
    await migrate(dsn, echo=lambda _: None)
    return name, dsn


async def make_world(dsn: str, services: int, slots_per_service: int) -> World:
    from realtime.booking.service import BookingService
    from realtime.db.connect import create_pool

    pool = await create_pool(dsn, 2)
    try:
        booking = BookingService(pool)
        vendor = (await booking.create_vendor("scale-out"))["id"]
        start = datetime(2030, 3, 4, 8, tzinfo=UTC)
        specs = [{"starts_at": (start + timedelta(hours=h)).isoformat(),
                  "ends_at": (start + timedelta(hours=h + 1)).isoformat(),
                  "capacity": 1_000_000} for h in range(slots_per_service)]
        slots = {}
        for i in range(services):
            svc = (await booking.create_service(vendor, f"room {i}", False))["id"]
            made = (await booking.create_slots(svc, specs))["slots"]
            slots[f"service:{svc}"] = [s["id"] for s in made]
        return World(vendor, slots)
    finally:
        await pool.close()


BOOK_SQL = "SELECT rt_book($1::uuid, 1, NULL, NULL, NULL, '', NULL, NULL)"


async def book(dsn: str, slots: list[str]) -> None:
    """One booking on each slot, `rt_book` called directly (like any other writer)."""
    conn = await asyncpg.connect(dsn)
    try:
        for slot in slots:
            await conn.fetchval(BOOK_SQL, slot)
    finally:
        await conn.close()
