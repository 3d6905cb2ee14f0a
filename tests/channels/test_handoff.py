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


async def _closes(count: int) -> tuple[list[float], list[int]]:
    """close_paced on `count` subscribers: when each was told to close (seconds from its
    call), and the sizes of the runs it closed them in (those told in one run of the loop,
    between two of its waits). Runs are told apart by the loop, not by the clock: the first
    close of a run schedules a callback that ends it, which runs only once close_paced gives
    the loop back."""
    loop = asyncio.get_running_loop()
    times: list[float] = []
    runs: list[int] = []
    order: list[int] = []
    in_run = False

    def end_run() -> None:
        nonlocal in_run
        in_run = False

    def told(index: int) -> None:
        nonlocal in_run
        order.append(index)
        times.append(loop.time() - began)
        if not in_run:
            in_run = True
            runs.append(0)
            loop.call_soon(end_run)
        runs[-1] += 1

    subs = [Subscriber(16, lambda i=i: told(i)) for i in range(count)]
    # After building them (4,000 take tens of ms on a busy machine): from close_paced's call.
    began = loop.time()
    await close_paced(subs, 1001)
    assert [sub.close_code for sub in subs] == [1001] * count
    assert order == list(range(count)), "closed out of order, or one twice"
    return times, runs


@pytest.mark.parametrize("count", [100, 4000])
async def test_shutdown_closes_a_few_sockets_at_once_and_many_paced(count: int) -> None:
    """close_paced closes in order, a batch of rate x BATCH_EVERY every BATCH_EVERY (rate:
    HANDOFF_RATE, or more to finish within HANDOFF_SPREAD): 100 sockets in two batches of 50,
    50 ms apart; 4,000 in 40 batches of 100 over 1.95 s.

    Robust on a loaded machine: no socket may be told before its batch's time (a busy loop
    makes batches late, never early), and runs of the loop are counted, not timed: each
    holds whole batches (one, or several when close_paced catches up after a late wake-up).
    These fail if the pacing is gone (everything at once, batches too big or ahead of time)
    or the batches are too small. The one upper bound, all told within HANDOFF_SPREAD + 5 s,
    is generous: it fails only if the pacing were several times too slow."""
    times, runs = await _closes(count)
    per_batch = int(max(HANDOFF_RATE, count / HANDOFF_SPREAD) * BATCH_EVERY)
    assert per_batch == (50 if count == 100 else 100)
    assert (count // per_batch - 1) * BATCH_EVERY <= HANDOFF_SPREAD
    early = [(i, round(at, 4)) for i, at in enumerate(times)
             if at < (i // per_batch) * BATCH_EVERY - 1e-3]
    assert early == [], "sockets told before their batch's time: faster than the rate"
    assert sum(runs) == count and all(run % per_batch == 0 for run in runs), runs
    assert times[-1] < HANDOFF_SPREAD + 5


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
