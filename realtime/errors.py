"""The one exception tree of the project, with stable error codes.

Every error a client can see is a `RealtimeError` subclass carrying a contract code. The HTTP
status and the WebSocket close code of each are decided here and nowhere else.
"""

from __future__ import annotations

from typing import Any

# WebSocket close codes used by the server (contract, "Close codes").
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_OVERLOAD = 1013


class RealtimeError(Exception):
    """Base of every error with a contract code."""

    code = "INTERNAL_ERROR"
    status = 500
    default_message = "internal error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with this error's response."""
        return {}


class ValidationError(RealtimeError):
    code = "VALIDATION_ERROR"
    status = 422
    default_message = "invalid request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)


class InvalidJSON(RealtimeError):
    code = "INVALID_JSON"
    status = 400
    default_message = "request body is not valid JSON"


class PayloadTooLarge(RealtimeError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413
    default_message = "request body is larger than 64 KiB"


class NotFound(RealtimeError):
    code = "NOT_FOUND"
    status = 404
    default_message = "not found"


class VendorNotFound(NotFound):
    code = "VENDOR_NOT_FOUND"
    default_message = "vendor not found"


class ServiceNotFound(NotFound):
    code = "SERVICE_NOT_FOUND"
    default_message = "service not found"


class SlotNotFound(NotFound):
    code = "SLOT_NOT_FOUND"
    default_message = "slot not found"


class BookingNotFound(NotFound):
    code = "BOOKING_NOT_FOUND"
    default_message = "booking not found"


class HoldNotFound(NotFound):
    code = "HOLD_NOT_FOUND"
    default_message = "hold not found"


class WebhookNotFound(NotFound):
    code = "WEBHOOK_NOT_FOUND"
    default_message = "webhook not found"


class BookingConflict(RealtimeError):
    """Not enough available: carries `slot` (its state now) and `alternatives`."""

    code = "BOOKING_CONFLICT"
    status = 409
    default_message = "not enough availability on this slot"


class CapacityBelowUsage(RealtimeError):
    code = "CAPACITY_BELOW_USAGE"
    status = 409
    default_message = "capacity would fall below booked + held units"


class HoldExpired(RealtimeError):
    code = "HOLD_EXPIRED"
    status = 410
    default_message = "the hold is no longer active"


class IdempotencyKeyReused(RealtimeError):
    code = "IDEMPOTENCY_KEY_REUSED"
    status = 422
    default_message = "this Idempotency-Key was used with a different request body"


class Unauthorized(RealtimeError):
    code = "UNAUTHORIZED"
    status = 401
    default_message = "a valid bearer token is required"

    def headers(self) -> dict[str, str]:
        # RFC 6750: a 401 names the scheme the client should use.
        return {"WWW-Authenticate": 'Bearer realm="realtime"'}


class Forbidden(RealtimeError):
    code = "FORBIDDEN"
    status = 403
    default_message = "this route needs an admin token"


class RateLimited(RealtimeError):
    code = "RATE_LIMITED"
    status = 429
    default_message = "too many requests"

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        self.retry_after = max(1, int(retry_after + 0.999))
        super().__init__(message, retry_after=self.retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TooManySockets(RateLimited):
    """Over REALTIME_MAX_SOCKETS_PER_ADDRESS. Not a new wire code: the same RATE_LIMITED (429,
    with Retry-After) as any other limit on `/sse`, and on `/ws` the close code a client
    already answers by reconnecting with backoff (1013) rather than giving up (1008)."""

    close_code = CLOSE_OVERLOAD
    retry_seconds = 5.0  # a socket of the address may close any time; no use asking sooner

    def __init__(self, limit: int) -> None:
        super().__init__(self.retry_seconds,
                         f"too many open sockets from this address (at most {limit})")


class DatabaseUnavailable(RealtimeError):
    code = "DATABASE_UNAVAILABLE"
    status = 503
    default_message = "the database cannot be reached; nothing was changed"


class NotReady(RealtimeError):
    code = "NOT_READY"
    status = 503
    default_message = "not ready"


class MethodNotAllowed(RealtimeError):
    code = "METHOD_NOT_ALLOWED"
    status = 405
    default_message = "method not allowed"

    def __init__(self, allow: str = "", message: str | None = None) -> None:
        self.allow = allow
        super().__init__(message or (f"method not allowed; allowed: {allow}" if allow else None))

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow} if self.allow else {}


# WebSocket-only errors: sent as `error` frames, the socket stays open.
class BadMessage(RealtimeError):
    code = "BAD_MESSAGE"
    status = 400
    default_message = "the message is not valid"


class UnknownType(RealtimeError):
    code = "UNKNOWN_TYPE"
    status = 400
    default_message = "unknown message type"


class UnknownChannel(RealtimeError):
    code = "UNKNOWN_CHANNEL"
    status = 404
    default_message = "unknown channel"


class NotSubscribed(RealtimeError):
    code = "NOT_SUBSCRIBED"
    status = 400
    default_message = "not subscribed to this channel"


class TooManySubscriptions(RealtimeError):
    code = "TOO_MANY_SUBSCRIPTIONS"
    status = 400
    default_message = "too many subscriptions on this connection"
