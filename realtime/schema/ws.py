"""The WebSocket protocol's messages, both ways, as tagged unions on `type`.

Client messages are decoded straight into these Structs (realtime/channels/protocol.py). The
server's frames are built by the encoders in protocol.py (the fan-out splices slot JSON that
PostgreSQL rendered, never re-encoding it); these Structs declare them, and the tests decode
every kind of frame the server sends into them.

A client message's `id` may be left out, but `null` is not an id. Booking messages
(book, hold, cancel) answer a well-typed value out of its limits with a `result` (ok false,
VALIDATION_ERROR); everything else the server cannot act on gets an `error` frame.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from realtime.errors import ValidationError
from realtime.schema.channels import Channel, parse_channel
from realtime.schema.objects import Booking, ErrorDetail, Hold, Reason, Slot
from realtime.schema.types import (
    ChannelName,
    Count,
    Cursor,
    Id,
    IdempotencyKey,
    MessageId,
    Quantity,
    Time,
    Token,
    TtlSeconds,
    canonical,
)

# -- client to server ---------------------------------------------------------------------------


class ClientBase(msgspec.Struct, tag_field="type", kw_only=True):
    id: MessageId | UnsetType = UNSET  # echoed by the reply

    @property
    def reply_id(self) -> str | None:
        return None if self.id is UNSET else self.id

    @property
    def kind(self) -> str:
        """The message's `type`."""
        return str(self.__struct_config__.tag)


class Subscribe(ClientBase, tag="subscribe", kw_only=True):
    """Subscribe to a channel: a snapshot, or with `since` the events missed since it."""

    channel: ChannelName
    since: Cursor | UnsetType = UNSET
    from_: Time | UnsetType = msgspec.field(default=UNSET, name="from")  # limits the snapshot
    to: Time | UnsetType = UNSET  # after from

    def __post_init__(self) -> None:
        self.channel = parse_channel(self.channel).name
        if self.from_ is not UNSET and self.to is not UNSET and self.to <= self.from_:
            raise ValidationError("to", "must be after from")

    @property
    def target(self) -> Channel:
        return parse_channel(self.channel)


class Unsubscribe(ClientBase, tag="unsubscribe", kw_only=True):
    channel: ChannelName

    def __post_init__(self) -> None:
        self.channel = parse_channel(self.channel).name


class Book(ClientBase, tag="book", kw_only=True):
    """Book units of a slot, or confirm a hold (`quantity` then defaults to the hold's)."""

    slot_id: Id
    quantity: Quantity | UnsetType = UNSET
    hold_id: Id | UnsetType = UNSET
    idempotency_key: IdempotencyKey | UnsetType = UNSET

    def __post_init__(self) -> None:
        self.slot_id = canonical(self.slot_id)
        if self.hold_id is not UNSET:
            self.hold_id = canonical(self.hold_id)


class HoldRequest(ClientBase, tag="hold", kw_only=True):
    """Hold units of a slot for `ttl_seconds`."""

    slot_id: Id
    quantity: Quantity = 1
    ttl_seconds: TtlSeconds = 300

    def __post_init__(self) -> None:
        self.slot_id = canonical(self.slot_id)


class Cancel(ClientBase, tag="cancel", kw_only=True):
    booking_id: Id

    def __post_init__(self) -> None:
        self.booking_id = canonical(self.booking_id)


class Ping(ClientBase, tag="ping", kw_only=True):
    pass


class Auth(ClientBase, tag="auth", kw_only=True):
    """A fresh token for a long-lived socket, before the old one expires."""

    token: Token


ClientMessage = Subscribe | Unsubscribe | Book | HoldRequest | Cancel | Ping | Auth
BOOKING_TYPES = frozenset({"book", "hold", "cancel"})

# -- server to client ---------------------------------------------------------------------------


class ServerBase(msgspec.Struct, tag_field="type", kw_only=True):
    pass


class AvailabilityUpdated(ServerBase, tag="availability:updated", kw_only=True):
    """A slot of the channel changed; `slot` is its state after the change."""

    channel: str
    cursor: str
    reason: Reason
    slot: Slot


class ConflictDetected(ServerBase, tag="conflict:detected", kw_only=True):
    """Someone's attempt on a slot of the channel lost: not enough available."""

    channel: str
    cursor: str
    slot: Slot
    quantity: Quantity
    alternatives: list[Slot]


class Snapshot(msgspec.Struct, kw_only=True):
    slots: list[Slot]


class Subscribed(ServerBase, tag="subscribed", kw_only=True):
    """The reply to subscribe: a `snapshot`, or the `events` missed since `since`."""

    id: str | UnsetType = UNSET
    channel: str
    cursor: str
    snapshot: Snapshot | UnsetType = UNSET
    events: list[AvailabilityUpdated | ConflictDetected] | UnsetType = UNSET


class Unsubscribed(ServerBase, tag="unsubscribed", kw_only=True):
    id: str | UnsetType = UNSET
    channel: str


class Presence(ServerBase, tag="presence", kw_only=True):
    """How many sockets, across all server processes, are subscribed to the channel."""

    channel: str
    count: Count


class Result(ServerBase, tag="result", kw_only=True):
    """The reply to book, hold, cancel and auth: what HTTP would answer, or its error."""

    id: str | None  # null when the message had no id
    ok: bool
    booking: Booking | UnsetType = UNSET
    hold: Hold | UnsetType = UNSET
    slot: Slot | UnsetType = UNSET
    error: ErrorDetail | UnsetType = UNSET


class Pong(ServerBase, tag="pong", kw_only=True):
    id: str | None


class ErrorFrame(ServerBase, tag="error", kw_only=True):
    """A message the server could not act on; nothing changed, the socket stays usable."""

    id: str | UnsetType = UNSET
    error: ErrorDetail


ServerMessage = (AvailabilityUpdated | ConflictDetected | Subscribed | Unsubscribed | Presence
                 | Result | Pong | ErrorFrame)
