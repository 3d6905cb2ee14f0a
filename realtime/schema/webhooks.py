"""Webhook endpoints as the admin API takes and shows them, and the events they receive."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from realtime.schema.objects import Booking, Hold, Slot
from realtime.schema.types import Id, ServedId, ServedTime, canonical, python_pattern

MAX_URL = 2048
# http(s), a host name or an IP address (IPv6 in brackets), an optional port, the rest printable.
URL_PATTERN = ("^https?://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\\[[0-9A-Fa-f:.]+\\])"
               "(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
               "|6553[0-5]))?(?:[/?#][\\x21-\\x7e]*)?$")
EventType = Literal["booking.confirmed", "booking.cancelled", "hold.created", "hold.released",
                    "hold.expired", "slot.created", "slot.changed", "booking.conflict"]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
# The host and what follows are checked by realtime.webhooks.targets (and the address when it
# is registered and before every delivery).
Url = Annotated[str, Meta(min_length=1, max_length=MAX_URL,
                          pattern=python_pattern(URL_PATTERN),
                          extra={"expects": "an http or https URL"})]


class CreateWebhook(msgspec.Struct, kw_only=True):
    url: Url
    events: Annotated[list[EventType], Meta(min_length=1, extra={
        "expects": "a non-empty list of: " + ", ".join(EVENT_TYPES)})] | UnsetType = UNSET
    vendor_id: Id | UnsetType = UNSET  # only this vendor's events

    def __post_init__(self) -> None:
        if self.vendor_id is not UNSET:
            self.vendor_id = canonical(self.vendor_id)


class Webhook(msgspec.Struct, kw_only=True):
    id: ServedId
    url: str
    events: list[EventType]
    vendor_id: ServedId | None
    created_at: ServedTime
    status: Literal["active", "disabled"]
    disabled_reason: str | None
    attempts: int  # failed attempts at the event it is stuck on
    next_attempt_at: ServedTime | None
    last_status_code: int | None


class CreatedWebhook(msgspec.Struct, kw_only=True):
    id: ServedId
    url: str
    events: list[EventType]
    vendor_id: ServedId | None
    secret: str  # shown only here
    created_at: ServedTime


class Webhooks(msgspec.Struct, kw_only=True):
    webhooks: list[Webhook]


class DeletedWebhook(msgspec.Struct, kw_only=True):
    id: ServedId


class Delivery(msgspec.Struct, kw_only=True):
    event_id: str
    type: EventType
    status: Literal["delivered", "retrying", "failed"]
    attempts: int
    last_status_code: int | None
    next_attempt_at: ServedTime | None


class Deliveries(msgspec.Struct, kw_only=True):
    deliveries: list[Delivery]


class EventData(msgspec.Struct, kw_only=True, omit_defaults=True):
    slot: Slot
    booking: Booking | UnsetType = UNSET
    hold: Hold | UnsetType = UNSET
    customer_id: str | UnsetType = UNSET
    quantity: int | UnsetType = UNSET


class Event(msgspec.Struct, kw_only=True):
    """The body of one delivery."""

    id: str
    type: EventType
    created_at: ServedTime
    cursor: str
    data: EventData
