"""Reads on a streaming replica (`DATABASE_READ_URL`) that never go back in time.

A hot standby replays the primary's WAL in commit order, so each of its snapshots is a state
the primary went through: `rt_sequencer.last_pos` read in the same statement says exactly which
log position a read stands at, as on the primary. What a replica adds is lag: it may stand
*behind* positions this process has already sent (the hub's position, a client's cursor).
So every read here names the position it needs (`at_least`), and (docs/scaling.md,
"Read replicas"):

- a read the replica answers at or past `at_least` is served by the replica;
- one that finds the replica behind waits for the replica to replay that position (woken by
  the event reader, which polls the replica while it lags), for at most `WAIT` seconds, then
  goes to the primary;
- a position beyond anything the primary has announced (a forged cursor, a cursor from a
  database since restored) is not waited for: the primary answers it;
- a row the replica does not have (a vendor created a moment ago) is asked of the primary;
- while the replica is unusable (unreachable, or it left a position the primary announced
  unreplayed for more than `MAX_LAG` seconds) everything goes to the primary, and a probe every
  `RETRY` seconds brings the replica back once it has replayed what the process has read.

The positions: `known` is the highest position this process knows is numbered (NOTIFY
rt_events payloads, batches it read, its own sequencer calls): the primary has it.
`replayed` is the highest `last_pos` a read of the replica returned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from realtime.db.connect import create_pool, process_name
from realtime.db.errors import UNAVAILABLE
from realtime.db.interface import ConnectionPool
from realtime.errors import NotFound
from realtime.eventlog import metrics
from realtime.settings import Settings

log = logging.getLogger("realtime.eventlog.replica")
R = TypeVar("R")

WAIT = 1.0  # seconds a read waits for the replica to replay the position it needs
MAX_LAG = 2.0  # seconds an announced position may stay unreplayed before reads leave the replica
RETRY = 1.0  # seconds between probes of a replica that reads left
CONNECT_TIMEOUT = 3.0  # a replica that does not accept a connection within this is unavailable
STATEMENT_TIMEOUT = 10.0  # nor one that does not answer a statement within this
CATCH_UP_TRIES = 10  # reads of a probe, 20 ms apart, waiting for the replica to catch up
_STATE = "SELECT epoch, last_pos FROM rt_sequencer WHERE id = 1"

# What says the replica itself is gone (not a statement of ours it refused): leave it.
DOWN: tuple[type[BaseException], ...] = tuple(
    e for e in UNAVAILABLE if e is not asyncpg.exceptions.QueryCanceledError)


def read_pool_size(pool_size: int) -> int:
    """Connections per process on the replica: half the primary's (the replica serves reads
    that mostly share a statement per channel; the reader takes one), at least 2."""
    return max(2, pool_size // 2)


class Behind(Exception):
    """Raised by a read whose copy of the database has not replayed the position it needs."""


class ReadReplica:
    """Where the log's reads go, and the replica's progress as this process has seen it."""

    def __init__(self, dsn: str, size: int, implementation: str,
                 primary: ConnectionPool) -> None:
        self.dsn = dsn
        self.size = size
        self.implementation = implementation
        self.primary = primary
        self.pool: ConnectionPool | None = None
        self.epoch = ""
        self.usable = False
        self.known = 0
        self.replayed = 0
        # Positions announced while the replica was usable and not yet replayed, with the
        # monotonic time each became known: the oldest one's age is the replica's lag.
        self._unreplayed: deque[tuple[int, float]] = deque()
        # Set (and replaced) whenever `replayed` or `usable` changes: waiting reads wake on it.
        self._changed = asyncio.Event()
        self._left = asyncio.Event()  # set while unusable: the probe runs
        self._target: Callable[[], int] = lambda: self.known
        self._task: asyncio.Task[None] | None = None
        self._foreign = False
        metrics.REPLICA_LAG.set_function(self.lag)

    @classmethod
    def from_settings(cls, settings: Settings, primary: ConnectionPool) -> ReadReplica | None:
        if not settings.database_read_url:
            return None
        return cls(settings.database_read_url, read_pool_size(settings.pool_size),
                   settings.pool_implementation, primary)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, epoch: str, target: Callable[[], int]) -> None:
        """Connect and check that the replica is a copy of the primary (`epoch`): RuntimeError
        if it is another database. Unreachable, it is left to the probe and the primary serves.
        `target()` is the position the process has read: the replica comes back (after being
        left) once it has replayed that."""
        self.epoch = epoch
        self._target = target
        try:
            row = await asyncio.wait_for(self._state(), CONNECT_TIMEOUT + STATEMENT_TIMEOUT)
        except (*DOWN, asyncpg.PostgresError) as exc:
            log.warning("read replica unreachable at start (%s: %s): reads go to the primary "
                        "until it answers", type(exc).__name__, exc)
            self._leave()
        else:
            if row["epoch"] != epoch:
                await self.close()
                raise RuntimeError(
                    f"DATABASE_READ_URL is not a copy of DATABASE_URL: its event log's epoch "
                    f"is {row['epoch']!r}, the primary's {epoch!r}")
            self.saw(row["last_pos"])
            self._use()
        self._task = asyncio.create_task(self._probe_forever(), name="realtime-replica-probe")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()
        self.usable = False
        self._unreplayed.clear()
        metrics.REPLICA_USABLE.set(0)

    # --- progress -------------------------------------------------------------------------

    def announce(self, pos: int) -> None:
        """The primary has numbered everything up to `pos`."""
        if pos <= self.known:
            return
        self.known = pos
        if self.usable and pos > self.replayed:
            self._unreplayed.append((pos, time.monotonic()))

    def saw(self, pos: int) -> None:
        """A read of the replica stood at `pos` (its `rt_sequencer.last_pos`)."""
        if pos <= self.replayed:
            return
        self.replayed = pos
        while self._unreplayed and self._unreplayed[0][0] <= pos:
            self._unreplayed.popleft()
        self._wake()

    def behind(self) -> bool:
        """Whether reads use the replica and it has not replayed everything known: the event
        reader then polls it, and each poll that finds more wakes the reads waiting for it."""
        return self.usable and self.replayed < self.known

    def lag(self) -> float:
        """Seconds since the oldest announced position the replica has not replayed became
        known (0 when it has replayed them all, or is not in use)."""
        if not self._unreplayed:
            return 0.0
        return max(0.0, time.monotonic() - self._unreplayed[0][1])

    def watch_lag(self) -> None:
        """Leave a replica that lags more than MAX_LAG (called by the reader after each read)."""
        if self.usable and self.lag() > MAX_LAG:
            log.warning("read replica lags: position %d, announced %.1f s ago, is not replayed "
                        "(it stands at %d): reads go to the primary until it catches up",
                        self._unreplayed[0][0], self.lag(), self.replayed)
            self._leave()

    def failed(self, exc: BaseException | str) -> None:
        """The replica could not serve a read: leave it until a probe finds it back."""
        if self.usable:
            reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
            log.warning("read replica unavailable (%s): reads go to the primary", reason)
        self._leave()

    def source(self) -> ConnectionPool | None:
        """The replica's pool while reads use it, else None (read the primary)."""
        return self.pool if self.usable else None

    # --- reads ----------------------------------------------------------------------------

    async def read(self, run: Callable[[ConnectionPool, int], Awaitable[R]],
                   at_least: int) -> R:
        """`run(pool, at_least)` on the replica, or on the primary (`at_least` 0) as the module
        says. `run` raises Behind when its copy has not replayed `at_least`, and NotFound when
        a row is missing (the primary is then asked: the replica may not have it yet)."""
        reason = "unavailable"
        pool = self.source()
        if pool is not None and at_least > self.known:
            reason = "ahead"
        elif pool is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT
            while True:
                seen = self.replayed
                try:
                    result = await run(pool, at_least)
                except Behind:
                    # Until the replica (as the reader sees it) has replayed `at_least`; if it
                    # already had (a connection to a copy further behind), until it advances.
                    if await self._advance(max(at_least - 1, seen), deadline):
                        continue
                    reason = "behind" if self.usable else "unavailable"
                except NotFound:
                    reason = "absent"
                except DOWN as exc:
                    self.failed(exc)
                except asyncpg.PostgresError as exc:
                    # Refused there but maybe not on the primary (a query cancelled by a recovery
                    # conflict): this read only goes to the primary.
                    log.info("read replica refused a read (%s): asking the primary", exc)
                    reason = "error"
                else:
                    metrics.REPLICA_READS.inc()
                    return result
                break
        metrics.REPLICA_FALLBACKS.labels(reason).inc()
        return await run(self.primary, 0)

    async def _advance(self, past: int, deadline: float) -> bool:
        """Until `replayed > past` (True), or the deadline or the replica being left (False)."""
        loop = asyncio.get_running_loop()
        while self.replayed <= past:
            left = deadline - loop.time()
            if not self.usable or left <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return False
        return self.usable

    # --- internals ------------------------------------------------------------------------

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _use(self) -> None:
        self.usable = True
        self._left.clear()
        self._unreplayed.clear()
        if self.known > self.replayed:
            self._unreplayed.append((self.known, time.monotonic()))
        metrics.REPLICA_USABLE.set(1)
        self._wake()

    def _leave(self) -> None:
        self.usable = False
        self._unreplayed.clear()
        self._left.set()
        metrics.REPLICA_USABLE.set(0)
        self._wake()

    async def _state(self) -> asyncpg.Record:
        if self.pool is None:
            # A standby holds the locks of the transactions it is replaying (DDL, a vacuum
            # truncating a table) until it replays their commit: with replay slow or paused, a
            # read would wait for them. lock_timeout bounds that like any other wait for replay
            # (LockNotAvailable: that read goes to the primary).
            self.pool = await create_pool(
                self.dsn, self.size, self.implementation,
                application_name=process_name("realtime-read"),
                command_timeout=STATEMENT_TIMEOUT, connect_timeout=CONNECT_TIMEOUT,
                server_settings={"lock_timeout": f"{int(WAIT * 1000)}ms"})
        row = await self.pool.fetchrow(_STATE)
        if row is None:
            raise RuntimeError("the read replica's rt_sequencer is empty")
        return row

    async def _probe_forever(self) -> None:
        while True:
            await self._left.wait()
            await asyncio.sleep(RETRY)
            try:
                await asyncio.wait_for(self._probe(), CONNECT_TIMEOUT + STATEMENT_TIMEOUT)
            except (*DOWN, asyncpg.PostgresError, RuntimeError) as exc:
                log.debug("read replica probe: %s: %s", type(exc).__name__, exc)

    async def _probe(self) -> None:
        """Back on the replica once it has replayed what the process has read."""
        for _ in range(CATCH_UP_TRIES):
            row = await self._state()
            if row["epoch"] != self.epoch:
                if not self._foreign:  # said once, not at every probe
                    log.error("read replica is not a copy of the primary (epoch %r, expected "
                              "%r): reads stay on the primary", row["epoch"], self.epoch)
                self._foreign = True
                return
            self.saw(row["last_pos"])
            if self.replayed >= self._target():
                log.info("read replica back: it stands at %d; reads go to it again",
                            self.replayed)
                self._use()
                return
            await asyncio.sleep(0.02)
