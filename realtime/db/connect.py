"""Opening connections: the pool every request uses, with JSON decoded by orjson.

`create_pool` is the one place that picks the pool (`REALTIME_POOL`, `Settings.pool_implementation`):
ours (realtime/db/pool.py) or asyncpg's (realtime/db/asyncpg_pool.py), both opened with the
same connection setup below.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from realtime.db.asyncpg_pool import AsyncpgPool
from realtime.db.interface import ConnectionPool
from realtime.db.pool import Pool
from realtime.settings import POOL_IMPLEMENTATIONS

# Keepalives let a dead peer be noticed in seconds instead of TCP's minutes.
KEEPALIVES = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2",
              "tcp_keepalives_count": "3"}
COMMAND_TIMEOUT = 30


def process_name(role: str) -> str:
    """`role:pid`, a connection's application_name: with several processes (`--workers N`,
    several hosts) pg_stat_activity then tells which process holds which connection."""
    return f"{role}:{os.getpid()}"


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            schema="pg_catalog",
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            format="text",
        )


async def create_pool(dsn: str, size: int = 10, implementation: str = "ours", *,
                      application_name: str | None = None,
                      command_timeout: float = COMMAND_TIMEOUT,
                      connect_timeout: float | None = None,
                      server_settings: dict[str, str] | None = None) -> ConnectionPool:
    """A pool of `implementation` (a `REALTIME_POOL` value) whose json/jsonb columns come back
    as Python objects (decoded by orjson).

    `connect_timeout` bounds each connection attempt (asyncpg's default is 60 s): the read
    replica's pool sets it low, so that a replica that stopped answering is left in seconds.
    `server_settings` adds session settings to the ones every connection gets.
    `application_name` defaults to `realtime:<pid>` (`process_name`).

    Raises ValueError naming REALTIME_POOL for an unknown implementation, and what
    asyncpg.connect raises when the first connection cannot be opened.
    """
    name = application_name or process_name("realtime")
    settings = {"application_name": name, **KEEPALIVES, **(server_settings or {})}
    extra: dict[str, float] = {} if connect_timeout is None else {"timeout": connect_timeout}
    if implementation == "ours":
        return await Pool(dsn, size, init=_init_connection, command_timeout=command_timeout,
                          server_settings=settings, **extra).start()
    if implementation == "asyncpg":
        return await AsyncpgPool.open(dsn, size, init=_init_connection,
                                      command_timeout=command_timeout, server_settings=settings,
                                      **extra)
    raise ValueError(f"REALTIME_POOL must be one of {', '.join(POOL_IMPLEMENTATIONS)}; "
                     f"got {implementation!r}")


def dsn_for_database(dsn: str, database: str) -> str:
    """The same server with another database name (for tests and tooling)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))
