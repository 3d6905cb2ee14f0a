"""Delivery guarantees over real sockets: order, completeness, resume, outages."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from realtime.booking.service import BookingService
from realtime.db.connect import _init_connection
from tests.channels.conftest import Live, World, client, start_live, stop_live
from tests.channels.streams import Collector, book_stream, slot_versions

SEQUENCER_LOCK = (7262454, 1)


def finals(versions: dict[str, int], world: World, service: str | None = None) -> dict[str, int]:
    ids = {s["id"] for s in (world.slots[service] if service else world.all_slots())}
    return {k: v for k, v in versions.items() if k in ids}


@pytest.mark.parametrize("bulk", [False, True])
async def test_snapshot_then_every_event_in_version_order(live: Live, world: World,
                                                          bulk: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Vendor and service subscribers get a snapshot, then every version of every slot once.

    With `bulk`, every dispatch goes through the threaded bulk writer (normally only for
    hundreds of sockets at once).
    """
    if bulk:
        monkeypatch.setattr("realtime.channels.runtime.PARALLEL_MIN", 1)
    svc = world.services[0]
    async with client(live.ws_url) as cv, client(live.ws_url) as cs:
        vendor, service = Collector(cv), Collector(cs)
        await cv.subscribe(f"vendor:{world.vendor}")
        await cs.subscribe(f"service:{svc}")
        slot_ids = [s["id"] for s in world.all_slots()]
        await book_stream(world.booking, slot_ids, 300, workers=8)
        final = await slot_versions(world.pool)
        await vendor.wait_for(f"vendor:{world.vendor}", finals(final, world))
        await service.wait_for(f"service:{svc}", finals(final, world, svc))
        await asyncio.sleep(0.2)  # anything extra (a duplicate) would arrive now
        vendor.assert_complete(f"vendor:{world.vendor}", finals(final, world))
        service.assert_complete(f"service:{svc}", finals(final, world, svc))
        other = {s["id"] for s in world.slots[world.services[1]]}
        assert not other & set(service.versions[f"service:{svc}"])
        await vendor.stop()
        await service.stop()


async def test_resume_with_since_gets_exactly_the_missed_events(live: Live, world: World) -> None:
    """A resubscribe with the last cursor gets the missed events in order, then the live stream."""
    svc = world.services[0]
    channel = f"service:{svc}"
    slot_ids = [s["id"] for s in world.slots[svc]]
    async with client(live.ws_url) as c:
        first = await c.subscribe(channel)
        before = {s["id"]: s["version"] for s in first["snapshot"]["slots"]}
        cursor = first["cursor"]
    await book_stream(world.booking, slot_ids, 40)
    async with client(live.ws_url) as c:
        col = Collector(c)
        resumed = await c.subscribe(channel, since=cursor)
        assert "snapshot" not in resumed and resumed["events"]
        # What was committed but not yet numbered when it resumed follows live, right after.
        final = finals(await slot_versions(world.pool), world, svc)
        await col.wait_for(channel, final)
        for slot in slot_ids:
            assert col.versions[channel][slot] == list(range(before[slot] + 1, final[slot] + 1))
        col.assert_complete(channel, final)
        # Nothing missed since: a resume from the last cursor is empty, and live goes on.
        await world.booking.book(slot_ids[0], 1)
        live_msg = await c.expect("availability:updated")
        while (live_msg["slot"]["id"] != slot_ids[0]
               or live_msg["slot"]["version"] <= final[slot_ids[0]]):
            live_msg = await c.expect("availability:updated")
        assert live_msg["slot"]["version"] == final[slot_ids[0]] + 1
    async with client(live.ws_url) as c:
        again = await c.subscribe(channel, since=live_msg["cursor"])
        assert again["events"] == []


@pytest.mark.parametrize("how", ["other-epoch", "junk", "pruned", "future"])
async def test_unusable_since_gets_a_snapshot(database_url: str, world: World, how: str) -> None:
    """A cursor from another database, junk, pruned history or the future gets a snapshot
    (this server holds only its last event in memory, so the database decides)."""
    live = await start_live(database_url, resume_events=1)
    svc = world.services[0]
    channel = f"service:{svc}"
    try:
        async with client(live.ws_url) as c:
            cursor = (await c.subscribe(channel))["cursor"]
            await book_stream(world.booking, [s["id"] for s in world.slots[svc]], 5)
            for _ in range(5):  # read by the server, which now holds only the last of them
                await c.expect("availability:updated")
        pos, epoch = cursor.split("@")
        if how == "pruned":
            await world.pool.execute("SELECT rt_prune_events(interval '0 seconds')")
            since = cursor
        else:
            since = {"other-epoch": f"{pos}@zz99", "junk": "what?",
                     "future": f"{int(pos) + 10_000}@{epoch}"}[how]
        async with client(live.ws_url) as c:
            msg = await c.subscribe(channel, since=since)
            final = finals(await slot_versions(world.pool), world, svc)
            assert {s["id"]: s["version"] for s in msg["snapshot"]["slots"]} == final
    finally:
        await stop_live(live)


