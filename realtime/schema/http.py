"""The HTTP API's messages: request bodies, query parameters and response bodies.

Optional fields may be left out; `null` is not a value for any of them. Unknown fields are
ignored. Cross-field rules (an end after its start) live in `__post_init__`, which raises the
project's ValidationError naming the field.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from realtime.errors import ValidationError
from realtime.schema.objects import Booking, Hold, Slot
from realtime.schema.types import (
    Capacity,
    ChannelName,
    Cursor,
    CustomerId,
    Id,
    Name,
    NewCapacity,
    Quantity,
    ServedId,
    Time,
    Token,
    TtlSeconds,
    canonical,
)

MAX_SLOTS_PER_REQUEST = 1000

# -- request bodies -----------------------------------------------------------------------------


class CreateVendor(msgspec.Struct, kw_only=True):
    name: Name


class CreateService(msgspec.Struct, kw_only=True):
    name: Name
    exclusive: bool = False


class NewSlot(msgspec.Struct, kw_only=True):
    starts_at: Time
    ends_at: Time  # after starts_at
    capacity: Capacity


class CreateSlots(msgspec.Struct, kw_only=True):
    slots: Annotated[list[NewSlot], Meta(min_length=1, max_length=MAX_SLOTS_PER_REQUEST, extra={
        "expects": f"a list of 1 to {MAX_SLOTS_PER_REQUEST} slots"})]

    def __post_init__(self) -> None:
        for i, slot in enumerate(self.slots):
            if slot.ends_at <= slot.starts_at:
                raise ValidationError(f"slots[{i}].ends_at", "must be after starts_at")


class PatchSlot(msgspec.Struct, kw_only=True):
    capacity: NewCapacity


class CreateBooking(msgspec.Struct, kw_only=True):
    slot_id: Id
    quantity: Quantity | UnsetType = UNSET  # 1, or the hold's quantity when confirming one
    hold_id: Id | UnsetType = UNSET  # confirm this hold
    customer_id: CustomerId | UnsetType = UNSET  # with auth off only: the token's sub wins

    def __post_init__(self) -> None:
        self.slot_id = canonical(self.slot_id)
        if self.hold_id is not UNSET:
            self.hold_id = canonical(self.hold_id)


class CreateHold(msgspec.Struct, kw_only=True):
    slot_id: Id
    quantity: Quantity = 1
    ttl_seconds: TtlSeconds = 300
    customer_id: CustomerId | UnsetType = UNSET

    def __post_init__(self) -> None:
        self.slot_id = canonical(self.slot_id)


# -- query parameters ---------------------------------------------------------------------------


class Window(msgspec.Struct, kw_only=True):
    """`?from=&to=`: the slots overlapping [from, to)."""

    from_: Time | UnsetType = msgspec.field(default=UNSET, name="from")
    to: Time | UnsetType = UNSET  # after from

    def __post_init__(self) -> None:
        if self.from_ is not UNSET and self.to is not UNSET and self.to <= self.from_:
            raise ValidationError("to", "must be after from")


class StreamQuery(Window, kw_only=True):
    """`/sse`'s query: the channels (repeat the parameter for several), the window of their
    snapshots, a cursor to resume from, and a token as on /ws."""

    channel: Annotated[list[ChannelName], Meta(min_length=1, extra={
        "expects": "one or more channel names, vendor:ID or service:ID"})]
    since: Cursor | UnsetType = UNSET  # or the Last-Event-ID header
    token: Token | UnsetType = UNSET


# -- response bodies ----------------------------------------------------------------------------


class Vendor(msgspec.Struct, kw_only=True):
    id: ServedId
    name: str


class Service(msgspec.Struct, kw_only=True):
    id: ServedId
    vendor_id: ServedId
    name: str
    exclusive: bool


class VendorWithServices(msgspec.Struct, kw_only=True):
    id: ServedId
    name: str
    services: list[Service]


class Slots(msgspec.Struct, kw_only=True):
    slots: list[Slot]


class Availability(msgspec.Struct, kw_only=True):
    channel: str
    cursor: str  # pass as `since` when subscribing on /ws
    slots: list[Slot]


class BookingWithSlot(msgspec.Struct, kw_only=True):
    booking: Booking
    slot: Slot


class HoldWithSlot(msgspec.Struct, kw_only=True):
    hold: Hold
    slot: Slot


class SlotOnly(msgspec.Struct, kw_only=True):
    slot: Slot


class Demo(msgspec.Struct, kw_only=True):
    vendor_id: ServedId


class Me(msgspec.Struct, kw_only=True):
    """Whether the server checks tokens (booking, holding and cancelling then need one), and
    whose token this request carried: a page learns whether to ask its visitor to sign in."""

    auth: bool
    customer_id: str | None  # the token's sub; null without a token, and always with auth off


class Status(msgspec.Struct, kw_only=True):
    status: str
