"""The LISTEN connection, lent to the event drains between notifications.

A drain on it waits for no pooled connection: under a saturating booking load every pooled
one is busy with bookings, and each drain (every subscriber's update) would queue for one.
One user at a time (asyncpg runs one operation per connection): a drain that finds it taken,
or the connection down, takes a pooled connection instead, ahead of queued work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import asyncpg

from realtime.db.interface import ConnectionPool
from realtime.db.stats import Queries

# Waits are counted in steps of the loop's own time (see on_time), stretched at most this many
# times by the loop's lateness.
LAG_STEP = 0.05
LAG_ALLOWANCE = 5.0


async def on_time(done: Callable[[], bool], within: float,
                  fut: asyncio.Future[object] | None = None) -> bool:
    """Whether `done()` came true within `within` seconds of the loop's own time (`fut`, when
    given, wakes the wait as soon as it ends).

    A loop busy with fan-out on a CPU-starved machine runs its callbacks late: an answer the
    database gave in a millisecond is read seconds later (measured: with 0.7 s loop iterations
    a `SELECT 1` took over 4 s). Judged by the wall clock, that is a dead connection, and the
    process would close every socket (handoff.py) onto processes as loaded. So each step counts
    as at most LAG_STEP however late the loop woke from it; the wait still ends after
    LAG_ALLOWANCE x `within` of wall time, so a dead connection is given up on a lagging loop too.
    """
    loop = asyncio.get_running_loop()
    last = loop.time()
    give_up = last + within * LAG_ALLOWANCE
    while not done():
        if within <= 0 or last >= give_up:
            return False
        step = min(LAG_STEP, within)
        if fut is None:
            await asyncio.sleep(step)
        else:
            await asyncio.wait({fut}, timeout=step)
        now = loop.time()
        within -= min(now - last, step)
        last = now
    return True


class ListenConnection:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self.conn: asyncpg.Connection | None = None
        self._busy = False
        self._since = 0.0  # loop time the call in flight started
        self._proved = 0.0  # loop time of the last call that succeeded on it

    async def heartbeat(self, interval: float, within: float) -> None:
        """`SELECT 1` answered `within` seconds, unless a call succeeded on it in the last
        `interval` (proof enough that it lives); raises TimeoutError when not, or when a drain
        in flight on it does not end within as long (it waits for no other sequencer there: it
        is stuck, or the database is). Seconds of the loop's own time (`on_time`)."""
        conn = self.conn
        now = asyncio.get_running_loop().time()
        if conn is None or now - self._proved < interval:
            return
        if self._busy:
            if not await on_time(lambda: not self._busy, within):
                raise TimeoutError(f"a drain on the LISTEN connection took over {within:g} s")
            return
        self._busy = True
        query = asyncio.ensure_future(conn.fetchval("SELECT 1"))
        try:
            if not await on_time(query.done, within, query):
                raise TimeoutError(f"the LISTEN connection did not answer within {within:g} s")
            query.result()
        finally:
            query.cancel()  # no-op once answered
            self._busy = False

    @contextlib.asynccontextmanager
    async def lend(self) -> AsyncIterator[asyncpg.Connection]:
        """The LISTEN connection when it is up and idle, else a pooled one (first in line)."""
        conn = self.conn
        if conn is None or conn.is_closed() or self._busy:
            async with self._pool.acquire(first=True) as pooled:
                yield pooled
            return
        Queries.loans += 1
        self._busy, self._since = True, asyncio.get_running_loop().time()
        try:
            yield conn
            self._proved = asyncio.get_running_loop().time()
        except BaseException:
            # Failed, timed out or cancelled: the connection is in doubt. Dropping it makes the
            # connection task reconnect (and the reader read what was committed meanwhile).
            conn.terminate()
            raise
        finally:
            self._busy = False