async def test_database_connections_killed_mid_stream(live: Live, world: World) -> None:
    """pg_terminate_backend on every server connection, repeatedly: no subscriber loses a version."""
    pool = await asyncpg.create_pool(
        live.database_url, min_size=2, max_size=6, init=_init_connection,
        server_settings={"application_name": "rt-test-traffic"})
    assert pool is not None
    booking = BookingService(pool)
    svc = world.services[0]
    clients = [client(live.ws_url) for _ in range(3)]
    conns = [await c.__aenter__() for c in clients]
    try:
        collectors = [Collector(c) for c in conns]
        await conns[0].subscribe(f"vendor:{world.vendor}")
        await conns[1].subscribe(f"service:{svc}")
        await conns[2].subscribe(f"vendor:{world.vendor}")
        slot_ids = [s["id"] for s in world.all_slots()]
        connects_before = live.runtime.listener.connects

        kills: list[int] = []

        async def kill() -> None:
            kills.append(await pool.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database()"
                " AND split_part(application_name, ':', 1) IN ('realtime', 'realtime-listener')"))

        async def killer() -> None:
            for _ in range(4):
                await asyncio.sleep(0.3)
                await kill()

        await asyncio.gather(book_stream(booking, slot_ids, 400, workers=4, pause=0.005),
                             killer())
        # The last changes commit and get numbered while the listener is down, and nothing
        # rings after them: only re-reading the log on reconnect can deliver them.
        await kill()
        await book_stream(booking, slot_ids, 12, workers=6)
        await pool.fetchval("SELECT rt_sequence_events(1000)")  # its NOTIFY finds nobody
        final = await slot_versions(pool)
        for col, channel, service in [(collectors[0], f"vendor:{world.vendor}", None),
                                      (collectors[1], f"service:{svc}", svc),
                                      (collectors[2], f"vendor:{world.vendor}", None)]:
            await col.wait_for(channel, finals(final, world, service), within=20)
            col.assert_complete(channel, finals(final, world, service))
            assert col.client.close_code is None
        assert sum(kills) >= 5, kills
        assert live.runtime.listener.connects > connects_before
        for _ in range(100):
            if live.runtime.ready() is None:
                break
            await asyncio.sleep(0.05)
        assert live.runtime.ready() is None
        for col in collectors:
            await col.stop()
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)
        await pool.close()


async def test_first_to_take_a_position_last_to_commit(live: Live, world: World) -> None:
    """A booking whose event id comes first but commits last reaches live and resumed clients."""
    svc = world.services[0]
    channel = f"service:{svc}"
    late_slot, other_slot = (s["id"] for s in world.slots[svc][:2])
    async with client(live.ws_url) as c_live, client(live.ws_url) as c_early:
        live_col = Collector(c_live)
        await c_live.subscribe(channel)
        early_cursor = (await c_early.subscribe(channel))["cursor"]
        start = {s["id"]: s["version"] for s in world.slots[svc]}

        freezer = await asyncpg.connect(live.database_url)
        late = await asyncpg.connect(live.database_url)
        # Freeze the sequencer and ring the doorbell ourselves, so that the late transaction
        # finds the bell rung and neither rings it nor holds its row lock while open.
        freeze = freezer.transaction()
        await freeze.start()
        await freezer.execute("SELECT pg_advisory_xact_lock($1, $2)", *SEQUENCER_LOCK)
        await world.pool.execute("UPDATE rt_doorbell SET rung = true WHERE id = 1")
        tx = late.transaction()
        await tx.start()
        await late.fetchval("SELECT rt_book($1::uuid, 1, NULL, NULL, NULL, '', NULL, NULL)",
                            late_slot)
        await freeze.commit()
        # Later bookings commit first, get numbered and delivered.
        await world.booking.book(other_slot, 1)
        await world.booking.book(other_slot, 1)
        await live_col.wait_for(channel, {other_slot: start[other_slot] + 2})
        mid_cursor = [m for m in c_live.seen if m["type"] == "availability:updated"][-1]["cursor"]
        async with client(live.ws_url) as c_during:
            during = Collector(c_during)
            snap = await c_during.subscribe(channel)
            assert {s["id"]: s["version"] for s in
                    snap["snapshot"]["slots"]}[late_slot] == start[late_slot]
            await tx.commit()
            await live_col.wait_for(channel, {late_slot: start[late_slot] + 1})
            await during.wait_for(channel, {late_slot: start[late_slot] + 1})
            await during.stop()
        await late.close()
        await freezer.close()
        await live_col.stop()
    for cursor, expected in [(mid_cursor, [(late_slot, start[late_slot] + 1)]),
                             (early_cursor, [(other_slot, start[other_slot] + 1),
                                             (other_slot, start[other_slot] + 2),
                                             (late_slot, start[late_slot] + 1)])]:
        async with client(live.ws_url) as c:
            resumed = await c.subscribe(channel, since=cursor)
            got = [(e["slot"]["id"], e["slot"]["version"]) for e in resumed["events"]]
            assert got == expected


async def test_snapshot_of_committed_but_unnumbered_events(live: Live, world: World) -> None:
    """A change in the snapshot but not yet numbered is not sent again; the next one is."""
    svc = world.services[0]
    channel = f"service:{svc}"
    slot = world.slots[svc][0]["id"]
    freezer = await asyncpg.connect(live.database_url)
    try:
        freeze = freezer.transaction()
        await freeze.start()
        await freezer.execute("SELECT pg_advisory_xact_lock($1, $2)", *SEQUENCER_LOCK)
        await world.booking.book(slot, 1)  # committed, unnumbered while the lock is held
        async with client(live.ws_url) as c:
            sub = await c.subscribe(channel)
            version = {s["id"]: s["version"] for s in sub["snapshot"]["slots"]}[slot]
            await freeze.commit()
            await asyncio.sleep(0.3)  # the frozen event gets numbered and dispatched now
            await world.booking.book(slot, 1)
            msg = await c.expect("availability:updated")
            assert msg["slot"]["version"] == version + 1
    finally:
        await freezer.close()
