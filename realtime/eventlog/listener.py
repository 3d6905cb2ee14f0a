"""The listener: a dedicated LISTEN connection, the sequencer and the event reader.

Notifications are only doorbells (a dropped LISTEN session misses them and nothing replays
them: docs/design-notes.md); the event table is the log. So every path that could have missed a
notification ends in the same place: read `rt_events` after the last position dispatched.
After a reconnect, after a poll, after our own sequencer numbered something: read again.

- connection task: `LISTEN rt_doorbell, rt_events` on its own connection (a pooled one runs
  `UNLISTEN *` when released), a termination listener plus a heartbeat query with a timeout,
  so that a dead connection is noticed within seconds, not when TCP gives up
  (MagicStack/asyncpg#519); reconnects with backoff and jitter.
- sequencer task: on a doorbell or every `sequencer_poll_seconds`, a drain, paced to one per
  `MIN_DRAIN_SPACING` on average (`DRAIN_BURST` at once after a quiet spell), and one more at
  least that long after a drain that numbered something. A drain is one call on the LISTEN
  connection (lending.py), `rt_drain_events()`: it numbers what is committed and returns the
  events after `last_pos`, which it hands to the hub itself.
- reader task: on `rt_events` from another process's sequencer (or a backstop poll) fetch the
  events after `last_pos` and hand each batch to the hub. With a read replica
  (`DATABASE_READ_URL`, replica.py) it reads everything there (drains only number): a NOTIFY
  from the primary says which position exists (its payload), and while the replica has not
  replayed it the reader polls it every few milliseconds; the replica's positions are a prefix
  of the primary's, so reading `pos > last_pos` there never skips one, it only comes later.
- pruner task: deletes events older than the retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from realtime.db.connect import KEEPALIVES, process_name
from realtime.db.errors import NOT_SENT
from realtime.db.interface import ConnectionPool
from realtime.eventlog import metrics
from realtime.eventlog.events import Event, drain, fetch_after, fetch_after_with_state, fetch_between
from realtime.eventlog.lending import ListenConnection
from realtime.eventlog.recent import RecentEvents
from realtime.eventlog.replica import ReadReplica
from realtime.settings import Settings
from realtime.tasks import backoff, cancel_all, supervise

log = logging.getLogger("realtime.eventlog.listener")

BATCH = 1000
HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_TIMEOUT = 2.0
CONNECT_TIMEOUT = 5.0
# The longest wait between two attempts of the listener, sequencer or reader to reach the
# database again. With the default (5 s) subscribers converged 4.3 s after a 10 s outage ended
# (tests/faults); each process makes one attempt per task at most every 2 s while it is down.
RECONNECT_CAP = 2.0
READER_BACKSTOP = 1.0
# While the replica has not replayed an announced position: the first poll soon after (WAL
# replay usually takes a millisecond or two), then less often.
REPLICA_POLL_FIRST = 0.002
REPLICA_POLL_MAX = 0.05
PRUNE_INTERVAL = 60.0
# Each drain is a transaction with its own WAL flush; on a hot slot those flushes queue with
# the bookings' (which hold the slot's lock through theirs). 10 ms bounds drains to 100/s under
# load and adds at most 10 ms to an event's delivery only then: measured on one hot slot,
# 3 ms -> 10 ms gave 23% more bookings/s, 10 -> 20 ms 6% more (bench/pair.py, CHANGELOG).
MIN_DRAIN_SPACING = 0.010
# Drains that may start at once after a quiet spell (the average stays one per spacing).
DRAIN_BURST = 2
# A drain waits at most this long for its answer (then it is retried).
DRAIN_TIMEOUT = 10.0
DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # What a pooled connection killed in the middle of an operation can raise on reuse.
    asyncpg.InternalClientError,
)

OnEvents = Callable[[Sequence[Event], str, float], None]


class Listener:
    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool,
        dsn: str,
        on_events: OnEvents,
        on_gap: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._dsn = dsn
        self._on_events = on_events
        self._on_gap = on_gap
        # The log's recent events for resumes: fed in the same step as the hub's dispatch, so
        # that its top is always the hub's position.
        self.recent = RecentEvents(settings.resume_events)
        # Where the reader, snapshots and resumes read when DATABASE_READ_URL is set.
        self.reads = ReadReplica.from_settings(settings, pool)
        # Called (no arguments, must not block) after each batch of new events is dispatched:
        # other readers of the log, such as the webhook dispatcher, wake on it.
        self.watchers: list[Callable[[], None]] = []
        self._doorbell = asyncio.Event()
        self._wake_reader = asyncio.Event()
        self._woken_at = 0.0
        # A drain in flight, and the highest position announced meanwhile (usually its own).
        self._draining = False
        self._announced = 0
        self._listen = ListenConnection(pool)
        # Drains and the reader hand batches to the hub one at a time, in position order.
        self._dispatch = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._conn: asyncpg.Connection | None = None
        self.epoch = ""
        self.last_pos = 0
        self.not_ready: str | None = "the listener has not connected yet"
        self.connects = 0
        # PostgreSQL itself said it is down (refused the connection, or is starting or shutting
        # down), rather than the network going silent: every process is as blind as this one.
        self.database_down = False
        self.sequencer_calls = 0

    async def start(self) -> None:
        """Read where the log stands now (live subscribers start from there) and its most
        recent events (resumes from a recent cursor are answered from memory)."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT epoch, last_pos, pruned_pos FROM rt_sequencer WHERE id = 1")
            if row is None:
                raise RuntimeError("rt_sequencer is empty: run `realtime migrate`")
            # One statement: the events and the position agree even if the pruner runs.
            first = max(row["last_pos"] - self.recent.limit, row["pruned_pos"])
            held = await fetch_between(conn, first, row["last_pos"])
        self.epoch, self.last_pos = row["epoch"], row["last_pos"]
        self.recent.reset(first, self.epoch)
        self.recent.extend(held)  # pruned meanwhile: it holds only what follows the hole
        if self.reads is not None:
            self.reads.announce(self.last_pos)
            await self.reads.start(self.epoch, lambda: self.last_pos)
        self._tasks = [
            supervise("listener", self._connection),
            supervise("sequencer", self._sequencer),
            supervise("reader", self._reader),
            supervise("pruner", self._pruner),
        ]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
        if self.reads is not None:
            await self.reads.close()

    def ready(self) -> str | None:
        return self.not_ready

    # --- notifications (called by asyncpg, must not block) --------------------------------

    def _ring(self, *_: Any) -> None:
        self._doorbell.set()
        self._mark()

    def _events_published(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        # The payload is the last position numbered; our own drains have usually read it.
        with contextlib.suppress(ValueError):
            pos = int(payload)
            if self.reads is not None:
                self.reads.announce(pos)
            if pos <= self.last_pos:
                return
            if self._draining:  # the drain in flight reads it (or wakes the reader after)
                self._announced = max(self._announced, pos)
                return
        self._mark()
        self._wake_reader.set()

    def _mark(self) -> None:
        if not self._woken_at:
            self._woken_at = asyncio.get_running_loop().time()

    # --- tasks ----------------------------------------------------------------------------

    async def _connection(self) -> None:
        attempt = 0
        while True:
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=CONNECT_TIMEOUT,
                    server_settings={"application_name": process_name("realtime-listener"),
                                     **KEEPALIVES},
                )
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener("rt_doorbell", self._ring)
                await conn.add_listener("rt_events", self._events_published)
                self._conn = self._listen.conn = conn
                self.not_ready = None
                self.database_down = False
                metrics.LISTENER_CONNECTED.set(1)
                if self.connects:
                    metrics.LISTENER_RECONNECTS.inc()
                    log.warning("listener reconnected; reading what was committed meanwhile")
                self.connects += 1
                attempt = 0
                # Whatever was committed while nobody listened rang no bell that we heard.
                self._ring()
                self._wake_reader.set()
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), HEARTBEAT_INTERVAL)
                    except TimeoutError:
                        await self._listen.heartbeat(HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT)
                self.not_ready = "the listener lost its database connection"
            except DB_ERRORS as exc:
                self.not_ready = f"the listener cannot reach the database ({type(exc).__name__})"
                self.database_down = isinstance(exc, NOT_SENT)
                log.warning("listener connection: %s: %s", type(exc).__name__, exc)
            finally:
                metrics.LISTENER_CONNECTED.set(0)
                if self.not_ready is None:
                    self.not_ready = "the listener is stopping"
                self._conn = self._listen.conn = None
                if conn is not None:
                    conn.terminate()
            attempt += 1
            await asyncio.sleep(backoff(attempt, cap=RECONNECT_CAP))

    async def _sequencer(self) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        tokens, refilled = float(DRAIN_BURST), loop.time()
        follow_up = 0.0  # when the drain that follows a numbering one is due (0: none)
        while True:
            wait = self._settings.sequencer_poll_seconds
            if follow_up:
                wait = min(wait, max(0.0, follow_up - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._doorbell.wait(), wait)
            # Under a stream of bookings every drain clears the doorbell and the next booking
            # rings again: unpaced, a hot slot would pay a drain (and a NOTIFY) per booking. The
            # bucket's burst serves a booking just after another one's drain at light load.
            now = loop.time()
            tokens = min(DRAIN_BURST, tokens + (now - refilled) / MIN_DRAIN_SPACING)
            refilled = now
            if tokens < 1:
                await asyncio.sleep((1 - tokens) * MIN_DRAIN_SPACING)
                tokens, refilled = 1.0, loop.time()
            tokens -= 1
            start = loop.time()
            if start >= follow_up:
                follow_up = 0.0
            self._doorbell.clear()
            try:
                while True:
                    count, again = await self._drain()
                    # Calling again until a call numbers nothing would, under a steady stream
                    # of commits, never stop: a sequencer transaction (and its WAL flush)
                    # back to back, each competing with the bookings' own flushes (measured:
                    # 1.6 more commits per booking on a hot slot).
                    if not again:
                        break
                if count:
                    # A booking that committed while this drain ran may have seen the doorbell
                    # still rung, and not rung it: one more drain, after the spacing, finds it.
                    # (Also after a drain that found the lock taken: the other call's snapshot
                    # may predate what rang.)
                    follow_up = max(follow_up, start + MIN_DRAIN_SPACING)
                attempt = 0
            except DB_ERRORS as exc:
                log.warning("sequencer: %s: %s", type(exc).__name__, exc)
                attempt += 1
                await asyncio.sleep(backoff(attempt, cap=RECONNECT_CAP))

    async def _drain(self) -> tuple[int, bool]:
        """One sequencer call, and with it the read when the reader reads the primary:
        (events it numbered or -1 if the lock was taken, whether a full batch calls for
        another call at once)."""
        if self.reads is not None:
            async with self._pool.acquire(first=True) as conn:
                count = await conn.fetchval("SELECT rt_sequence_events($1)", BATCH,
                                            timeout=DRAIN_TIMEOUT)
            self._sequenced(count)
            return count, count >= BATCH
        async with self._dispatch:
            self._draining = True
            try:
                async with self._listen.lend() as conn:
                    count, events = await drain(conn, self.last_pos, BATCH, DRAIN_TIMEOUT)
                # -1: another sequencer call held the lock; its NOTIFY announces what it numbers.
                self._sequenced(max(count, 0), read=True)
                if events:
                    self._deliver(events, self._stamp())
            finally:
                self._draining = False
                if self._announced > self.last_pos:  # numbered elsewhere, and not read here
                    self._mark()
                    self._wake_reader.set()
                self._announced = 0
        return count, len(events) >= BATCH

    async def sequence_now(self) -> int | None:
        """Number what is committed now, for a snapshot that wants nothing left unnumbered;
        returns the last position numbered (a snapshot read at or after it sees them numbered).

        Gives up quickly (and returns None) if another sequencer holds the lock: the caller
        then falls back on skipping the unnumbered events it saw.
        """
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '200ms'")
                count = await conn.fetchval("SELECT rt_sequence_events($1)", BATCH)
                # Under the sequencer's lock, still held: exactly where this call left the log.
                last = await conn.fetchval("SELECT last_pos FROM rt_sequencer WHERE id = 1")
        except DB_ERRORS:
            return None
        self._sequenced(count)
        if self.reads is not None:
            self.reads.announce(last)
        return int(last)

    def _sequenced(self, count: int, read: bool = False) -> None:
        """After a sequencer call: count it; the reader fetches what it numbered, unread."""
        self.sequencer_calls += 1
        metrics.SEQUENCER_CALLS.inc()
        if count:
            metrics.EVENTS_NUMBERED.inc(count)
        if count and not read:
            self._mark()
            self._wake_reader.set()

    async def _reader(self) -> None:
        attempt = 0
        poll = REPLICA_POLL_FIRST
        while True:
            reads = self.reads
            if reads is not None and reads.behind():
                wait, poll = poll, min(poll * 2, REPLICA_POLL_MAX)
            else:
                wait, poll = READER_BACKSTOP, REPLICA_POLL_FIRST
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_reader.wait(), wait)
            self._wake_reader.clear()
            stamp = self._stamp()
            try:
                async with self._dispatch:
                    await self._read_all(stamp)
                attempt = 0
                if reads is not None:
                    if reads.behind():
                        # Not replayed yet: the latency of those events counts from their
                        # notification, not from the poll that finds them.
                        self._woken_at = min(self._woken_at or stamp, stamp)
                    reads.watch_lag()
                    if not reads.usable and reads.known > self.last_pos:
                        self._wake_reader.set()  # just left: read the rest on the primary
            except DB_ERRORS as exc:
                log.warning("reader: %s: %s", type(exc).__name__, exc)
                self._wake_reader.set()
                attempt += 1
                await asyncio.sleep(backoff(attempt, cap=RECONNECT_CAP))

    async def _fetch(self) -> list[Event]:
        """The next batch after `last_pos`: from the replica while reads use it, else (or if it
        fails now) from the primary."""
        reads = self.reads
        source = reads.source() if reads is not None else None
        if reads is not None and source is not None:
            try:
                async with source.acquire(first=True) as conn:
                    epoch, top, events = await fetch_after_with_state(conn, self.last_pos, BATCH)
            except DB_ERRORS as exc:
                reads.failed(exc)
            else:
                if epoch == self.epoch:
                    reads.saw(top)
                    return events
                log.error("the read replica is another database (epoch %r, the primary's %r)",
                          epoch, self.epoch)
                reads.failed("not a copy of the primary")
        async with self._pool.acquire(first=True) as conn:
            return await fetch_after(conn, self.last_pos, BATCH)

    def _stamp(self) -> float:
        """When the first notification of what is about to be read arrived (or now)."""
        stamp = self._woken_at or asyncio.get_running_loop().time()
        self._woken_at = 0.0
        return stamp

    async def _read_all(self, stamp: float) -> None:
        while True:
            events = await self._fetch()
            if not events:
                return
            self._deliver(events, stamp)
            if len(events) < BATCH:
                return

    def _deliver(self, events: list[Event], stamp: float) -> None:
        """Hands a batch read after `last_pos` to the hub, the recent events and watchers."""
        # Positions are gap-free when numbered; a hole (at the start or inside the batch)
        # means events were pruned before we read them (a reader behind the retention):
        # subscribers may have missed changes, so they must resync from a snapshot.
        if events[0].pos != self.last_pos + 1 or (
                events[-1].pos - events[0].pos + 1 != len(events)):
            log.error("event log gap after %d (read %d events from %d to %d)", self.last_pos,
                      len(events), events[0].pos, events[-1].pos)
            if self._on_gap:
                self._on_gap()
        self.last_pos = events[-1].pos
        if self.reads is not None:
            self.reads.announce(self.last_pos)
        self.recent.extend(events)  # starts its history anew after the hole, if any
        metrics.EVENTS_READ.inc(len(events))
        self._on_events(events, self.epoch, stamp)
        for watcher in self.watchers:
            watcher()

    async def _pruner(self) -> None:
        keep = timedelta(seconds=self._settings.event_retention_seconds)
        interval = min(PRUNE_INTERVAL, max(1.0, self._settings.event_retention_seconds / 10))
        while True:
            await asyncio.sleep(interval)
            try:
                async with self._pool.acquire() as conn:
                    pruned = await conn.fetchval("SELECT rt_prune_events($1::interval)", keep)
                if pruned:
                    log.info("pruned %d events older than %s", pruned, keep)
            except DB_ERRORS as exc:
                log.warning("pruner: %s: %s", type(exc).__name__, exc)
