"""The LISTEN connection, lent to the event drains between notifications.

A drain on it waits for no pooled connection: under a saturating booking load every pooled
one is busy with bookings, and each drain (every subscriber's update) would queue for one.
One user at a time (asyncpg runs one operation per connection): a drain that finds it taken,
or the connection down, takes a pooled connection instead, ahead of queued work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from realtime.db.interface import ConnectionPool
from realtime.db.stats import Queries


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
        has been in flight on it for longer (it waits for no other sequencer there: it is
        stuck, or the database is)."""
        conn = self.conn
        now = asyncio.get_running_loop().time()
        if conn is None or now - self._proved < interval:
            return
        if self._busy:
            if now - self._since > within:
                raise TimeoutError(f"a drain on the LISTEN connection took over {within:g} s")
            return
        self._busy = True
        try:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), within)
        finally:
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
