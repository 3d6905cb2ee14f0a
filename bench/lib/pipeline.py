"""The server's event pipeline, run beside direct `rt_book` calls; the backlog it leaves; a
quiet database between phases."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from realtime.eventlog.events import fetch_after
from realtime.eventlog.listener import MIN_DRAIN_SPACING


async def settle(dsn: str) -> None:
    """Between phases: an empty event log, a quiet doorbell, a checkpoint."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE rt_events")
        await conn.execute("UPDATE rt_doorbell SET rung = false")
        await conn.execute("VACUUM (ANALYZE) rt_slots")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def event_pipeline(dsn: str, stats: dict[str, Any]) -> AsyncIterator[None]:
    """The server's event pipeline, in this process: a LISTEN connection, the sequencer
    (`rt_sequence_events`, on each doorbell or every 0.25 s, at most once per
    MIN_DRAIN_SPACING, once more after a drain that numbered something) and the reader
    (numbered events after the last position, on each rt_events not yet read). Counts go to
    `stats` as they happen."""
    listen = await asyncpg.connect(dsn)
    seq_conn = await asyncpg.connect(dsn)
    read_conn = await asyncpg.connect(dsn)
    doorbell, published = asyncio.Event(), asyncio.Event()
    stats.update(doorbells=0, events_notifies=0, drains=0, numbered=0, read=0)

    def on_doorbell(*_: Any) -> None:
        stats["doorbells"] += 1
        doorbell.set()

    def on_events(_c: Any, _p: int, _ch: str, payload: str) -> None:
        stats["events_notifies"] += 1
        if int(payload) > last_pos:
            published.set()

    last_pos = await read_conn.fetchval("SELECT last_pos FROM rt_sequencer")

    async def sequencer() -> None:
        loop = asyncio.get_running_loop()
        last_drain = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(doorbell.wait(), 0.25)
            if (wait := last_drain + MIN_DRAIN_SPACING - loop.time()) > 0:
                await asyncio.sleep(wait)
            last_drain = loop.time()
            doorbell.clear()
            while True:
                count = await seq_conn.fetchval("SELECT rt_sequence_events(1000)")
                stats["drains"] += 1
                stats["numbered"] += count
                if count:
                    published.set()
                if count < 1000:
                    break
            if count:
                doorbell.set()

    async def reader() -> None:
        nonlocal last_pos
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(published.wait(), 1.0)
            published.clear()
            while True:
                events = await fetch_after(read_conn, last_pos, 1000)
                if not events:
                    break
                last_pos = events[-1].pos
                stats["read"] += len(events)

    await listen.add_listener("rt_doorbell", on_doorbell)
    await listen.add_listener("rt_events", on_events)
    tasks = [asyncio.create_task(sequencer()), asyncio.create_task(reader())]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for c in (listen, seq_conn, read_conn):
            await c.close()


async def backlog(dsn: str) -> dict[str, Any]:
    """Right after the load stops: what is not yet numbered, and how long until it is."""
    conn = await asyncpg.connect(dsn)
    try:
        out: dict[str, Any] = {"unnumbered_at_stop": await conn.fetchval(
            "SELECT count(*) FROM rt_events WHERE pos IS NULL")}
        t0 = time.monotonic()
        while await conn.fetchval("SELECT count(*) FROM rt_events WHERE pos IS NULL"):
            if time.monotonic() - t0 > 10:
                break
            await asyncio.sleep(0.01)
        out["drained_after_stop_ms"] = round((time.monotonic() - t0) * 1000, 1)
        return out
    finally:
        await conn.close()
