"""A hole in the event log (events pruned before this process read them) forces a resync."""

from __future__ import annotations

import asyncpg
import pytest

from tests.channels.conftest import Live, World, client

SEQUENCER_LOCK = (7262454, 1)


@pytest.mark.parametrize("hole", ["first", "inside"])
async def test_events_pruned_before_the_reader_got_them_force_a_resync(
        live: Live, world: World, hole: str) -> None:
    """Subscribers are closed with 1013, and resuming from their old cursor gets a snapshot of
    the newest state instead of a stream with a hole in it, whether the hole starts the batch
    the reader reads or lies inside it (after another channel's event)."""
    svc, other = world.services[0], world.services[1]
    slot = world.slots[svc][0]["id"]
    channel = f"service:{svc}"
    async with client(live.ws_url) as c:
        first = await c.subscribe(channel)
        start = {s["id"]: s["version"] for s in first["snapshot"]["slots"]}[slot]
        pruner = await asyncpg.connect(live.database_url)
        try:
            async with pruner.transaction():
                # Hold the sequencer, book, then number the events and prune one of ours in
                # the same commit: the server's reader meets a log with a hole after its
                # position. "inside": another service's booking is numbered first, so the
                # hole is inside the batch, where the reader has an event it can hold
                # before it (the sweeper's expiries of other tests' holds can do the same).
                await pruner.execute("SELECT pg_advisory_xact_lock($1, $2)", *SEQUENCER_LOCK)
                if hole == "inside":
                    await world.booking.book(world.slots[other][0]["id"], 1)
                for _ in range(3):
                    await world.booking.book(slot, 1)
                # At least ours: the sweeper may commit expiries of other tests' holds meanwhile.
                assert await pruner.fetchval("SELECT rt_sequence_events(1000)") >= 3
                first_new = await pruner.fetchval(
                    "SELECT min(pos) FROM rt_events WHERE slot_id = $1 AND version > $2",
                    slot, start)
                await pruner.execute("DELETE FROM rt_events WHERE pos = $1", first_new)
                await pruner.execute("UPDATE rt_sequencer SET pruned_pos = $1", first_new)
        finally:
            await pruner.close()
        assert await c.closed() == 1013
    async with client(live.ws_url) as again:
        resumed = await again.subscribe(channel, since=first["cursor"])
    assert "snapshot" in resumed and "events" not in resumed, resumed.get("events")
    assert {s["id"]: s["version"] for s in resumed["snapshot"]["slots"]}[slot] == start + 3
    errors = live._errors  # type: ignore[attr-defined]
    gap = [r for r in errors.records if "gap" in r.getMessage()]
    assert gap, "the reader did not report the hole"
    errors.records = [r for r in errors.records if r not in gap]
