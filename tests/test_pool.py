"""Our connection pool (realtime/db/pool.py) against a real PostgreSQL: order, the job queue,
connections in doubt. What both pools must do is in tests/test_pool_interface.py.
"""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

import asyncpg
import pytest

from realtime.db.pool import Pool, PoolClosed
from tests.support.proxy import TcpProxy

PID = "SELECT pg_backend_pid()"


def _app_name() -> str:
    return f"pooltest-{uuid.uuid4().hex[:8]}"


async def _pool(dsn: str, size: int, app: str | None = None) -> Pool:
    return await Pool(dsn, size, server_settings={"application_name": app or _app_name()}).start()


async def test_waiters_are_served_in_arrival_order(admin_dsn):
    """With every connection taken, waiters get one in the order they asked."""
    pool = await _pool(admin_dsn, 1)
    order: list[int] = []

    async def use(i: int) -> None:
        async with pool.acquire() as conn:
            order.append(i)
            await conn.fetchval("SELECT 1")

    async with pool.acquire():
        tasks = []
        for i in range(6):
            tasks.append(asyncio.create_task(use(i)))
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        assert pool.waiting == 6 and order == []
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4, 5]
    await pool.close()


async def test_an_error_postgres_answered_keeps_the_connection(admin_dsn):
    """A statement PostgreSQL rejected leaves the connection in step, so it is reused."""
    pool = await _pool(admin_dsn, 1)
    pid = await pool.fetchval(PID)
    with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
        await pool.fetchval("SELECT 1 / 0")
    assert await pool.fetchval(PID) == pid
    await pool.close()


async def test_a_cancelled_statement_closes_its_connection(admin_dsn):
    """A statement cut off by a timeout never hands its half-done session to the next caller."""
    pool = await _pool(admin_dsn, 1)
    pid = await pool.fetchval(PID)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(pool.fetchval("SELECT pg_sleep(5)"), 0.1)
    assert pool.open_connections == 0
    assert await pool.fetchval("SELECT 41 + 1") == 42
    assert await pool.fetchval(PID) != pid
    await pool.close()


async def test_a_transaction_left_open_closes_its_connection(admin_dsn):
    """A borrower that returns a connection inside a transaction does not pass it on."""
    pool = await _pool(admin_dsn, 1)
    async with pool.acquire() as conn:
        pid = await conn.fetchval(PID)
        await conn.execute("BEGIN")
    assert pool.open_connections == 0
    assert await pool.fetchval(PID) != pid
    for _ in range(100):  # the old session ends: its transaction is not left holding locks
        if not await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the backend of the returned connection is still there")
    await pool.close()


async def test_cancelled_waiters_leave_no_trace(admin_dsn):
    """A waiter cancelled while waiting neither takes a connection nor leaks a place."""
    pool = await _pool(admin_dsn, 1)
    async with pool.acquire():
        waiter = asyncio.create_task(pool.fetchval("SELECT 1"))
        await asyncio.sleep(0.01)
        assert pool.waiting == 1
        waiter.cancel()
        await asyncio.sleep(0)
    assert waiter.cancelled()
    assert pool.waiting == 0 and pool.open_connections == 1 and pool.idle_connections == 1
    assert await pool.fetchval("SELECT 7") == 7
    await pool.close()


async def test_a_lost_database_frees_every_place_and_recovers(admin_dsn):
    """Connections lost with the network free their places; waiters get the error, and the
    pool opens new connections once the database answers again."""
    target = urlsplit(admin_dsn)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    dsn = admin_dsn.replace(target.netloc, f"{target.username or 'postgres'}@127.0.0.1:{proxy.port}")
    pool = await _pool(dsn, 1)
    async with pool.acquire() as conn:
        waiter = asyncio.create_task(pool.fetchval("SELECT 1"))
        await asyncio.sleep(0.01)
        await proxy.cut()
        for _ in range(100):
            if conn.is_closed():
                break
            await asyncio.sleep(0.01)
    # The closed connection's place went to the waiter, whose own connect was refused.
    with pytest.raises(OSError):
        await waiter
    assert pool.open_connections == 0 and pool.waiting == 0
    with pytest.raises(OSError):
        await pool.fetchval("SELECT 1")
    assert pool.open_connections == 0
    await proxy.start(proxy.port)
    assert await pool.fetchval("SELECT 3") == 3
    await pool.close()
    await proxy.cut()


