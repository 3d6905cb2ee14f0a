"""A server whose reads go to a real hot standby (DATABASE_READ_URL): its clients while the
standby streams and while it lags. Nobody is handed a state older than a position it was sent,
no version is skipped or repeated, and every client ends at the primary's state."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from realtime.eventlog import replica
from tests.channels.conftest import client, seed, start_live, stop_live
from tests.channels.streams import book_stream
from tests.replicas.conftest import Replicated, Timeline, caught_up, cursor_pos
from tests.replicas.helpers import (
    assert_versions,
    availability,
    fallbacks,
    number,
    pos_of,
    reads_of,
    served,
    snapshot_versions,
    versions_all,
    versions_of,
)


async def test_updates_stream_through_the_standby(replicated: Replicated) -> None:
    """Bookings reach a subscriber and mid-stream joiners through the standby: every version once, in order."""
    db = replicated
    world = await seed(db.primary)
    live = await start_live(db.primary, database_read_url=db.standby)
    try:
        assert reads_of(live).usable
        before = served()
        vendor = f"vendor:{world.vendor}"
        slot_ids = [s["id"] for s in world.all_slots()]
        async with contextlib.AsyncExitStack() as stack:
            first = await stack.enter_async_context(client(live.ws_url))
            timelines = [Timeline(first)]
            await first.subscribe(vendor)
            stream = asyncio.create_task(
                book_stream(world.booking, slot_ids, 300, workers=6, pause=0.005))
            for _ in range(8):
                await asyncio.sleep(0.1)
                joiner = await stack.enter_async_context(client(live.ws_url))
                timelines.append(Timeline(joiner))
                await joiner.subscribe(vendor)
            await stream
            final = await versions_all(world)
            for timeline in timelines:
                await timeline.wait_for(vendor, final)
            await asyncio.sleep(0.3)  # a duplicate would arrive now
            for timeline in timelines:
                timeline.assert_complete(vendor, final)
                timeline.assert_forward(vendor)
        assert served() > before
        conn = await asyncpg.connect(db.standby)
        try:
            readers = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name LIKE 'realtime-read:%' AND datname = current_database()")
        finally:
            await conn.close()
        assert readers >= 1
    finally:
        await stop_live(live)
        await world.pool.close()



async def test_a_lagging_standby_never_hands_out_an_older_state(
        replicated: Replicated, monkeypatch: pytest.MonkeyPatch) -> None:
    """A paused standby: nothing sent past it, no state older than a cursor handed out, all converge after."""
    monkeypatch.setattr(replica, "MAX_LAG", 600.0)  # stay on the lagging standby throughout
    db = replicated
    world = await seed(db.primary)
    service = world.services[0]
    channel = f"service:{service}"
    slot_ids = [s["id"] for s in world.slots[service]]
    await number(world)  # the seeded slots on the standby before the first snapshot there
    await caught_up(db)
    fresh = await start_live(db.primary)
    lagging = await start_live(db.primary, database_read_url=db.standby)
    try:
        async with contextlib.AsyncExitStack() as stack:
            b1 = await stack.enter_async_context(client(lagging.ws_url))
            a1 = await stack.enter_async_context(client(fresh.ws_url))
            tb1, ta1 = Timeline(b1), Timeline(a1)
            start = snapshot_versions(await b1.subscribe(channel))
            await a1.subscribe(channel)
            await book_stream(world.booking, slot_ids, 20)
            before = await versions_of(world, service)
            await tb1.wait_for(channel, before)
            standby_at = await caught_up(db)

            await db.pair.pause_replay()
            await book_stream(world.booking, slot_ids, 30)
            paused = await versions_of(world, service)
            await ta1.wait_for(channel, paused)
            ahead = ta1.last(channel)
            assert ahead > standby_at
            await asyncio.sleep(0.5)
            # It reads the standby: nothing past the standby's position goes out.
            assert tb1.last(channel) <= standby_at
            assert lagging.runtime.listener.last_pos == standby_at
            assert reads_of(lagging).usable

            # A new subscriber: the standby's state, at the standby's position.
            b2 = await stack.enter_async_context(client(lagging.ws_url))
            tb2 = Timeline(b2)
            sub = await b2.subscribe(channel)
            assert pos_of(sub) == standby_at
            assert snapshot_versions(sub) == before
            body = await availability(lagging, service)
            assert cursor_pos(body["cursor"]) == standby_at
            assert {s["id"]: s["version"] for s in body["slots"]} == before

            # A resume from the fresh server's cursor: the events after it, not the older
            # state the standby has (the primary answers once the wait is over).
            behind = fallbacks("behind")
            b3 = await stack.enter_async_context(client(lagging.ws_url))
            tb3 = Timeline(b3)
            sub = await b3.subscribe(channel, since=ta1.last_cursor(channel))
            assert "events" in sub and pos_of(sub) >= ahead
            assert all(cursor_pos(e["cursor"]) > ahead for e in sub["events"])
            assert fallbacks("behind") == behind + 1

            # A resume from its own cursor: from memory, at the standby's position.
            b4 = await stack.enter_async_context(client(lagging.ws_url))
            tb4 = Timeline(b4)
            sub = await b4.subscribe(channel, since=tb1.last_cursor(channel))
            assert "events" in sub and pos_of(sub) == standby_at

            await db.pair.resume_replay()
            await book_stream(world.booking, slot_ids, 20)
            final = await versions_of(world, service)
            for timeline in (ta1, tb1, tb2, tb3, tb4):
                await timeline.wait_for(channel, final)
            await asyncio.sleep(0.3)
            for timeline in (ta1, tb1, tb2, tb3, tb4):
                timeline.assert_forward(channel)
            every = {s: list(range(start[s], final[s] + 1)) for s in slot_ids}
            assert_versions(tb1, channel, every)
            assert_versions(ta1, channel, every)
            assert_versions(tb2, channel, {s: list(range(before[s], final[s] + 1))
                                           for s in slot_ids})
            assert_versions(tb3, channel, {s: list(range(paused[s] + 1, final[s] + 1))
                                           for s in slot_ids})
            assert_versions(tb4, channel, {s: list(range(before[s] + 1, final[s] + 1))
                                           for s in slot_ids})
    finally:
        await db.pair.resume_replay()
        await stop_live(lagging)
        await stop_live(fresh)
        await world.pool.close()



async def test_unnumbered_events_in_a_standby_snapshot_are_skipped_once(
        replicated: Replicated) -> None:
    """An unnumbered event in a snapshot read on the standby is not sent again when it arrives numbered."""
    db = replicated
    world = await seed(db.primary)
    service = world.services[0]
    channel = f"service:{service}"
    slot = world.slots[service][0]["id"]
    live = await start_live(db.primary, database_read_url=db.standby)
    freezer = await asyncpg.connect(db.primary)
    try:
        freeze = freezer.transaction()
        await freeze.start()
        # The sequencer's lock: nothing gets numbered while it is held.
        await freezer.execute("SELECT pg_advisory_xact_lock(7262454, 1)")
        await world.booking.book(slot, 1)
        await caught_up(db)  # the booking is on the standby, unnumbered
        # And visible there to a new snapshot (the setup, not the server under test).
        want = (await versions_of(world, service))[slot]
        standby = await asyncpg.connect(db.standby)
        try:
            for _ in range(500):
                if await standby.fetchval("SELECT version FROM rt_slots WHERE id = $1::uuid",
                                          slot) == want:
                    break
                await asyncio.sleep(0.02)
        finally:
            await standby.close()
        async with client(live.ws_url) as c:
            timeline = Timeline(c)
            before = served()
            sub = await c.subscribe(channel)
            assert served() == before + 1
            version = snapshot_versions(sub)[slot]
            assert version == (await versions_of(world, service))[slot]
            await freeze.commit()
            await caught_up(db)
            await asyncio.sleep(0.3)  # the frozen event is numbered and dispatched now
            await world.booking.book(slot, 1)
            msg = await c.expect("availability:updated")
            assert msg["slot"]["version"] == version + 1
            timeline.assert_forward(channel)
    finally:
        await freezer.close()
        await stop_live(live)
        await world.pool.close()
