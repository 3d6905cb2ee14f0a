"""asyncpg's own pool behind `ConnectionPool`: the conservative fallback (`REALTIME_POOL=asyncpg`).

It is asyncpg's pool as asyncpg ships it: a queue of connections served in turn, a reset
query on every release (`RESET ALL; UNLISTEN *; ...`), connections opened on demand up to the
size (one at start, so a wrong DSN fails at once). It costs more client CPU
per call than ours (docs/architecture.md, "Why our own connection pool"); it is here for the
day ours is suspected of a bug, or an asyncpg release changes what ours relies on.

What this adapter adds, and where it differs from ours:
- `acquire(first=True)` is served in turn: asyncpg's queue has no priorities, so under a
  saturating booking load the event pipeline's loans wait with the bookings.
- `waiting` is counted here (asyncpg does not expose it): callers that asked for a connection
  and have not got one, including those whose new connection is being opened.
- A connection that comes back in doubt (its caller was cancelled or timed out, or its socket
  failed) is terminated, not reset: asyncpg would first cancel the statement on the server and
  wait for that, and a database that stopped answering would hold the caller there (past the
  request's deadline, until the network came back). Ours does the same.
- `close()` refuses new calls with `PoolClosed` at once and gives lent connections
  `CLOSE_TIMEOUT` to come back before terminating them. A caller that was waiting when the
  pool closed gets `PoolClosed` when a connection comes free, and its statement is not run;
  ours fails such callers at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from realtime.db.interface import CLOSE_TIMEOUT, PoolClosed
from realtime.db.stats import Queries

log = logging.getLogger("realtime.db.asyncpg_pool")


class AsyncpgPool:
    """Implements `realtime.db.interface.ConnectionPool` over `asyncpg.create_pool`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._waiting = 0
        self._closed = False

    @classmethod
    async def open(cls, dsn: str, size: int,
                   init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
                   **connect_kwargs: Any) -> AsyncpgPool:
        """Opens one connection now and up to `size` on demand, as ours does."""
        if size < 1:
            raise ValueError("pool size must be at least 1")
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=size, init=init,
                                         **connect_kwargs)
        return cls(pool)

    # -- one statement ----------------------------------------------------------------------

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._statement("fetchval", query, args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._statement("fetchrow", query, args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._statement("fetch", query, args)

    async def execute(self, query: str, *args: Any) -> str:
        return await self._statement("execute", query, args)

    async def _statement(self, method: str, query: str, args: tuple[Any, ...]) -> Any:
        Queries.statements += 1
        conn = await self._checkout()
        try:
            return await getattr(conn, method)(query, *args)
        except BaseException as exc:
            _drop_in_doubt(conn, exc)
            raise
        finally:
            await self._pool.release(conn)

    # -- a loan -----------------------------------------------------------------------------

    @asynccontextmanager
    async def acquire(self, first: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """Lends a connection. `first` is accepted and has no effect (see the module)."""
        Queries.loans += 1
        conn = await self._checkout()
        try:
            yield conn
        except BaseException as exc:
            _drop_in_doubt(conn, exc)
            raise
        finally:
            await self._pool.release(conn)

    # -- state ------------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return int(self._pool.get_size())

    @property
    def idle_connections(self) -> int:
        return int(self._pool.get_idle_size())

    @property
    def waiting(self) -> int:
        return self._waiting

    async def close(self) -> None:
        self._closed = True
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT)
        except TimeoutError:
            # Interrupted, asyncpg's close terminates every connection; say why it had to.
            log.warning("pool: connections still lent after %.0f s were terminated", CLOSE_TIMEOUT)
            self._pool.terminate()

    # -- internals --------------------------------------------------------------------------

    async def _checkout(self) -> Any:
        if self._closed:
            raise PoolClosed("the pool is closed")
        self._waiting += 1
        try:
            conn = await self._pool.acquire()
        except asyncpg.InterfaceError as exc:
            if self._closed:  # asyncpg's "pool is closing"
                raise PoolClosed("the pool is closed") from exc
            raise
        finally:
            self._waiting -= 1
        if self._closed:
            # Handed over while the pool was closing. Released, its reset query would race
            # asyncpg's close of the same connection: terminated, it goes back to the pool as
            # a closed connection, which the close skips.
            conn.terminate()
            raise PoolClosed("the pool is closed")
        return conn


def _drop_in_doubt(conn: Any, exc: BaseException) -> None:
    """Terminates a connection whose statement failed with anything but an error PostgreSQL
    answered: released closed, it goes back to the pool at once (and is replaced on demand)."""
    if not isinstance(exc, asyncpg.PostgresError):
        conn.terminate()
