"""Who is asking and what they may do: the one entry point every door calls.

HTTP routes, WebSocket messages (and any later door) turn their credentials into a `Caller`
here, and ask the caller the same questions: may it administer, which customer do new rows
belong to, whose rows may it touch, in which scope are its idempotency keys. Booking
operations are counted here too, under the same labels whichever door they came in by.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from realtime import errors, metrics
from realtime.auth import Principal, TokenVerifier, bearer
from realtime.settings import Settings

T = TypeVar("T")


ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Acting:
    """What a caller's booking operation runs as."""

    customer_id: str | None  # the customer new holds and bookings belong to
    owner: str | None  # existing holds and bookings must belong to this customer; None: any
    idempotency_scope: str  # Idempotency-Keys are unique per scope
    # Who the audit trail names for the change (docs/operations.md, "The audit trail"), and
    # the request that made it; None: the service makes one.
    actor: str = "system"
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified caller; with auth off, the open caller who may do anything."""

    sub: str | None = None
    admin: bool = False
    expires_at: float | None = None
    open: bool = False  # auth is off: customers are named by the request itself

    @classmethod
    def of(cls, principal: Principal) -> Caller:
        return cls(principal.sub, principal.admin, principal.expires_at)

    def require_admin(self) -> None:
        if not (self.open or self.admin):
            raise errors.Forbidden()

    def acting(self, claimed_customer_id: str | None = None,
               request_id: str | None = None) -> Acting:
        """With auth on, the token's subject is the customer and only an admin may touch
        others' rows; with auth off, the request names its customer and nothing is checked.
        The actor is the token's subject (a customer's or an admin's); with auth off, the
        customer the request names, else "anonymous"."""
        if self.open:
            return Acting(claimed_customer_id, None, claimed_customer_id or "",
                          claimed_customer_id or ANONYMOUS, request_id)
        owner = None if self.admin else self.sub
        return Acting(self.sub, owner, owner or self.sub or "", self.sub or ANONYMOUS,
                      request_id)

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or time.time())


OPEN = Caller(open=True)


class Access:
    """The server's access policy, from its settings."""

    def __init__(self, settings: Settings, tokens: TokenVerifier | None = None) -> None:
        self.settings = settings
        self.enabled = settings.auth_enabled
        self.tokens = tokens or TokenVerifier(settings)

    def ready(self) -> tuple[str | None, str | None]:
        """(why not ready, why degraded), for /readyz: the identity provider's keys."""
        keys = self.tokens.keys
        return keys.ready() if keys is not None else (None, None)

    async def verify(self, token: str) -> Caller:
        """A caller from a token; Unauthorized with a reason a client can act on."""
        return Caller.of(await self.tokens.verify(token))

    async def http_caller(self, authorization: str | None) -> Caller:
        """The caller of an HTTP request that needs one (401 without a valid token)."""
        if not self.enabled:
            return OPEN
        token = bearer(authorization)
        if token is None:
            raise errors.Unauthorized()
        return await self.verify(token)

    async def socket_caller(self, token: str | None) -> Caller | None:
        """The caller of a socket from its `?token=`: None when it has none (reading needs
        none); Unauthorized when the token is bad."""
        if not self.enabled:
            return OPEN
        return await self.verify(token) if token else None

    async def renewed(self, current: Caller | None, token: str) -> Caller:
        """A long-lived socket's fresh token: same subject, or Unauthorized."""
        if not self.enabled:
            return OPEN
        caller = await self.verify(token)
        if current is not None and current.sub != caller.sub:
            raise errors.Unauthorized("the new token is for another subject")
        return caller

    def booking_caller(self, caller: Caller | None) -> Caller:
        """A socket's caller for a booking message: it needs a live token."""
        if caller is None or caller.expired():
            raise errors.Unauthorized("booking needs a valid token: connect with ?token= or send auth")
        return caller

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """No Origin (not a browser) passes; a browser page's must be the server's own (its
        widget page: always allowed) or one that REALTIME_ALLOWED_ORIGINS lists."""
        if origin is None:
            return True
        if host and urlsplit(origin).netloc.lower() == host.lower():
            return True
        allowed = self.settings.allowed_origins
        return "*" in allowed or origin.rstrip("/") in allowed


@functools.cache
def _counter(operation: str, outcome: str) -> Any:
    # labels() takes a lock and builds a key per call; operations and outcomes are a small set
    return metrics.BOOKINGS.labels(operation, outcome)


def outcome_label(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    if isinstance(error, errors.BookingConflict):
        return "conflict"
    if isinstance(error, errors.RealtimeError):
        return error.code.lower()
    return "internal_error"


async def counted(operation: str, op: Awaitable[T]) -> T:
    """Run a booking operation (book, hold, release, cancel, set_capacity) and count its
    outcome in `realtime_bookings_total`, the same way for every door."""
    try:
        result = await op
    except Exception as exc:
        _counter(operation, outcome_label(exc)).inc()
        raise
    _counter(operation, "ok").inc()
    return result
