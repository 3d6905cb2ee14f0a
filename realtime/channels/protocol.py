"""The WebSocket protocol of `/ws`: parsing client frames, encoding server frames.

Client messages are declared in realtime/schema/ws.py and decoded straight into those Structs;
what cannot be decoded becomes a `MessageError` with the contract's code and a message naming
the field. Server frames are text frames of one JSON object each, so encoders return `str`: the
fan-out builds a frame once per channel and hands the very same string to every subscriber.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import orjson

from realtime.errors import (
    BadMessage,
    RealtimeError,
    UnknownType,
    ValidationError,
)
from realtime.schema import decode
from realtime.schema.channels import Channel, parse_channel
from realtime.schema.types import MAX_MESSAGE_ID
from realtime.schema.ws import (
    BOOKING_TYPES,
    Auth,
    Book,
    Cancel,
    ClientMessage,
    HoldRequest,
    Ping,
    Subscribe,
    Unsubscribe,
)

__all__ = [
    "MAX_FRAME_BYTES", "Auth", "Book", "Cancel", "Channel", "ClientMessage",
    "HoldRequest", "MessageError", "Ping", "Subscribe", "Unsubscribe", "parse", "parse_channel",
]

MAX_FRAME_BYTES = 64 * 1024
_DECODER = decode.decoder(ClientMessage)


class MessageError(Exception):
    """A client message the server cannot act on.

    `as_result` is set for a booking message whose fields are well-typed but out of their
    limits: the contract answers those with `result` (ok false, as HTTP would say 422), not
    `error`.
    """

    def __init__(self, error: RealtimeError, id: str | None = None, as_result: bool = False):
        super().__init__(error.message)
        self.error = error
        self.id = id
        self.as_result = as_result


def parse(raw: str | bytes) -> ClientMessage:
    """Parse one client frame; raise `MessageError` with the contract's code on anything else."""
    try:
        return _DECODER.decode(raw)
    except msgspec.ValidationError:
        pass  # the slow path below words it
    except msgspec.DecodeError:
        raise MessageError(BadMessage("message: not valid JSON", field="message")) from None
    except RecursionError:
        raise MessageError(BadMessage(f"message: {decode.UNREADABLE}", field="message")) from None
    except RealtimeError as exc:  # a Struct's own check: the channel, from before to
        raise _rejected(exc, _document(raw)) from None
    try:
        return decode.decode(_DECODER, raw, "message")
    except decode.Invalid as exc:
        raise _invalid(exc.problem, exc.document) from None
    except msgspec.DecodeError:  # refused by type before the malformed part was read
        raise MessageError(BadMessage("message: not valid JSON", field="message")) from None
    except RealtimeError as exc:
        raise _rejected(exc, _document(raw)) from None


def _document(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # read once by msgspec, which nests deeper than json
        return None


def _id_of(document: Any) -> str | None:
    """The message's id when it is a usable one, so that the error reply can echo it."""
    msg_id = document.get("id") if isinstance(document, dict) else None
    return msg_id if isinstance(msg_id, str) and len(msg_id) <= MAX_MESSAGE_ID else None


def _invalid(problem: decode.Problem, document: Any) -> MessageError:
    msg_id = _id_of(document)
    if isinstance(document, dict) and "id" in document and msg_id is None:
        # An unusable id is reported first: the reply cannot carry it.
        return MessageError(BadMessage(
            f"id: must be a string of at most {MAX_MESSAGE_ID} characters", field="id"))
    if problem.field == "message":
        return MessageError(BadMessage("message: must be a JSON object with a string type",
                                       field="message"))
    if problem.unknown_tag:
        name = str(document.get("type"))[:64]
        return MessageError(UnknownType(f"type: unknown message type {name!r}", field="type"),
                            msg_id)
    kind = document.get("type") if isinstance(document, dict) else None
    if kind in BOOKING_TYPES and not problem.wrong_type:
        return MessageError(problem.error(), msg_id, as_result=True)
    return MessageError(BadMessage(f"{problem.field}: {problem.message}", field=problem.field),
                        msg_id)


def _rejected(exc: RealtimeError, document: Any) -> MessageError:
    msg_id = _id_of(document)
    if isinstance(exc, ValidationError):
        # Outside booking messages a wrong value is BAD_MESSAGE, still naming its field.
        field = exc.details.get("field", "message")
        kind = document.get("type") if isinstance(document, dict) else None
        if kind in BOOKING_TYPES:
            return MessageError(exc, msg_id, as_result=True)
        return MessageError(BadMessage(exc.message, field=field), msg_id)
    return MessageError(exc, msg_id)


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
