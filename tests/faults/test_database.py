"""PostgreSQL stopped for 10 s, then crashed and restarted (`-m immediate`), under clients that
book, hold, confirm, release and cancel and subscribers that watch, all of it checked."""

from __future__ import annotations

import asyncio
import time

import pytest

from realtime.httpclient import get
from tests.faults.conftest import realtime_check
from tests.faults.history import History, Op
from tests.faults.processes import Cluster
from tests.faults.workload import STEADY, ops_between, under_load
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


def not_a_quick_503(ops: list[Op]) -> list[tuple[int | None, str | None, float | None]]:
    """Bookings not answered 503 DATABASE_UNAVAILABLE within 2 s."""
    return [(op.status, op.code, op.latency) for op in ops
            if op.status != 503 or op.code != "DATABASE_UNAVAILABLE"
            or op.latency is None or op.latency > 2]


async def ready_after(url: str, since: float, within: float = 5.0) -> float:
    """Seconds from `since` until /readyz answers 200 (the listener follows the log again)."""
    while (await get(url + "/readyz")).status != 200:
        assert time.monotonic() - since < within, f"/readyz not 200 within {within}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - since


async def test_database_stopped_for_ten_seconds(cluster: Cluster, fault_db: str, tmp_path):
    """During a 10 s stop every booking is 503 DATABASE_UNAVAILABLE within 2 s, /readyz is
    503, sockets stay open; after the start bookings succeed within 5 s by themselves, every
    subscriber has caught up within 5 s and converges, and the history holds no anomaly."""
    server = ServerProcess(fault_db, log_dir=tmp_path).start()
    try:
        async with under_load(server.url, fault_db) as load:
            await asyncio.sleep(STEADY)
            await asyncio.to_thread(cluster.stop, "fast")
            down = time.monotonic()
            await asyncio.sleep(1)
            ready = await get(server.url + "/readyz")
            await asyncio.sleep(OUTAGE - (time.monotonic() - down))
            back = time.monotonic()
            await asyncio.to_thread(cluster.start)
            recovered = await first_success_after(load.history, back)
            ready_again = await ready_after(server.url, back)
            caught_up = await load.caught_up(fault_db, back)
            await asyncio.sleep(STEADY)
    finally:
        server.stop()
    # A booking sent just before the start but answered after it may have found the database
    # back (a saturated server queues requests): it may be a 201 or a 409, if answered in time.
    during = [op for op in ops_between(load.history, down, back)
              if op.completed is None or op.completed <= back or (op.latency or 0) > 2]
    assert len(during) > 20, load.history.summary()
    assert not not_a_quick_503(during), not_a_quick_503(during)[:10]
    # Refused connections prove nothing was sent: those 503s say nothing changed.
    refused = ops_between(load.history, down + 1, back)
    assert refused and not any(op.outcome_unknown for op in refused)
    assert ready.status == 503 and "database" in ready.json()["error"]["down"], ready
    assert all(not s.drops for s in load.subscribers), [s.drops for s in load.subscribers]
    assert load.check() == [], load.history.summary()
    assert realtime_check(fault_db).returncode == 0
    quick = sorted(op.latency for op in during if op.latency is not None)
    print(f"\ndatabase stopped {OUTAGE:g}s: {len(during)} bookings answered 503 in "
          f"{quick[0] * 1000:.0f}-{quick[-1] * 1000:.0f} ms (median "
          f"{quick[len(quick) // 2] * 1000:.0f}); bookings back {recovered:.2f}s after the start, "
          f"ready {ready_again:.2f}s after it, subscribers caught up with the database "
          f"{caught_up:.2f}s after it, converged {load.converge:.2f}s after the last booking; "
          f"{load.history.summary()}")


async def test_database_crash_and_recovery(cluster: Cluster, fault_db: str, tmp_path):
    """PostgreSQL killed (`-m immediate`) and started again (crash recovery) under load:
    bookings come back within 5 s, subscribers catch up within 5 s and converge, every 201 is
    in the database."""
    server = ServerProcess(fault_db, log_dir=tmp_path).start()
    try:
        async with under_load(server.url, fault_db) as load:
            await asyncio.sleep(STEADY)
            await asyncio.to_thread(cluster.stop, "immediate")
            down = time.monotonic()
            await asyncio.to_thread(cluster.start)
            back = time.monotonic()
            recovered = await first_success_after(load.history, back)
            caught_up = await load.caught_up(fault_db, back)
            await asyncio.sleep(STEADY)
    finally:
        server.stop()
    # The database may be back before pg_ctl says so: answers then are 201s and 409s.
    during = ops_between(load.history, down, back)
    wrong = [(op.status, op.code, op.latency) for op in during
             if op.status is None or op.latency is None or op.latency > 2
             or (op.status >= 500 and op.code != "DATABASE_UNAVAILABLE")]
    assert not wrong, wrong[:10]
    assert any(op.code == "DATABASE_UNAVAILABLE" for op in during), load.history.summary()
    assert load.check() == [], load.history.summary()
    assert realtime_check(fault_db).returncode == 0
    print(f"\ndatabase crashed: down {back - down:.2f}s, bookings back {recovered:.2f}s after "
          f"the start, subscribers caught up {caught_up:.2f}s after it, converged "
          f"{load.converge:.2f}s after the last booking; {load.history.summary()}")
