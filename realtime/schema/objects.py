"""The objects both doors serve: slot, booking, hold, and the error body.

The server renders slots, bookings and holds in PostgreSQL (rt_slot_json and friends) and
sends that JSON as is; these Structs declare what it looks like, for the documents and for the
tests that decode every response and frame into them. Unknown fields are allowed (a client
ignores what it does not know), so adding one is not a breaking change.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from realtime.schema.types import Count, ServedId, ServedTime, Version

Reason = Literal["booked", "cancelled", "held", "released", "expired", "created", "changed"]


class Slot(msgspec.Struct, kw_only=True):
    """A time window of one service; `available = capacity - booked - held`."""

    id: ServedId
    service_id: ServedId
    vendor_id: ServedId
    starts_at: ServedTime
    ends_at: ServedTime
    capacity: Count
    booked: Count
    held: Count
    available: Count
    version: Version


class Booking(msgspec.Struct, kw_only=True):
    """Confirmed units of a slot for a customer."""

    id: ServedId
    slot_id: ServedId
    customer_id: str | None
    quantity: Version
    status: Literal["confirmed", "cancelled"]
    created_at: ServedTime


class Hold(msgspec.Struct, kw_only=True):
    """Units of a slot set aside for one customer until `expires_at`."""

    id: ServedId
    slot_id: ServedId
    quantity: Version
    expires_at: ServedTime


class ErrorDetail(msgspec.Struct, kw_only=True):
    """`code` is stable (see docs/api.md); `message` is for people; the rest depends on it."""

    code: str
    message: str
    field: str | UnsetType = UNSET  # the input field a VALIDATION_ERROR (or BAD_MESSAGE) is about
    slot: Slot | UnsetType | None = UNSET  # BOOKING_CONFLICT, HOLD_EXPIRED, CAPACITY_BELOW_USAGE
    alternatives: list[Slot] | UnsetType = UNSET  # BOOKING_CONFLICT
    reason: str | UnsetType = UNSET  # BOOKING_CONFLICT: capacity or overlap
    hold_status: str | UnsetType | None = UNSET  # HOLD_EXPIRED
    retry_after: int | UnsetType = UNSET  # RATE_LIMITED, seconds
    outcome: Literal["unknown"] | UnsetType = UNSET  # the request may have reached the database
    request_id: str | UnsetType | None = UNSET  # INTERNAL_ERROR: find it in the server log
    down: dict[str, str] | UnsetType = UNSET  # NOT_READY: what is down, and why


class Error(msgspec.Struct):
    """Every HTTP error response."""

    error: ErrorDetail

