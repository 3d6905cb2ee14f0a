"""PostgreSQL stopped for 10 s, then crashed and restarted (`-m immediate`), under clients that
book, hold, confirm, release and cancel and subscribers that watch, all of it checked."""

from __future__ import annotations

import asyncio
import time

import pytest

from realtime.httpclient import get
from tests.faults.conftest import coalesced, realtime_check
from tests.faults.history import History, check
from tests.faults.processes import Cluster
from tests.faults.workload import ops_between, running, seed
from tests.support.server import ServerProcess

pytestmark = pytest.mark.faults

OUTAGE = 10.0


async def first_success_after(history: History, since: float, within: float = 5.0) -> float:
    """Seconds from `since` until a booking invoked after it was answered 201."""
    deadline = time.monotonic() + within + 1
    while time.monotonic() < deadline:
        done = [op.completed for op in history.ops
                if op.kind == "book" and op.status == 201 and op.invoked >= since
                and op.completed is not None]
        if done:
            return min(done) - since
        await asyncio.sleep(0.05)
    raise AssertionError(f"no booking succeeded within {within}s of the database's return")


async def test_database_stopped_for_ten_seconds(cluster: Cluster, fault_db: str, tmp_path):
    """During a 10 s stop every booking is 503 DATABASE_UNAVAILABLE within 2 s, /readyz is
    503, sockets stay open; after the start bookings succeed within 5 s by themselves, every
    subscriber converges, and the history holds no anomaly."""
    server = ServerProcess(fault_db, log_dir=tmp_path).start()
    history = History()
    try:
        world = await seed(server.url)
        async with running(history, server.url, world) as load:
            await asyncio.sleep(1.5)
            await asyncio.to_thread(cluster.stop, "fast")
            down = time.monotonic()
            await asyncio.sleep(1)
            ready = await get(server.url + "/readyz")
            await asyncio.sleep(OUTAGE - (time.monotonic() - down))
            back = time.monotonic()
            await asyncio.to_thread(cluster.start)
            recovered = await first_success_after(history, back)
            await asyncio.sleep(1)
            await load.stop_booking()
            converge, db = await load.converged(fault_db)
            converge = time.monotonic() - back
            gaps = await coalesced(server.url)
    finally:
        server.stop()
    during = ops_between(history, down, back)
    assert len(during) > 20, history.summary()
    wrong = [(op.status, op.code, op.latency) for op in during
             if op.status != 503 or op.code != "DATABASE_UNAVAILABLE" or op.latency > 2]
    assert not wrong, wrong[:10]
    assert ready.status == 503 and "database" in ready.json()["error"]["down"], ready
    assert all(not s.drops for s in load.subscribers), [s.drops for s in load.subscribers]
    assert check(history, db, gaps) == [], history.summary()
    assert realtime_check(fault_db).returncode == 0
    print(f"\ndatabase stopped {OUTAGE:g}s: bookings back {recovered:.2f}s after the start, "
          f"subscribers converged {converge:.2f}s after it; {history.summary()}")


async def test_database_crash_and_recovery(cluster: Cluster, fault_db: str, tmp_path):
    """PostgreSQL killed (`-m immediate`) and started again (crash recovery) under load:
    bookings come back within 5 s, every 201 is in the database, subscribers converge."""
    server = ServerProcess(fault_db, log_dir=tmp_path).start()
    history = History()
    try:
        world = await seed(server.url)
        async with running(history, server.url, world) as load:
            await asyncio.sleep(2)
            await asyncio.to_thread(cluster.stop, "immediate")
            down = time.monotonic()
            await asyncio.to_thread(cluster.start)
            back = time.monotonic()
            recovered = await first_success_after(history, back)
            await asyncio.sleep(1.5)
            await load.stop_booking()
            converge, db = await load.converged(fault_db)
            gaps = await coalesced(server.url)
    finally:
        server.stop()
    # The database may be back before pg_ctl says so: answers then are 201s and 409s.
    during = ops_between(history, down, back)
    wrong = [(op.status, op.code, op.latency) for op in during
             if op.status is None or op.latency > 2
             or (op.status >= 500 and op.code != "DATABASE_UNAVAILABLE")]
    assert not wrong, wrong[:10]
    assert any(op.code == "DATABASE_UNAVAILABLE" for op in during), history.summary()
    assert check(history, db, gaps) == [], history.summary()
    assert realtime_check(fault_db).returncode == 0
    print(f"\ndatabase crashed: down {back - down:.2f}s, bookings back {recovered:.2f}s after "
          f"the start, subscribers converged {converge:.2f}s after the load; "
          f"{history.summary()}")
