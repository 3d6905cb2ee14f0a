"""What the server asks of a connection pool, whichever one `REALTIME_POOL` picks.

Two implementations: `realtime.db.pool.Pool` (ours, the default) and
`realtime.db.asyncpg_pool.AsyncpgPool` (asyncpg's own pool behind the same methods).
`realtime.db.connect.create_pool` is the one place that chooses; everything outside
realtime/db/ is typed against `ConnectionPool`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import asyncpg

# How long `close()` waits for statements running and connections lent before cutting them off.
CLOSE_TIMEOUT = 5.0


class PoolClosed(asyncpg.InterfaceError):
    """The pool was closed; raised to queued callers and to new ones.

    An `asyncpg.InterfaceError`, so the code that treats a lost database as unavailable
    (realtime/db/errors.py, the listener) treats a closing pool the same way.
    """


class ConnectionPool(Protocol):
    """One-statement calls, connection loans, closing, and the numbers the gauges read."""

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None: ...

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...

    async def execute(self, query: str, *args: Any) -> str: ...

    def acquire(self, first: bool = False) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """Lends a connection for a transaction or several statements, returned on exit.

        `first` asks to be served before callers already waiting (the event pipeline's short
        loans); an implementation without priorities may serve it in turn.
        """
        ...

    async def close(self) -> None:
        """Refuses new work (`PoolClosed`) and closes every connection within a few seconds."""
        ...

    @property
    def open_connections(self) -> int:
        """Connections open now: idle, lent, or running a statement."""
        ...

    @property
    def idle_connections(self) -> int:
        """Open connections that nobody is using."""
        ...

    @property
    def waiting(self) -> int:
        """Callers waiting for a connection."""
        ...
