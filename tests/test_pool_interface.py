"""Both connection pools behind `ConnectionPool` (ours and asyncpg's) against a real
PostgreSQL: each test runs on both, or on the one REALTIME_POOL names; then how the pool is
chosen. Our pool's internals are in tests/test_pool.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import asyncpg
import pytest

from realtime.db.asyncpg_pool import AsyncpgPool
from realtime.db.connect import create_pool
from realtime.db.interface import ConnectionPool, PoolClosed
from realtime.db.pool import Pool
from realtime.settings import Settings
from tests.support.pools import POOLS_UNDER_TEST, SELECTED_POOL

PID = "SELECT pg_backend_pid()"


def _app_name() -> str:
    return f"pooltest-{uuid.uuid4().hex[:8]}"


async def _backends(admin_dsn: str, app: str) -> int:
    conn = await asyncpg.connect(admin_dsn)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app))
    finally:
        await conn.close()


@pytest.fixture(params=POOLS_UNDER_TEST)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _open(kind: str, dsn: str, size: int, app: str | None = None) -> ConnectionPool:
    return await create_pool(dsn, size, kind, application_name=app or _app_name())


async def test_concurrent_calls_share_at_most_size_connections(kind, admin_dsn):
    """300 concurrent statements through a pool of 5 each get their own answer on at most 5
    backends; callers queue (`waiting`) and none is left waiting after."""
    app = _app_name()
    pool = await _open(kind, admin_dsn, 5, app)
    watcher = await asyncpg.connect(admin_dsn)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            n = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app)
            peak = max(peak, n)
            await asyncio.sleep(0.005)

    calls = [asyncio.create_task(pool.fetchrow(
        "SELECT $1::int * 2 AS n, pg_backend_pid() AS pid FROM pg_sleep(0.002)", i))
        for i in range(300)]
    await asyncio.sleep(0)  # every call has asked for a connection
    assert pool.waiting > 0
    watching = asyncio.create_task(watch())
    try:
        results = await asyncio.gather(*calls)
    finally:
        watching.cancel()
        await watcher.close()
    # Once more after: on a loaded machine the burst can end before the watcher's first answer.
    peak = max(peak, await _backends(admin_dsn, app))
    assert [r["n"] for r in results] == [i * 2 for i in range(300)]
    pids = {r["pid"] for r in results}
    assert 1 <= len(pids) <= 5 and 1 <= peak <= 5
    assert pool.open_connections == len(pids) == pool.idle_connections and pool.waiting == 0
    await pool.close()


async def test_a_transaction_through_acquire_commits_or_rolls_back(kind, database_url):
    """A loan runs a transaction invisible to others until it commits; one that raises rolls
    back, and its connection serves the next caller outside any transaction."""
    pool = await _open(kind, database_url, 2)
    await pool.execute("CREATE TABLE pool_tx (n int)")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO pool_tx VALUES (1)")
        assert await pool.fetchval("SELECT count(*) FROM pool_tx") == 0
    assert await pool.fetchval("SELECT count(*) FROM pool_tx") == 1
    with pytest.raises(ZeroDivisionError):
        async with pool.acquire(first=True) as conn, conn.transaction():
            await conn.execute("INSERT INTO pool_tx VALUES (2)")
            raise ZeroDivisionError
    assert await pool.fetch("SELECT n FROM pool_tx") == [(1,)]
    async with pool.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT count(*) FROM pool_tx") == 1
    assert pool.waiting == 0 and pool.open_connections == pool.idle_connections
    await pool.close()


async def test_json_comes_back_decoded_and_errors_come_back_as_postgres_raised_them(kind, admin_dsn):
    """Both pools get the same connection setup (jsonb decoded), and a statement PostgreSQL
    rejects fails its caller with PostgreSQL's error while the pool serves on."""
    pool = await _open(kind, admin_dsn, 1)
    assert await pool.fetchval("""SELECT '{"a": [1, 2]}'::jsonb""") == {"a": [1, 2]}
    with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
        await pool.fetchval("SELECT 1 / 0")
    assert await pool.execute("SELECT 1") == "SELECT 1"
    await pool.close()


