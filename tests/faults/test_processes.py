"""The server SIGKILLed in the middle of a booking burst, and Redis killed under load."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from realtime.httpclient import get
from tests.faults.conftest import realtime_check, unavailable
from tests.faults.processes import Redis
from tests.faults.workload import CLIENTS, STEADY, ops_between, under_load
from tests.support.server import ServerProcess

pytestmark = pytest.mark.faults


async def test_server_killed_mid_burst(fault_db: str, tmp_path):
    """SIGKILL in a burst: every 201 a client got is in the database, nothing is half-made
    (`realtime check` passes), the restarted server resumes every subscriber from its cursor
    (missed events, not a snapshot) and they converge."""
    server = ServerProcess(fault_db, log_dir=tmp_path).start()
    try:
        async with under_load(server.url, fault_db, clients=CLIENTS + 16) as load:
            await asyncio.sleep(STEADY)
            killed = time.monotonic()
            server.stop(signal.SIGKILL)
            await asyncio.to_thread(server.start)
            back = time.monotonic()
            await asyncio.sleep(STEADY)
    finally:
        server.stop()
    history = load.history
    unknown = [op for op in ops_between(history, killed - 1, back) if op.outcome_unknown]
    assert unknown, "no booking was caught in flight by the kill"
    assert load.check() == [], history.summary()
    done = realtime_check(fault_db)
    assert done.returncode == 0, done.stdout
    assert all(s.resumed_with_events for s in load.subscribers), \
        [(s.connects, s.resumed_with_events) for s in load.subscribers]
    print(f"\nserver SIGKILLed: {len(unknown)} bookings unanswered, restarted in "
          f"{back - killed:.2f}s, subscribers converged {load.converge:.2f}s after the last "
          f"booking; {history.summary()}")


async def test_redis_killed_and_restarted(fault_db: str, tmp_path):
    """Redis SIGKILLed under load and started again 1.5 s later: bookings keep succeeding,
    /readyz stays 200 (Redis degraded, then not), and the history holds no anomaly."""
    redis = Redis(tmp_path)
    if redis.binary is None:
        unavailable("redis-server is not installed")
    redis.start()
    server = ServerProcess(fault_db, log_dir=tmp_path, env={"REDIS_URL": redis.url}).start()
    try:
        async with under_load(server.url, fault_db) as load:
            await asyncio.sleep(STEADY)
            redis.kill()
            down = time.monotonic()
            await asyncio.sleep(1.5)
            during = await get(server.url + "/readyz")
            redis.start()
            back = time.monotonic()
            await asyncio.sleep(STEADY)
            after = await get(server.url + "/readyz")
    finally:
        server.stop()
        redis.kill()
    history = load.history
    outage = ops_between(history, down, back, ("book", "hold", "cancel", "release"))
    assert outage and all(op.status is not None and op.status < 500 for op in outage), \
        [(op.status, op.code) for op in outage if op.status is None or op.status >= 500][:10]
    assert sum(op.status == 201 for op in outage) > 5
    assert during.status == 200 and "redis" in during.json().get("degraded", {}), during
    assert after.status == 200 and "redis" not in after.json().get("degraded", {}), after
    assert load.check() == [], history.summary()
    print(f"\nredis killed {back - down:.2f}s: {len(outage)} operations meanwhile, none failed; "
          f"subscribers converged {load.converge:.2f}s after the last booking; "
          f"{history.summary()}")
