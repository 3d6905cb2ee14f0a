"""Reconnect storms cost the database per channel, not per client.

The server runs in this process, so `Queries` counts its calls to PostgreSQL; its background
work (the sweeper, the webhook dispatcher's poll) adds a few a second, which the bounds below
allow for: a query per client would be 300.
"""

from __future__ import annotations

import asyncio
from typing import Any

from realtime.db.stats import Queries
from tests.channels.conftest import Live, World, client, start_live, stop_live
from tests.channels.streams import book_stream


async def _resume(url: str, channel: str, since: str | None) -> dict[str, Any]:
    async with client(url) as c:
        extra = {"since": since} if since is not None else {}
        return await c.subscribe(channel, **extra)


async def test_a_resume_storm_is_answered_from_memory(live: Live, world: World) -> None:
    """300 clients resuming at once from cursors this process holds: each gets exactly the
    events it missed, and the database is asked nothing."""
    svc = world.services[0]
    channel = f"service:{svc}"
    slots = [s["id"] for s in world.slots[svc]]
    async with client(live.ws_url) as c:
        cursor = (await c.subscribe(channel))["cursor"]
        await book_stream(world.booking, slots, 6)
        for _ in range(6):  # the process has read them
            await c.expect("availability:updated")
    async with client(live.ws_url) as c:
        expected = (await c.subscribe(channel, since=cursor))["events"]
    assert len(expected) == 6
    before = Queries.statements
    answers = await asyncio.gather(*(_resume(live.ws_url, channel, cursor) for _ in range(300)))
    assert Queries.statements - before < 20
    assert all(a["events"] == expected for a in answers)


async def test_a_snapshot_storm_shares_reads(live: Live, world: World) -> None:
    """300 clients subscribing at once without a cursor share the snapshot reads of their
    channel: a handful of queries, every client the same, current state."""
    svc = world.services[1]
    channel = f"service:{svc}"
    before = Queries.statements
    answers = await asyncio.gather(*(_resume(live.ws_url, channel, None) for _ in range(300)))
    assert Queries.statements - before < 20
    first = answers[0]["snapshot"]
    assert all(a["snapshot"] == first and a["cursor"] == answers[0]["cursor"] for a in answers)


async def test_an_old_cursor_still_resumes_exactly_from_the_database(database_url: str,
                                                                     world: World) -> None:
    """A cursor older than what the process holds is answered from the database, exactly."""
    live = await start_live(database_url, resume_events=2)
    svc = world.services[0]
    channel = f"service:{svc}"
    try:
        async with client(live.ws_url) as c:
            cursor = (await c.subscribe(channel))["cursor"]
            await book_stream(world.booking, [s["id"] for s in world.slots[svc]], 5)
            for _ in range(5):
                await c.expect("availability:updated")
        before = Queries.statements
        resumed = await _resume(live.ws_url, channel, cursor)
        assert Queries.statements - before >= 1  # not held: read from the log
        versions = [e["slot"]["version"] for e in resumed["events"]]
        assert len(versions) == 5 and len(resumed["events"]) == 5
    finally:
        await stop_live(live)
