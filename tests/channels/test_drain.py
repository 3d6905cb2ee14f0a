"""The drain: one call numbers committed events and reads them, on the LISTEN connection."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from realtime.db.stats import Queries
from realtime.eventlog.listener import DRAIN_BURST, DRAIN_TIMEOUT, MIN_DRAIN_SPACING, READER_BACKSTOP
from tests.channels.conftest import Live, World, client, start_live, stop_live
from tests.channels.streams import Collector, book_stream, slot_versions

SEQUENCER_LOCK = (7262454, 1)


async def listener_query(database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return str(await conn.fetchval(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'realtime-listener%'"))
    finally:
        await conn.close()


async def test_a_booking_on_an_idle_server_is_drained_at_once(database_url: str,
                                                             world: World) -> None:
    """With a poll 30 s away, one booking's doorbell alone gets it numbered, read and delivered,
    by a drain on the LISTEN connection."""
    live = await start_live(database_url, sequencer_poll_seconds=30.0)
    try:
        slot = world.all_slots()[0]
        async with client(live.ws_url) as c:
            await c.subscribe(f"service:{slot['service_id']}")
            calls = live.runtime.listener.sequencer_calls
            booked = await world.booking.book(slot["id"], 1)
            update = await c.expect("availability:updated", within=10)
            assert update["slot"]["version"] == booked["slot"]["version"]
        assert live.runtime.listener.sequencer_calls > calls
        assert "rt_drain_events" in await listener_query(database_url)
    finally:
        await stop_live(live)


async def test_a_booking_just_after_a_drain_is_not_held_for_the_spacing(
        database_url: str, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a quiet spell a drain may follow another at once: with a 30 s spacing, a booking
    made just after the server's first drain still reaches a subscriber within 10 s."""
    monkeypatch.setattr("realtime.eventlog.listener.MIN_DRAIN_SPACING", 30.0)
    live = await start_live(database_url, sequencer_poll_seconds=60.0)
    try:
        slot = world.all_slots()[1]
        async with client(live.ws_url) as c:
            await c.subscribe(f"service:{slot['service_id']}")
            assert live.runtime.listener.sequencer_calls >= 1  # the drain at connect
            booked = await world.booking.book(slot["id"], 1)
            update = await c.expect("availability:updated", within=10)
            assert update["slot"]["version"] == booked["slot"]["version"]
    finally:
        await stop_live(live)


async def test_a_stream_costs_one_loan_per_drain(live: Live, world: World) -> None:
    """Under a stream of bookings each drain is one call (not a sequencer call and a read),
    drains stay paced, and every version still reaches a subscriber once, in order."""
    listener = live.runtime.listener
    channel = f"vendor:{world.vendor}"
    slot_ids = [s["id"] for s in world.all_slots()]
    async with client(live.ws_url) as c:
        seen = Collector(c)
        await c.subscribe(channel)
        loop = asyncio.get_running_loop()
        loans, calls, start = Queries.loans, listener.sequencer_calls, loop.time()
        await book_stream(world.booking, slot_ids, 400, workers=8)
        final = await slot_versions(world.pool)
        await seen.wait_for(channel, final)
        elapsed = loop.time() - start
        loans, calls = Queries.loans - loans, listener.sequencer_calls - calls
        seen.assert_complete(channel, final)
        await seen.stop()
    assert calls >= 5, calls
    assert calls <= elapsed / MIN_DRAIN_SPACING + DRAIN_BURST + 1, (calls, elapsed)
    # Reader backstop polls aside (the bookings here are one-statement calls, not loans).
    assert loans <= calls + elapsed / READER_BACKSTOP + 2, (loans, calls, elapsed)


async def test_a_drain_does_not_wait_for_another_sequencer(live: Live, world: World) -> None:
    """While another session holds the sequencer's lock, drains keep returning (they do not
    queue on the LISTEN connection), and what that session numbers reaches the subscriber
    once each, in order."""
    svc = world.services[0]
    channel = f"service:{svc}"
    slot_ids = [s["id"] for s in world.slots[svc]]
    listener = live.runtime.listener
    conn = await asyncpg.connect(live.database_url)
    try:
        async with client(live.ws_url) as c:
            seen = Collector(c)
            await c.subscribe(channel)
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *SEQUENCER_LOCK)
                calls = listener.sequencer_calls
                await book_stream(world.booking, slot_ids, 30, workers=3)
                await asyncio.sleep(0.3)  # the doorbell rang: drains find the lock taken
                assert listener.sequencer_calls >= calls + 2, listener.sequencer_calls - calls
                assert listener.connects == 1
                assert await conn.fetchval("SELECT rt_sequence_events(1000)") > 0
            final = {k: v for k, v in (await slot_versions(world.pool)).items() if k in slot_ids}
            await seen.wait_for(channel, final)
            await asyncio.sleep(0.2)  # a duplicate would arrive now
            seen.assert_complete(channel, final)
            await seen.stop()
    finally:
        await conn.close()


async def test_a_stuck_drain_on_the_listen_connection_is_given_up(database_url: str,
                                                                   world: World) -> None:
    """A drain held for seconds on the LISTEN connection (here by a lock on the sequencer's row)
    counts as a failed heartbeat: the listener reconnects, and once the lock goes the booking
    is delivered."""
    live = await start_live(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        slot = world.all_slots()[2]
        async with client(live.ws_url) as c:
            await c.subscribe(f"service:{slot['service_id']}")
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM rt_sequencer WHERE id = 1 FOR UPDATE")
                booked = await world.booking.book(slot["id"], 1)
                # The heartbeat gives the drain up after 2-3 s, well before its own timeout.
                for _ in range(int((DRAIN_TIMEOUT - 3) / 0.05)):
                    if live.runtime.listener.connects > 1:
                        break
                    await asyncio.sleep(0.05)
                assert live.runtime.listener.connects > 1
            update = await c.expect("availability:updated", within=10)
            assert update["slot"]["version"] == booked["slot"]["version"]
    finally:
        await conn.close()
        await stop_live(live)
