"""Opening connections: the pool every request uses, with JSON decoded by orjson."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from realtime.db.pool import Pool

# Keepalives let a dead peer be noticed in seconds instead of TCP's minutes.
KEEPALIVES = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2",
              "tcp_keepalives_count": "3"}


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            schema="pg_catalog",
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            format="text",
        )


async def create_pool(dsn: str, size: int = 10, **kwargs: Any) -> Pool:
    """A pool whose json/jsonb columns come back as Python objects (decoded by orjson).

    Raises what asyncpg.connect raises when the first connection cannot be opened.
    """
    return await Pool(
        dsn, size, init=_init_connection, command_timeout=30,
        server_settings={"application_name": "realtime", **KEEPALIVES},
        **kwargs,
    ).start()


def dsn_for_database(dsn: str, database: str) -> str:
    """The same server with another database name (for tests and tooling)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))
