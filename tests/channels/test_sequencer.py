"""The sequencer under a stream of commits: spaced drains that still number every event."""

from __future__ import annotations

import asyncio

import asyncpg

from realtime.eventlog.listener import DRAIN_BURST, MIN_DRAIN_SPACING
from tests.channels.conftest import Live, seed

STREAM_SECONDS = 1.5


async def test_a_stream_of_bookings_is_numbered_in_spaced_drains(live: Live) -> None:
    """Bookings committing back to back do not keep the sequencer calling back to back: at most
    one call per MIN_DRAIN_SPACING on average (DRAIN_BURST at once after a quiet spell), and
    every event still gets its position."""
    listener = live.runtime.listener
    # Room for as many bookings as an idle machine makes in the stream (over 6,000).
    world = await seed(live.database_url, services=1, slots=8, capacity=1_000_000)
    slots = [s["id"] for s in world.all_slots()]
    loop = asyncio.get_running_loop()
    calls_before = listener.sequencer_calls
    start = loop.time()
    booked = 0

    async def racer(i: int) -> None:
        nonlocal booked
        while loop.time() - start < STREAM_SECONDS:
            result = await world.booking.book(slots[i % len(slots)], 1)
            assert "booking" in result, result
            booked += 1

    try:
        await asyncio.gather(*(racer(i) for i in range(8)))
    finally:
        await world.pool.close()
    elapsed = loop.time() - start
    conn = await asyncpg.connect(live.database_url)
    try:
        for _ in range(100):
            if not await conn.fetchval("SELECT count(*) FROM rt_events WHERE pos IS NULL"):
                break
            await asyncio.sleep(0.02)
        assert await conn.fetchval("SELECT count(*) FROM rt_events WHERE pos IS NULL") == 0
    finally:
        await conn.close()
    calls = listener.sequencer_calls - calls_before
    assert booked >= 100, f"only {booked} bookings: not a stream"
    assert calls <= elapsed / MIN_DRAIN_SPACING + DRAIN_BURST + 1, (calls, booked, elapsed)
