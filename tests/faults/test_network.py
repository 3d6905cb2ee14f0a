"""The network between the server and PostgreSQL: slow (50 ms each way), lossy (connections
dropped), and silent (a blackhole: nothing passes, nothing is closed). A relay of the test's
own stands in for the network (this kernel has no netem)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from realtime.httpclient import get
from tests.faults.conftest import realtime_check
from tests.faults.history import History, Op
from tests.faults.processes import Cluster
from tests.faults.workload import STEADY, ops_between, under_load
from tests.support.proxy import TcpProxy
from tests.support.server import ServerProcess

pytestmark = pytest.mark.faults

# The contract's bound for an answer when the database stops answering.
SILENT_BOUND = 5.0


@pytest_asyncio.fixture(loop_scope="session")
async def relay(cluster: Cluster) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy("127.0.0.1", cluster.port).start()
    yield proxy
    proxy.heal()
    await proxy.cut()


def through(relay: TcpProxy, dsn: str) -> str:
    return dsn.replace(f"127.0.0.1:{relay.target[1]}/", f"127.0.0.1:{relay.port}/")


def figures(history: History, start: float, end: float) -> dict[str, float]:
    """Bookings answered per second in [start, end], and the p50/p99 latency of the 201s."""
    ops = [op for op in ops_between(history, start, end) if op.completed is not None]
    ok = sorted(op.latency for op in ops if op.status == 201 and op.latency is not None)
    q = statistics.quantiles(ok, n=100) if len(ok) >= 2 else [float("nan")] * 99
    return {"per_s": len(ops) / (end - start), "ok": len(ok), "p50_ms": q[49] * 1000,
            "p99_ms": q[98] * 1000}


async def test_slow_then_lossy_network(cluster: Cluster, fault_db: str, relay: TcpProxy,
                                       tmp_path):
    """50 ms each way, then its connections dropped every second: every answer comes, none is a 500, the
    history holds no anomaly; the cost of the delay is printed (docs/reliability.md)."""
    # Started and stopped off the loop: the relay runs in it.
    server = ServerProcess(through(relay, fault_db), log_dir=tmp_path)
    await asyncio.to_thread(server.start)
    try:
        async with under_load(server.url, fault_db) as load:
            t0 = time.monotonic()
            await asyncio.sleep(2)
            t1 = time.monotonic()
            relay.delay = 0.05
            await asyncio.sleep(2)
            t2 = time.monotonic()
            for _ in range(3):
                await relay.drop()
                await asyncio.sleep(1)
            t3 = time.monotonic()
            relay.delay = 0
            await asyncio.sleep(STEADY)
    finally:
        relay.delay = 0
        await asyncio.to_thread(server.stop)
    history = load.history
    phases = {"direct": figures(history, t0, t1), "50 ms each way": figures(history, t1, t2),
              "50 ms + drops": figures(history, t2, t3)}
    # (A WebSocket booking may end unanswered: a server blind for 2 s closes its sockets.)
    bad = [(op.request["door"], op.status, op.code) for op in history.ops
           if (op.status is None and op.request["door"] == "http")
           or (op.status is not None and op.status >= 500 and op.code != "DATABASE_UNAVAILABLE")]
    assert not bad, bad[:10]
    assert all(p["ok"] > 0 for p in phases.values()), phases
    assert phases["50 ms each way"]["p50_ms"] > 100, phases  # the delay is really there
    assert load.check() == [], history.summary()
    assert realtime_check(fault_db).returncode == 0
    print("\nphase            bookings/s  201s   p50 ms   p99 ms")
    for name, p in phases.items():
        print(f"{name:<16} {p['per_s']:>10.0f} {p['ok']:>5.0f} {p['p50_ms']:>8.1f} "
              f"{p['p99_ms']:>8.1f}")
    print(f"subscribers converged {load.converge:.2f}s after the last booking; "
          f"{history.summary()}")


def answered_in_the_hole(op: Op) -> bool:
    """503 DATABASE_UNAVAILABLE within the bound; or, for a WebSocket booking, its socket
    closed unanswered within it (a blind server closes its sockets with 1013 2 s after it
    lost the log, which may come before the booking's deadline)."""
    if op.latency is None or op.latency > SILENT_BOUND + 0.5:
        return False
    if op.request["door"] == "ws" and op.status is None:
        return True
    return op.status == 503 and op.code == "DATABASE_UNAVAILABLE"


def resolved(history: History, op: Op) -> bool:
    """Whether a later attempt with the same Idempotency-Key got a definite answer."""
    key = op.request.get("idempotency_key")
    later = [o for o in history.ops if o.request.get("idempotency_key") == key
             and o.invoked > op.invoked]
    return any(o.status is not None and not o.outcome_unknown for o in later)


# On both pools: asyncpg's held a cancelled caller until the network came back.
@pytest.mark.parametrize("pool", ["ours", "asyncpg"])
async def test_database_that_stops_answering(cluster: Cluster, fault_db: str, relay: TcpProxy,
                                             tmp_path, pool: str):
    """A blackhole between server and database (connections open, nothing passes): every
    booking is answered 503 DATABASE_UNAVAILABLE within 5 s, those that may have reached the
    database with `"outcome": "unknown"`; /readyz is 503; once the network is back the same
    Idempotency-Key gives each of those its real outcome, and nothing is lost."""
    server = ServerProcess(through(relay, fault_db), log_dir=tmp_path,
                           env={"REALTIME_POOL": pool})
    await asyncio.to_thread(server.start)
    try:
        async with under_load(server.url, fault_db) as load:
            await asyncio.sleep(STEADY)
            relay.blackhole()
            silent = time.monotonic()
            await asyncio.sleep(2.5)
            ready = await get(server.url + "/readyz", within=10)
            await asyncio.sleep(max(0.0, 6 - (time.monotonic() - silent)))
            relay.heal()
            healed = time.monotonic()
            await asyncio.sleep(STEADY)
    finally:
        relay.heal()
        await asyncio.to_thread(server.stop)
    history = load.history
    # Every operation caught by the hole: answered after it opened (those answered just
    # before may reach the client a little later), sent while it had 5 s more to last.
    during = [op for op in history.ops if op.completed is not None
              and op.completed > silent + 1 and op.invoked < healed - SILENT_BOUND]
    assert during, history.summary()
    slow = [(op.request["door"], op.status, op.code, op.latency) for op in during
            if not answered_in_the_hole(op)]
    assert not slow, slow[:10]
    unknown = [op for op in history.ops if op.kind == "book" and op.outcome_unknown]
    assert unknown, "no booking was caught in flight by the blackhole"
    assert all(resolved(history, op) for op in unknown)
    assert ready.status == 503, ready
    assert load.check() == [], history.summary()
    assert realtime_check(fault_db).returncode == 0
    print(f"\nblackhole {healed - silent:.1f}s ({pool} pool): {len(during)} operations answered 503 within "
          f"{max(op.latency for op in during):.2f}s, {len(unknown)} with outcome unknown, "
          f"all resolved by their retry; subscribers converged {load.converge:.2f}s after the "
          f"last booking; {history.summary()}")
