"""PostgreSQL access: pools, retries of transient failures, and SQLSTATE translation.

Errors are translated by SQLSTATE class (asyncpg's exception types), never by message text.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import orjson

from realtime.errors import BookingConflict, DatabaseUnavailable, ValidationError
from realtime.pool import Pool

log = logging.getLogger("realtime.db")
T = TypeVar("T")

RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.InterfaceError,
    # What a pooled connection killed in the middle of an operation can raise on reuse.
    asyncpg.InternalClientError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


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
        # Keepalives let a dead peer be noticed in seconds instead of TCP's minutes.
        server_settings={"application_name": "realtime", "tcp_keepalives_idle": "5",
                         "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3"},
        **kwargs,
    ).start()


async def retrying(op: Callable[[], Awaitable[T]], attempts: int = 8) -> T:
    """Runs `op` (one whole transaction) again on deadlock or serialization failure.

    40P01 and 40001 mean PostgreSQL rolled the whole transaction back, so running it again
    is safe; the jittered backoff keeps the retries of two victims from colliding again.
    """
    for attempt in range(attempts):
        try:
            return await op()
        except RETRYABLE:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))
        except asyncpg.exceptions.ExclusionViolationError as exc:
            # Only a writer that bypassed the functions' overlap check (raw SQL racing a
            # booking) can reach this; the constraint held, so it is a lost race.
            raise BookingConflict("overlaps a confirmed booking or active hold",
                                  slot=None, alternatives=[], reason="overlap") from exc
        except asyncpg.exceptions.CheckViolationError as exc:
            raise ValidationError(exc.constraint_name or "body", "violates a constraint") from exc
        except asyncpg.exceptions.DataError as exc:
            raise ValidationError("body", str(exc).split("\n")[0]) from exc
        except UNAVAILABLE as exc:
            log.warning("database unavailable: %s", exc.__class__.__name__)
            raise DatabaseUnavailable() from exc
    raise AssertionError("unreachable")


def dsn_for_database(dsn: str, database: str) -> str:
    """The same server with another database name (for tests and tooling)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))
