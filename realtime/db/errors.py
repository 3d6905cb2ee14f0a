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

# The longest a request waits for the database, all attempts and queues included: one that
# stops answering without closing its connections (a partition that drops packets) would
# otherwise hold the caller for the command timeout (30 s) or TCP's minutes. The client gets
# its 503 within 5 s, the contract's bound, with room for the rest of the request.
DEADLINE = 4.0

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
# Failures that prove the statement never reached the database: no connection could be made,
# or the server refused it before any statement. Any other failure of a write may have come
# after PostgreSQL committed it (the answer was lost, or it never came).
NOT_SENT: tuple[type[BaseException], ...] = (
    ConnectionRefusedError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def unavailable(exc: BaseException, write: bool) -> DatabaseUnavailable:
    """The 503 for `exc`: for a write that may have reached the database, with
    `outcome: unknown` (a retry with the same Idempotency-Key learns the real outcome)."""
    if write and not isinstance(exc, NOT_SENT):
        return DatabaseUnavailable(
            "the database stopped answering; the change may have been made: retry with the "
            "same Idempotency-Key to learn its outcome", outcome="unknown")
    return DatabaseUnavailable()


async def retrying(op: Callable[[], Awaitable[T]], attempts: int = 8, write: bool = False,
                   deadline: float = DEADLINE) -> T:
    """Runs `op` (one whole transaction) again on deadlock or serialization failure, all
    within `deadline` seconds; DatabaseUnavailable when the database cannot be reached or does
    not answer in time (`write`: the transaction changes something, see `unavailable`).

    40P01 and 40001 mean PostgreSQL rolled the whole transaction back, so running it again
    is safe; the jittered backoff keeps the retries of two victims from colliding again.
    """
    try:
        async with asyncio.timeout(deadline):
            return await _attempts(op, attempts)
    except UNAVAILABLE as exc:
        log.warning("database unavailable: %s", exc.__class__.__name__)
        raise unavailable(exc, write) from exc


async def _attempts(op: Callable[[], Awaitable[T]], attempts: int) -> T:
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
    raise AssertionError("unreachable")