async def test_close_fails_waiters_and_closes_connections_as_they_return(admin_dsn):
    """Closing refuses new checkouts and waiters; a connection in use is closed on return."""
    pool = await _pool(admin_dsn, 1)
    async with pool.acquire() as conn:
        waiter = asyncio.create_task(pool.fetchval("SELECT 1"))
        await asyncio.sleep(0.01)
        await pool.close()
        with pytest.raises(PoolClosed):
            await waiter
        assert not conn.is_closed()
    assert conn.is_closed()
    assert pool.open_connections == 0
    with pytest.raises(PoolClosed):
        await pool.fetchval("SELECT 1")


async def test_queued_statements_get_their_own_results(admin_dsn):
    """300 statements queued on 2 connections each get their own answer, in any order."""
    pool = await _pool(admin_dsn, 2)
    results = await asyncio.gather(*[pool.fetchval("SELECT $1::int * 2", i) for i in range(300)])
    assert results == [i * 2 for i in range(300)]
    rows = await asyncio.gather(*[pool.fetchrow("SELECT $1::text AS t", str(i)) for i in range(50)])
    assert [r["t"] for r in rows] == [str(i) for i in range(50)]
    assert pool.open_connections <= 2 and pool.waiting == 0
    await pool.close()


async def test_a_caller_cancelled_while_a_worker_runs_its_statement(database_url):
    """The caller stops waiting; the statement completes and the connection serves on."""
    pool = await _pool(database_url, 1)
    await pool.execute("CREATE TABLE pool_probe (n int)")
    async with pool.acquire() as conn:
        pid = await conn.fetchval(PID)
        queued = asyncio.create_task(
            pool.execute("INSERT INTO pool_probe SELECT 1 FROM pg_sleep(0.2)"))
        await asyncio.sleep(0.01)
        assert pool.waiting == 1
    await asyncio.sleep(0.05)  # a worker has sent the queued statement
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    for _ in range(100):
        if await pool.fetchval("SELECT count(*) FROM pool_probe") == 1:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the statement of the cancelled caller did not complete")
    assert await pool.fetchval(PID) == pid
    assert pool.open_connections == 1
    await pool.close()


async def test_an_error_on_a_worker_reaches_its_caller_only(admin_dsn):
    """A queued statement that PostgreSQL rejects fails its own caller, not its neighbours."""
    pool = await _pool(admin_dsn, 1)
    async with pool.acquire():
        calls = [asyncio.create_task(pool.fetchval(q)) for q in
                 ("SELECT 1", "SELECT 1 / 0", "SELECT 3")]
        await asyncio.sleep(0.01)
    done = await asyncio.gather(*calls, return_exceptions=True)
    assert done[0] == 1 and done[2] == 3
    assert isinstance(done[1], asyncpg.exceptions.DivisionByZeroError)
    assert pool.open_connections == 1
    await pool.close()


async def test_a_loan_that_asks_to_go_first_jumps_the_queue(admin_dsn):
    """The event pipeline's loans are served before statements queued earlier."""
    pool = await _pool(admin_dsn, 1)
    order: list[str] = []

    async def statement(i: int) -> None:
        await pool.fetchval("SELECT $1::int", i)
        order.append(f"s{i}")

    async def pipeline() -> None:
        async with pool.acquire(first=True) as conn:
            await conn.fetchval("SELECT 1")
            order.append("pipeline")

    async with pool.acquire():
        tasks = [asyncio.create_task(statement(i)) for i in range(3)]
        await asyncio.sleep(0.01)
        tasks.append(asyncio.create_task(pipeline()))
        await asyncio.sleep(0.01)
        assert pool.waiting == 4
    await asyncio.gather(*tasks)
    assert order == ["pipeline", "s0", "s1", "s2"]
    await pool.close()


async def test_a_caller_cancelled_before_its_statement_started_is_skipped(database_url):
    """A job handed to a worker whose caller gave up before it ran is not executed."""
    pool = await _pool(database_url, 1)
    await pool.execute("CREATE TABLE pool_skip (n int)")
    async with pool.acquire():
        doomed = asyncio.create_task(pool.execute("INSERT INTO pool_skip VALUES (1)"))
        kept = asyncio.create_task(pool.execute("INSERT INTO pool_skip VALUES (2)"))
        await asyncio.sleep(0.01)
    # The loan's return handed the first job to a worker that has not run yet.
    doomed.cancel()
    await kept
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert await pool.fetch("SELECT n FROM pool_skip") == [(2,)]
    await pool.close()
