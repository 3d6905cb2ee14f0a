"""PostgreSQL errors: retries of transient failures, and translation into the project's errors.

Errors are translated by SQLSTATE class (asyncpg's exception types), never by message text.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from realtime.errors import BookingConflict, DatabaseUnavailable, RealtimeError, ValidationError

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
            # Inputs are validated against the schema before they reach the database, so a
            # value the database refuses is the server's bug: logged with the driver's text,
            # answered with our own (500), never with the driver's.
            log.error("the database refused a value: %s (SQLSTATE %s)",
                      str(exc).split("\n")[0], exc.sqlstate)
            raise RealtimeError("the database refused a value the server should have refused "
                                "first; see the server log") from exc
        except UNAVAILABLE as exc:
            log.warning("database unavailable: %s", exc.__class__.__name__)
            raise DatabaseUnavailable() from exc
    raise AssertionError("unreachable")
