"""When the standby cannot serve: a server started ahead of it, a standby that lags too long,
one that goes away, one that is not there at start, one that is another database."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest

from realtime.eventlog import replica
from tests.channels.conftest import client, seed, start_live, stop_live
from tests.channels.streams import book_stream
from tests.replicas.conftest import Replicated, Timeline, caught_up, cursor_pos, position
from tests.replicas.helpers import (
    assert_versions,
    availability,
    fallbacks,
    number,
    pos_of,
    reads_of,
    served,
    snapshot_versions,
    until,
    versions_all,
    versions_of,
)
from tests.support.databases import create_database, drop_database
from tests.support.server import ServerProcess, free_port


async def test_a_server_started_ahead_of_its_standby_reads_no_older_than_itself(
        replicated: Replicated, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server started ahead of its lagging standby hands out no snapshot before its own position, nor skips one."""
    monkeypatch.setattr(replica, "MAX_LAG", 600.0)  # stay on the lagging standby throughout
    db = replicated
    world = await seed(db.primary)
    service = world.services[0]
    channel = f"service:{service}"
    slot_ids = [s["id"] for s in world.slots[service]]
    await caught_up(db)
    await db.pair.pause_replay()
    await book_stream(world.booking, slot_ids, 20)
    await number(world)
    live = None
    try:
        live = await start_live(db.primary, database_read_url=db.standby)
        started_at = live.runtime.listener.last_pos
        assert started_at == await position(db.primary)
        assert await position(db.standby) < started_at
        state = await versions_of(world, service)
        async with contextlib.AsyncExitStack() as stack:
            c1 = await stack.enter_async_context(client(live.ws_url))
            t1 = Timeline(c1)
            behind = fallbacks("behind")
            sub = await c1.subscribe(channel)
            assert pos_of(sub) >= started_at and snapshot_versions(sub) == state
            body = await availability(live, service)
            assert cursor_pos(body["cursor"]) >= started_at
            assert fallbacks("behind") == behind + 2

            # This time the standby catches up while the read waits: the standby answers.
            monkeypatch.setattr(replica, "WAIT", 30.0)
            c2 = await stack.enter_async_context(client(live.ws_url))
            t2 = Timeline(c2)
            before = served()
            pending = asyncio.create_task(c2.subscribe(channel))
            await asyncio.sleep(0.3)
            assert not pending.done()
            await db.pair.resume_replay()
            sub = await asyncio.wait_for(pending, 20)
            assert pos_of(sub) >= started_at and snapshot_versions(sub) == state
            assert served() > before and fallbacks("behind") == behind + 2

            await book_stream(world.booking, slot_ids, 20)
            final = await versions_of(world, service)
            for timeline in (t1, t2):
                await timeline.wait_for(channel, final)
            await asyncio.sleep(0.3)
            for timeline in (t1, t2):
                timeline.assert_forward(channel)
                assert_versions(timeline, channel, {s: list(range(state[s], final[s] + 1))
                                                    for s in slot_ids})
    finally:
        await db.pair.resume_replay()
        if live is not None:
            await stop_live(live)
        await world.pool.close()


async def test_a_standby_lagging_too_long_is_left_then_taken_back(replicated: Replicated) -> None:
    """A standby lagging past MAX_LAG is left (updates flow from the primary), then taken back once caught up."""
    db = replicated
    world = await seed(db.primary)
    vendor = f"vendor:{world.vendor}"
    slot_ids = [s["id"] for s in world.all_slots()]
    await number(world)  # the seeded slots on the standby before the first snapshot there
    await caught_up(db)
    live = await start_live(db.primary, database_read_url=db.standby)
    try:
        reads = reads_of(live)
        async with contextlib.AsyncExitStack() as stack:
            c1 = await stack.enter_async_context(client(live.ws_url))
            t1 = Timeline(c1)
            start = snapshot_versions(await c1.subscribe(vendor))
            await book_stream(world.booking, slot_ids, 20)
            await caught_up(db)
            assert reads.usable

            await db.pair.pause_replay()
            await book_stream(world.booking, slot_ids, 20)
            paused = await versions_all(world)
            await until("the server leaves the lagging standby", lambda: not reads.usable,
                        within=replica.MAX_LAG + 10)
            await t1.wait_for(vendor, paused)  # from the primary: the standby is still paused
            assert await position(db.standby) < await position(db.primary)
            c2 = await stack.enter_async_context(client(live.ws_url))
            t2 = Timeline(c2)
            sub = await c2.subscribe(vendor)
            assert pos_of(sub) >= live.runtime.listener.last_pos
            assert snapshot_versions(sub) == paused

            await db.pair.resume_replay()
            await until("the server takes the standby back", lambda: reads.usable,
                        within=replica.RETRY + 15)
            before = served()
            c3 = await stack.enter_async_context(client(live.ws_url))
            t3 = Timeline(c3)
            await c3.subscribe(vendor)
            assert served() > before
            await book_stream(world.booking, slot_ids, 20)
            final = await versions_all(world)
            for timeline in (t1, t2, t3):
                await timeline.wait_for(vendor, final)
            await asyncio.sleep(0.3)
            for timeline in (t1, t2, t3):
                timeline.assert_forward(vendor)
            assert_versions(t1, vendor, {s: list(range(start[s], final[s] + 1)) for s in slot_ids})
            assert_versions(t2, vendor, {s: list(range(paused[s], final[s] + 1))
                                         for s in slot_ids})
    finally:
        await db.pair.resume_replay()
        await stop_live(live)
        await world.pool.close()


