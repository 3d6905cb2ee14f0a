"""Handing clients over: a process that cannot follow the event log closes its sockets with
1013 (handoff.py); a shutdown closes them paced."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import asyncpg
import pytest

from realtime.channels.handoff import BATCH_EVERY, FOLLOW_GRACE, HANDOFF_RATE, HANDOFF_SPREAD, close_paced
from realtime.channels.subscriber import Subscriber
from realtime.errors import CLOSE_OVERLOAD
from realtime.eventlog.lending import LAG_ALLOWANCE, ListenConnection
from realtime.eventlog.listener import HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT
from tests.channels.conftest import client, seed, start_live, stop_live
from tests.support.proxy import TcpProxy


async def _proxied(database_url: str) -> tuple[TcpProxy, str]:
    parts = urlsplit(database_url)
    proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    return proxy, database_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")


async def test_sockets_close_with_1013_while_the_database_is_unreachable(database_url):
    """Blind past the grace: sockets (and new ones) close with 1013; afterwards they stay and resume."""
    world = await seed(database_url, services=1, slots=1)
    channel = f"service:{world.services[0]}"
    slot = world.slots[world.services[0]][0]["id"]
    proxy, proxied = await _proxied(database_url)
    live = await start_live(proxied)
    try:
        async with client(live.ws_url) as c:
            cursor = (await c.subscribe(channel))["cursor"]
            cut_at = time.monotonic()
            # A partition (nothing answers), not PostgreSQL refusing: sockets stay open then.
            proxy.blackhole()
            await proxy.drop()
            bound = FOLLOW_GRACE + HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT + 2
            assert await c.closed(within=bound) == CLOSE_OVERLOAD
            assert time.monotonic() - cut_at >= FOLLOW_GRACE
        async with client(live.ws_url) as late:
            assert await late.closed(within=2) == CLOSE_OVERLOAD
        # Committed while the server was blind: the resume must carry it.
        booked = await world.booking.book(slot, 1)
        proxy.heal()
        for _ in range(200):
            if live.runtime.ready() is None:
                break
            await asyncio.sleep(0.05)
        async with client(live.ws_url) as back:
            resumed = await back.subscribe(channel, since=cursor)
            versions = [e["slot"]["version"] for e in resumed["events"]]
            if not versions:  # not numbered yet when the resume read the log: it follows live
                versions = [(await back.expect("availability:updated"))["slot"]["version"]]
            assert versions == [booked["slot"]["version"]]
            await asyncio.sleep(FOLLOW_GRACE)
            await back.send(type="ping", id="p")
            await back.expect("pong", id="p")
    finally:
        await stop_live(live)
        await proxy.cut()
        await world.pool.close()


async def test_a_short_drop_keeps_the_sockets(database_url):
    """A database drop shorter than the grace closes no socket; what committed meanwhile arrives."""
    world = await seed(database_url, services=1, slots=1)
    channel = f"service:{world.services[0]}"
    slot = world.slots[world.services[0]][0]["id"]
    proxy, proxied = await _proxied(database_url)
    live = await start_live(proxied)
    try:
        async with client(live.ws_url) as c:
            await c.subscribe(channel)
            await proxy.cut()
            booked = await world.booking.book(slot, 1)
            await asyncio.sleep(0.3)
            await proxy.start()
            update = await c.expect("availability:updated", within=FOLLOW_GRACE + 3)
            assert update["slot"]["version"] == booked["slot"]["version"]
            await asyncio.sleep(FOLLOW_GRACE)
            await c.send(type="ping", id="p")
            await c.expect("pong", id="p")
            assert c.close_code is None
    finally:
        await stop_live(live)
        await proxy.cut()
        await world.pool.close()


async def _closing_times(count: int) -> list[float]:
    """When each of `count` subscribers was told to close by close_paced (seconds from start)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    times: list[float] = []
    subs = [Subscriber(16, lambda: times.append(loop.time() - began)) for _ in range(count)]
    await close_paced(subs, 1001)
    assert [sub.close_code for sub in subs] == [1001] * count
    return times


async def test_shutdown_closes_a_few_sockets_at_once_and_many_paced():
    """100 sockets close within one batch interval; 4,000 spread over HANDOFF_SPREAD, rate-bound."""
    few = await _closing_times(100)
    assert max(few) < 2 * BATCH_EVERY
    many = await _closing_times(4000)
    rate = max(HANDOFF_RATE, 4000 / HANDOFF_SPREAD)
    assert HANDOFF_SPREAD - 2 * BATCH_EVERY <= max(many) <= HANDOFF_SPREAD + 0.5
    per_batch = int(rate * BATCH_EVERY)
    assert sum(t < BATCH_EVERY / 2 for t in many) == per_batch


def _hog_loop(seconds: float, each: float) -> None:
    """Keeps the loop busy for `seconds`: callbacks of `each` seconds back to back, as a fan-out
    to thousands of sockets on a CPU-starved machine does."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    def hog() -> None:
        time.sleep(each)
        if loop.time() < end:
            loop.call_soon(hog)
    loop.call_soon(hog)


async def test_a_lagging_loop_is_not_taken_for_a_dead_listen_connection(database_url):
    """The heartbeat's `SELECT 1`, answered at once but read late by a loop running 0.3 s
    callbacks, passes: the loop's own lateness does not count against the database."""
    conn = await asyncpg.connect(database_url)
    try:
        listen = ListenConnection(None)  # type: ignore[arg-type]  # the heartbeat uses no pool
        listen.conn = conn
        _hog_loop(1.5, 0.3)
        began = time.monotonic()
        await listen.heartbeat(0.0, 0.5)
        assert time.monotonic() - began > 0.5  # it was late by the wall clock
    finally:
        await conn.close()


async def test_a_silent_listen_connection_fails_the_heartbeat_on_a_lagging_loop_too(database_url):
    """A connection that does not answer is still given up on a lagging loop, within
    LAG_ALLOWANCE times the heartbeat's timeout."""
    proxy, proxied = await _proxied(database_url)
    conn = await asyncpg.connect(proxied)
    try:
        listen = ListenConnection(None)  # type: ignore[arg-type]  # the heartbeat uses no pool
        listen.conn = conn
        proxy.blackhole()
        _hog_loop(3.0, 0.3)
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            await listen.heartbeat(0.0, 0.5)
        assert time.monotonic() - began < 0.5 * LAG_ALLOWANCE + 1.0
    finally:
        conn.terminate()
        await proxy.cut()
