"""The WebSocket protocol of `/ws`: typed messages, strict parsing, encoding with orjson.

Everything a client can send is parsed here into one of the message classes below, or rejected
with the contract's error code; everything the server sends is encoded here. Frames are text
frames of one JSON object each, so encoders return `str`: the fan-out builds a frame once per
channel and hands the very same string to every subscriber.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from realtime.errors import (
    BadMessage,
    RealtimeError,
    UnknownType,
    ValidationError,
)
from realtime.eventlog.channels import Channel, parse_channel

MAX_ID_LENGTH = 64
MAX_FRAME_BYTES = 64 * 1024


class MessageError(Exception):
    """A client message the server cannot act on.

    `as_result` is set for a booking message whose fields are well-formed JSON but out of range:
    the contract answers those with `result` (ok false, as HTTP would say 422), not `error`.
    """

    def __init__(self, error: RealtimeError, id: str | None = None, as_result: bool = False):
        super().__init__(error.message)
        self.error = error
        self.id = id
        self.as_result = as_result


def _channel(value: object) -> Channel:
    if not isinstance(value, str):
        raise BadMessage("channel: must be a string")
    return parse_channel(value)


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: str | None
    channel: Channel
    since: str | None = None
    from_: datetime | None = None
    to: datetime | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: str | None
    channel: Channel


@dataclass(frozen=True, slots=True)
class Book:
    id: str | None
    slot_id: str
    quantity: int | None = None  # None: the hold's quantity when confirming one, else 1
    hold_id: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    id: str | None
    slot_id: str
    quantity: int = 1
    ttl_seconds: int = 300


@dataclass(frozen=True, slots=True)
class Cancel:
    id: str | None
    booking_id: str


@dataclass(frozen=True, slots=True)
class Ping:
    id: str | None


@dataclass(frozen=True, slots=True)
class Auth:
    id: str | None
    token: str


ClientMessage = Subscribe | Unsubscribe | Book | Hold | Cancel | Ping | Auth
BOOKING_MESSAGES = (Book, Hold, Cancel)


def _str(obj: dict[str, Any], name: str, *, required: bool = False, max_len: int = 1024) -> Any:
    value = obj.get(name)
    if value is None:
        if required:
            raise BadMessage(f"{name}: required")
        return None
    if not isinstance(value, str):
        raise BadMessage(f"{name}: must be a string")
    if not value and required:
        raise BadMessage(f"{name}: must not be empty")
    if len(value) > max_len:
        raise BadMessage(f"{name}: longer than {max_len} characters")
    return value


def _int(obj: dict[str, Any], name: str, default: int) -> int:
    value = obj.get(name)
    if value is None:
        return default
    # bool is an int subclass in Python; `true` is not a quantity.
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadMessage(f"{name}: must be an integer")
    return value


def _time(obj: dict[str, Any], name: str) -> datetime | None:
    raw = _str(obj, name, max_len=64)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise BadMessage(f"{name}: not an RFC 3339 time") from None
    if value.tzinfo is None:
        raise BadMessage(f"{name}: needs a time zone (for example Z)")
    return value


def _range(msg_id: str | None, name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise MessageError(
            ValidationError(name, f"must be between {low} and {high}"), msg_id, as_result=True
        )


def parse(raw: str | bytes) -> ClientMessage:
    """Parse one client frame; raise `MessageError` with the contract's code on anything else."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MessageError(BadMessage("not valid JSON")) from None
    if not isinstance(obj, dict):
        raise MessageError(BadMessage("a message is a JSON object"))
    msg_id = obj.get("id")
    if msg_id is not None and (not isinstance(msg_id, str) or len(msg_id) > MAX_ID_LENGTH):
        raise MessageError(BadMessage(f"id: a string of at most {MAX_ID_LENGTH} characters"))
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise MessageError(BadMessage("type: required, a string"), msg_id)
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise MessageError(UnknownType(f"unknown message type {kind[:64]!r}"), msg_id)
    try:
        return builder(msg_id, obj)
    except RealtimeError as exc:
        raise MessageError(exc, msg_id) from None


def _subscribe(msg_id: str | None, obj: dict[str, Any]) -> Subscribe:
    channel = _channel(obj.get("channel"))
    since = _str(obj, "since", max_len=200)
    return Subscribe(msg_id, channel, since, _time(obj, "from"), _time(obj, "to"))


def _unsubscribe(msg_id: str | None, obj: dict[str, Any]) -> Unsubscribe:
    return Unsubscribe(msg_id, _channel(obj.get("channel")))