async def test_reads_fall_back_to_the_primary_when_the_standby_goes_away(
        replicated: Replicated) -> None:
    """With the standby stopped, everything is served from the primary (/readyz 200); it is taken back on return."""
    db = replicated
    world = await seed(db.primary)
    vendor = f"vendor:{world.vendor}"
    service = world.services[0]
    slot_ids = [s["id"] for s in world.all_slots()]
    # The seeded slots on the standby first: the first subscriber's snapshot (read there) is
    # the start of every slot's expected versions.
    await number(world)
    await caught_up(db)
    live = await start_live(db.primary, database_read_url=db.standby)
    try:
        reads = reads_of(live)
        async with contextlib.AsyncExitStack() as stack:
            c1 = await stack.enter_async_context(client(live.ws_url))
            t1 = Timeline(c1)
            start = snapshot_versions(await c1.subscribe(vendor))
            await book_stream(world.booking, slot_ids, 20)
            await t1.wait_for(vendor, await versions_all(world))

            db.pair.standby.stop()
            await book_stream(world.booking, slot_ids, 20)
            away = await versions_all(world)
            await t1.wait_for(vendor, away)
            assert not reads.usable
            c2 = await stack.enter_async_context(client(live.ws_url))
            t2 = Timeline(c2)
            sub = await c2.subscribe(vendor)
            assert snapshot_versions(sub) == away
            await availability(live, service)
            async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
                ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert "replica" in ready.json()["degraded"]  # served, and it says by whom

            db.pair.standby.start()
            await until("the server takes the standby back", lambda: reads.usable,
                        within=replica.RETRY + 20)
            before = served()
            await availability(live, service)
            assert served() > before
            await book_stream(world.booking, slot_ids, 20)
            final = await versions_all(world)
            for timeline in (t1, t2):
                await timeline.wait_for(vendor, final)
            await asyncio.sleep(0.3)
            for timeline in (t1, t2):
                timeline.assert_forward(vendor)
            assert_versions(t1, vendor, {s: list(range(start[s], final[s] + 1)) for s in slot_ids})
            assert_versions(t2, vendor, {s: list(range(away[s], final[s] + 1)) for s in slot_ids})
    finally:
        await stop_live(live)
        await world.pool.close()


async def test_a_standby_unreachable_at_start_leaves_reads_on_the_primary(
        replicated: Replicated) -> None:
    """A server whose DATABASE_READ_URL answers nothing starts ready and serves every read from the primary."""
    db = replicated
    world = await seed(db.primary)
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    unavailable = fallbacks("unavailable")
    live = await start_live(db.primary, database_read_url=nowhere)
    try:
        assert not reads_of(live).usable
        vendor = f"vendor:{world.vendor}"
        async with client(live.ws_url) as c:
            t = Timeline(c)
            await c.subscribe(vendor)
            await book_stream(world.booking, [s["id"] for s in world.all_slots()], 10)
            final = await versions_all(world)
            await t.wait_for(vendor, final)
            t.assert_complete(vendor, final)
        assert fallbacks("unavailable") > unavailable
    finally:
        await stop_live(live)
        await world.pool.close()


async def test_a_read_url_of_another_database_stops_the_server_at_start(
        replicated: Replicated, tmp_path: Path) -> None:
    """A DATABASE_READ_URL that is not a copy of DATABASE_URL (another epoch) stops `realtime serve` at start."""
    db = replicated
    other = await create_database(db.pair.primary.dsn())
    try:
        server = ServerProcess(db.primary, env={"DATABASE_READ_URL": other}, log_dir=tmp_path)
        try:
            with pytest.raises(RuntimeError,
                               match="DATABASE_READ_URL is not a copy of DATABASE_URL"):
                server.start(timeout=60)
        finally:
            server.stop()
    finally:
        await drop_database(db.pair.primary.dsn(), other)