async def test_a_statement_cut_off_by_a_timeout_leaves_the_pool_working(kind, admin_dsn):
    """A caller that stops waiting gets its timeout; the next caller gets an answer, not the
    abandoned statement's session."""
    pool = await _open(kind, admin_dsn, 1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pool.fetchval("SELECT pg_sleep(5)"), 0.1)
    assert await asyncio.wait_for(pool.fetchval("SELECT 41 + 1"), 3) == 42
    assert pool.open_connections == 1 and pool.waiting == 0
    await pool.close()


async def test_a_connection_killed_while_idle_is_replaced(kind, admin_dsn):
    """An idle connection whose backend was terminated is not used: the next call gets a new
    backend and an answer."""
    pool = await _open(kind, admin_dsn, 2)
    pid = await pool.fetchval(PID)
    killer = await asyncpg.connect(admin_dsn)
    try:
        assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid) is True
        for _ in range(200):  # the backend has gone, and its goodbye reached the client socket
            if not await killer.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the terminated backend is still there")
    finally:
        await killer.close()
    await asyncio.sleep(0.05)
    assert await pool.fetchval(PID) != pid
    assert pool.open_connections == 1
    await pool.close()


async def test_close_finishes_running_statements_and_refuses_the_rest(kind, admin_dsn):
    """Closing lets a running statement finish; a caller waiting for a connection and any
    later caller get PoolClosed; every backend of the pool is gone after."""
    app = _app_name()
    pool = await _open(kind, admin_dsn, 1, app)
    running = asyncio.create_task(pool.fetchval("SELECT 5 FROM pg_sleep(0.3)"))
    await asyncio.sleep(0.05)
    queued = asyncio.create_task(pool.fetchval("SELECT 6"))
    await asyncio.sleep(0.02)
    assert pool.waiting == 1
    closing = asyncio.create_task(pool.close())
    await asyncio.sleep(0)
    with pytest.raises(PoolClosed):
        await pool.fetchval("SELECT 7")
    assert await running == 5
    with pytest.raises(PoolClosed):
        await queued
    await asyncio.wait_for(closing, 10)
    assert pool.open_connections == 0 and pool.waiting == 0
    for _ in range(200):
        if await _backends(admin_dsn, app) == 0:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("a backend of the closed pool is still there")
    with pytest.raises(PoolClosed):
        async with pool.acquire():
            pass


# -- choosing the pool -----------------------------------------------------------------------


async def test_create_pool_opens_the_pool_asked_for(admin_dsn):
    """`ours` is realtime.db.pool.Pool, `asyncpg` the adapter over asyncpg's pool."""
    for kind, cls in (("ours", Pool), ("asyncpg", AsyncpgPool)):
        pool = await create_pool(admin_dsn, 1, kind)
        assert type(pool) is cls
        await pool.close()


async def test_an_unknown_pool_is_an_error_naming_the_variable(admin_dsn):
    """REALTIME_POOL=pgbouncer stops the settings and create_pool with the variable's name."""
    with pytest.raises(SystemExit, match="REALTIME_POOL must be one of ours, asyncpg; got 'pgbouncer'"):
        Settings.from_env({"REALTIME_POOL": "pgbouncer"})
    assert Settings.from_env({"REALTIME_POOL": " AsyncPG "}).pool_implementation == "asyncpg"
    assert Settings.from_env({}).pool_implementation == "ours"
    with pytest.raises(ValueError, match="REALTIME_POOL"):
        await create_pool(admin_dsn, 1, "pgbouncer")


def test_the_server_refuses_to_start_with_an_unknown_pool():
    """`realtime serve` exits at once with a one-line error naming REALTIME_POOL, no traceback."""
    env = {**os.environ, "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/unused",
           "REALTIME_POOL": "pgbouncer"}
    done = subprocess.run([sys.executable, "-m", "realtime", "serve", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "REALTIME_POOL must be one of ours, asyncpg" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_server_started_by_the_tests_runs_the_selected_pool(server):
    """Servers the tests start inherit REALTIME_POOL (CI's second pass sets it to asyncpg)."""
    assert f'"pool":"{SELECTED_POOL}"' in server.log()