def _book(msg_id: str | None, obj: dict[str, Any]) -> Book:
    msg = Book(
        msg_id,
        _str(obj, "slot_id", required=True, max_len=64),
        None if obj.get("quantity") is None else _int(obj, "quantity", 1),
        _str(obj, "hold_id", max_len=64),
        _str(obj, "idempotency_key", max_len=255),
    )
    if msg.quantity is not None:
        _range(msg_id, "quantity", msg.quantity, 1, 1_000_000)
    return msg


def _hold(msg_id: str | None, obj: dict[str, Any]) -> Hold:
    msg = Hold(
        msg_id,
        _str(obj, "slot_id", required=True, max_len=64),
        _int(obj, "quantity", 1),
        _int(obj, "ttl_seconds", 300),
    )
    _range(msg_id, "quantity", msg.quantity, 1, 1_000_000)
    _range(msg_id, "ttl_seconds", msg.ttl_seconds, 1, 3600)
    return msg


def _cancel(msg_id: str | None, obj: dict[str, Any]) -> Cancel:
    return Cancel(msg_id, _str(obj, "booking_id", required=True, max_len=64))


def _ping(msg_id: str | None, obj: dict[str, Any]) -> Ping:
    return Ping(msg_id)


def _auth(msg_id: str | None, obj: dict[str, Any]) -> Auth:
    return Auth(msg_id, _str(obj, "token", required=True, max_len=8192))


_BUILDERS: dict[str, Callable[[str | None, dict[str, Any]], ClientMessage]] = {
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
    "book": _book,
    "hold": _hold,
    "cancel": _cancel,
    "ping": _ping,
    "auth": _auth,
}


# --- server to client -------------------------------------------------------------------------


def _dumps(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj).decode()


def _with_id(msg_id: str | None, obj: dict[str, Any]) -> dict[str, Any]:
    if msg_id is not None:
        obj["id"] = msg_id
    return obj


def encode_error(error: RealtimeError, msg_id: str | None = None) -> str:
    return _dumps(_with_id(msg_id, {"type": "error", "error": error.to_dict()}))


def encode_result(msg_id: str | None, body: dict[str, Any]) -> str:
    return _dumps({"type": "result", "id": msg_id, "ok": True, **body})


def encode_result_error(msg_id: str | None, error: RealtimeError) -> str:
    return _dumps({"type": "result", "id": msg_id, "ok": False, "error": error.to_dict()})


def encode_pong(msg_id: str | None) -> str:
    return _dumps({"type": "pong", "id": msg_id})


def encode_unsubscribed(msg_id: str | None, channel: str) -> str:
    return _dumps(_with_id(msg_id, {"type": "unsubscribed", "channel": channel}))


def encode_presence(channel: str, count: int) -> str:
    return _dumps({"type": "presence", "channel": channel, "count": count})


def encode_subscribed_snapshot(
    msg_id: str | None, channel: str, cursor: str, slots: list[dict[str, Any]]
) -> str:
    return _dumps(
        _with_id(
            msg_id,
            {
                "type": "subscribed",
                "channel": channel,
                "cursor": cursor,
                "snapshot": {"slots": slots},
            },
        )
    )


def encode_subscribed_events(
    msg_id: str | None, channel: str, cursor: str, events: list[str]
) -> str:
    """`events` are frames as `encode_update`/`encode_conflict` made them, spliced in as is."""
    head = _dumps(_with_id(msg_id, {"type": "subscribed", "channel": channel, "cursor": cursor}))
    return head[:-1] + ',"events":[' + ",".join(events) + "]}"


# The hot path: one frame per channel per event, spliced around the slot JSON text that
# PostgreSQL already rendered, so the slot is never parsed or re-encoded in Python.
# Channel names come from `parse_channel` (canonical UUIDs) and reasons from a fixed set, so
# they need no escaping; the cursor embeds the database's epoch, so it is quoted by `quote`.


def quote(text: str) -> str:
    return orjson.dumps(text).decode()


def encode_update(channel: str, cursor_q: str, reason: str, slot_json: str) -> str:
    """`cursor_q` is the cursor already quoted by `quote`."""
    return (
        '{"type":"availability:updated","channel":"' + channel + '","cursor":' + cursor_q
        + ',"reason":"' + reason + '","slot":' + slot_json + "}"
    )


def encode_conflict(
    channel: str, cursor_q: str, quantity: int, slot_json: str, alternatives_json: str | None
) -> str:
    return (
        '{"type":"conflict:detected","channel":"' + channel + '","cursor":' + cursor_q
        + ',"slot":' + slot_json + ',"quantity":' + str(int(quantity))
        + ',"alternatives":' + (alternatives_json or "[]") + "}"
    )
