"""A lean connection pool: what every request pays for between the handler and asyncpg.

asyncpg's own pool costs about 50 µs of Python per checkout on this project's machines
(acquire through an asyncio.Queue and a proxy object, release through `asyncio.shield`, which
starts a Task and waits a loop turn for it): more than the statement's own client work
(`bench/poolcost.py` measures both). Every booking checks a connection out once, so this pool
keeps only what the server needs:

- at most `size` connections, opened on demand (one at start, so a wrong DSN fails at once);
- waiters served first come, first served; a released connection goes straight to the oldest;
- a connection that comes back in doubt (the borrower failed with anything but an error
  PostgreSQL answered, or left a transaction open) is closed, never reused: a cancelled
  statement, a timeout or a dropped socket cannot leak a half-done session to the next caller.
  A closed connection frees its place; the next checkout opens a new one.

Sessions carry no state here (LISTEN has its own connection, settings are SET LOCAL, advisory
locks are transaction-scoped), so a release runs no reset query.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


class PoolClosed(asyncpg.InterfaceError):
    """The pool was closed; raised to waiters and to new checkouts."""


class Pool:
    def __init__(self, dsn: str, size: int,
                 init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
                 **connect_kwargs: Any) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self.dsn = dsn
        self.size = size
        self._init = init
        self._connect_kwargs = connect_kwargs
        self._idle: deque[asyncpg.Connection] = deque()
        # A waiter gets a connection, or None: "a place is free, open one yourself".
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._open = 0  # connections open or being opened, idle or in use
        self._closed = False

    async def start(self) -> Pool:
        conn = await self._connect()
        self._give(conn)
        return self

    # -- checkout ---------------------------------------------------------------------------

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await self._checkout()
        try:
            yield conn
        except asyncpg.PostgresError:
            # PostgreSQL answered: the protocol is in step, the connection is fine unless a
            # transaction is still open (the borrower's own `transaction()` rolls back first).
            self._checkin(conn, sound=not conn.is_in_transaction())
            raise
        except BaseException:
            self._checkin(conn, sound=False)
            raise
        self._checkin(conn, sound=not conn.is_in_transaction())

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args, column=column)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            return await conn.fetch(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return await conn.execute(query, *args)

    # -- state ------------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def close(self) -> None:
        """Closes idle connections now (5 s each at most); one in use when it comes back."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed("the pool is closed"))
        idle, self._idle = list(self._idle), deque()
        self._open -= len(idle)
        for conn in idle:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                conn.terminate()

    def terminate(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.terminate()
        self._open -= len(self._idle)
        self._idle.clear()

    # -- internals --------------------------------------------------------------------------

    async def _checkout(self) -> asyncpg.Connection:
        while True:
            if self._closed:
                raise PoolClosed("the pool is closed")
            while self._idle:
                conn = self._idle.pop()  # the most recently used: its caches are warm
                if not conn.is_closed():
                    return conn
                self._open -= 1
            if self._open < self.size:
                return await self._connect()
            waiter: asyncio.Future[asyncpg.Connection | None] = (
                asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
            try:
                conn_or_none = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    handed = waiter.result()  # handed over just as it was cancelled
                    if handed is not None:
                        self._give(handed)
                    else:
                        self._free_place()
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
            if conn_or_none is None:
                self._open -= 1  # the place handed over; _connect counts it again
                return await self._connect()
            if not conn_or_none.is_closed():
                return conn_or_none
            self._open -= 1

    async def _connect(self) -> asyncpg.Connection:
        self._open += 1
        try:
            conn = await asyncpg.connect(self.dsn, **self._connect_kwargs)
            try:
                if self._init is not None:
                    await self._init(conn)
            except BaseException:
                conn.terminate()
                raise
        except BaseException:
            self._open -= 1
            self._wake_for_place()
            raise
        return conn

    def _checkin(self, conn: asyncpg.Connection, sound: bool) -> None:
        if not sound or conn.is_closed() or self._closed:
            conn.terminate()
            self._open -= 1
            self._wake_for_place()
            return
        self._give(conn)

    def _give(self, conn: asyncpg.Connection) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _free_place(self) -> None:
        self._open -= 1
        self._wake_for_place()

    def _wake_for_place(self) -> None:
        """A place came free: the oldest waiter opens a connection in it."""
        if self._open >= self.size:
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._open += 1  # reserved for that waiter
                waiter.set_result(None)
                return
