"""EventLog reading through a ReadReplica on a real hot standby: which copy answers, and never
an answer older than the position asked for."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from realtime.eventlog import replica
from realtime.eventlog.replica import ReadReplica
from realtime.eventlog.store import Channel, EventLog  # the store's Channel, wherever it lives
from tests.channels.conftest import seed
from tests.channels.streams import book_stream, slot_versions
from tests.replicas.conftest import Replicated, caught_up, position
from tests.replicas.helpers import fallbacks, number, served
from tests.support.pools import SELECTED_POOL


async def test_reads_wait_for_the_standby_or_ask_the_primary(replicated: Replicated) -> None:
    """The standby answers what it replayed; behind it waits at most WAIT; ahead or absent: the primary."""
    db = replicated
    world = await seed(db.primary, services=1)
    pool = world.pool
    epoch = await pool.fetchval("SELECT epoch FROM rt_sequencer WHERE id = 1")
    reads = ReadReplica(db.standby, 2, SELECTED_POOL, pool)
    await reads.start(epoch, lambda: 0)
    try:
        assert reads.usable
        log = EventLog(pool, reads)
        service = world.services[0]
        channel = Channel("service", service)
        slot_ids = [s["id"] for s in world.slots[service]]
        await book_stream(world.booking, slot_ids, 10)
        await number(world)
        standby_at = await caught_up(db)
        reads.announce(standby_at)  # as the listener does on NOTIFY rt_events

        before = served()
        snap = await log.snapshot(channel, at_least=standby_at)
        assert snap.pos == standby_at and served() == before + 1
        older = {s["id"]: s["version"] for s in snap.slots}

        await db.pair.pause_replay()
        await book_stream(world.booking, slot_ids, 10)
        await number(world)
        primary_at = await position(db.primary)
        assert primary_at > standby_at
        reads.announce(primary_at)
        newer = await slot_versions(pool)

        # What it has replayed, the paused standby still serves.
        before = served()
        snap = await log.snapshot(channel)
        assert snap.pos == standby_at and served() == before + 1

        # Behind the position asked for: waited for, then the primary's state.
        behind = fallbacks("behind")
        loop = asyncio.get_running_loop()
        started = loop.time()
        snap = await log.snapshot(channel, at_least=primary_at)
        assert loop.time() - started >= replica.WAIT * 0.9
        assert snap.pos >= primary_at and fallbacks("behind") == behind + 1
        assert {s["id"]: s["version"] for s in snap.slots} == {i: newer[i] for i in slot_ids}

        # A resume from a cursor the standby has not replayed: exactly the events after it.
        page = await log.events_since(channel, standby_at, epoch, at_least=primary_at)
        assert page is not None and page.pos >= primary_at
        assert [e.pos for e in page.events] == sorted(e.pos for e in page.events)
        assert all(e.pos > standby_at for e in page.events)
        assert len(page.events) == sum(newer[i] - older[i] for i in slot_ids)

        # Beyond anything announced (a forged cursor): the primary, without waiting.
        ahead = fallbacks("ahead")
        started = loop.time()
        snap = await log.snapshot(channel, at_least=primary_at + 1000)
        assert loop.time() - started < replica.WAIT / 2
        assert snap.pos == primary_at and fallbacks("ahead") == ahead + 1

        # Created while the standby is paused: absent there, found on the primary.
        vendor = (await world.booking.create_vendor("Late"))["id"]
        absent = fallbacks("absent")
        assert await log.exists(Channel("vendor", vendor))
        assert fallbacks("absent") == absent + 1
        assert not await log.exists(Channel("vendor", str(uuid.uuid4())))
    finally:
        await db.pair.resume_replay()
        await reads.close()
        await pool.close()


async def test_a_read_held_up_by_a_replayed_lock_goes_to_the_primary(
        replicated: Replicated) -> None:
    """A read blocked by a lock the paused standby is replaying goes to the primary after lock_timeout (WAIT)."""
    db = replicated
    world = await seed(db.primary, services=1)
    pool = world.pool
    epoch = await pool.fetchval("SELECT epoch FROM rt_sequencer WHERE id = 1")
    reads = ReadReplica(db.standby, 2, SELECTED_POOL, pool)
    await reads.start(epoch, lambda: 0)
    locker = await asyncpg.connect(db.primary)
    standby = await asyncpg.connect(db.standby)
    try:
        await caught_up(db)
        # A lock the primary takes and the standby replays, then replay pauses before the
        # commit: on the primary it is gone, on the standby it stays.
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE rt_vendors IN ACCESS EXCLUSIVE MODE")
        await locker.execute("SELECT pg_switch_wal()")  # sent to the standby now
        for _ in range(500):
            held = await standby.fetchval(
                "SELECT count(*) FROM pg_locks WHERE relation = 'rt_vendors'::regclass "
                "AND mode = 'AccessExclusiveLock'")
            if held:
                break
            await asyncio.sleep(0.02)
        assert held, "the standby did not replay the lock"
        await db.pair.pause_replay()
        await tx.commit()

        log = EventLog(pool, reads)
        refused = fallbacks("error")
        loop = asyncio.get_running_loop()
        started = loop.time()
        snap = await log.snapshot(Channel("vendor", world.vendor))
        took = loop.time() - started
        assert replica.WAIT * 0.9 <= took < replica.WAIT + 5, took
        assert len(snap.slots) == len(world.all_slots())
        assert fallbacks("error") == refused + 1
        assert reads.usable  # a lock is not an outage
    finally:
        await db.pair.resume_replay()
        await locker.close()
        await standby.close()
        await reads.close()
        await pool.close()
