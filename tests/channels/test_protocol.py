"""Parsing and encoding of the WebSocket protocol, without a server."""

from __future__ import annotations

import orjson
import pytest

from realtime.channels import protocol as p
from realtime.errors import BookingConflict

SERVICE = "0b7c7b0e-8f1c-4d3e-9a53-1b0f6c7f2a11"


def err(raw: str | bytes) -> p.MessageError:
    with pytest.raises(p.MessageError) as info:
        p.parse(raw)
    return info.value


def test_parses_every_client_message() -> None:
    """Each message type of the contract parses into its typed class with its fields."""
    sub = p.parse(orjson.dumps({"type": "subscribe", "id": "1", "channel": f"service:{SERVICE}",
                                "since": "5@abc", "from": "2030-01-01T00:00:00Z"}))
    assert isinstance(sub, p.Subscribe)
    assert sub.channel == p.Channel("service", SERVICE) and sub.since == "5@abc"
    assert sub.from_ is not None and sub.from_.year == 2030 and sub.to is None
    assert p.parse(f'{{"type":"unsubscribe","channel":"vendor:{SERVICE}"}}') == p.Unsubscribe(
        None, p.Channel("vendor", SERVICE))
    book = p.parse('{"type":"book","id":"b","slot_id":"s","quantity":2,"idempotency_key":"k"}')
    assert book == p.Book("b", "s", 2, None, "k")
    assert p.parse('{"type":"hold","slot_id":"s","ttl_seconds":60}') == p.Hold(None, "s", 1, 60)
    assert p.parse('{"type":"cancel","booking_id":"x"}') == p.Cancel(None, "x")
    assert p.parse('{"type":"ping","id":"p"}') == p.Ping("p")
    assert p.parse('{"type":"auth","token":"t"}') == p.Auth(None, "t")


@pytest.mark.parametrize("raw", ["", "nope", "[1,2]", "42", '"s"', "{", '{"type":5}', "{}"])
def test_junk_is_bad_message(raw: str) -> None:
    """Anything that is not a JSON object with a string type is BAD_MESSAGE."""
    assert err(raw).error.code == "BAD_MESSAGE"


def test_unknown_type_keeps_the_id() -> None:
    """An unknown type is UNKNOWN_TYPE and the reply can echo the message id."""
    e = err('{"type":"teleport","id":"abc"}')
    assert e.error.code == "UNKNOWN_TYPE" and e.id == "abc"


@pytest.mark.parametrize("msg_id", [5, True, ["a"], "x" * 65])
def test_id_must_be_a_short_string(msg_id: object) -> None:
    """An id that is not a string of at most 64 characters is BAD_MESSAGE."""
    assert err(orjson.dumps({"type": "ping", "id": msg_id})).error.code == "BAD_MESSAGE"
    assert p.parse(orjson.dumps({"type": "ping", "id": "x" * 64})) == p.Ping("x" * 64)


@pytest.mark.parametrize(
    "channel",
    ["vendor", "vendor:", "vendors:" + SERVICE, "service:123", "room:" + SERVICE, "service:x:y"],
)
def test_bad_channels_are_unknown_channel(channel: str) -> None:
    """A channel that is not vendor:UUID or service:UUID is UNKNOWN_CHANNEL."""
    e = err(orjson.dumps({"type": "subscribe", "id": "i", "channel": channel}))
    assert e.error.code == "UNKNOWN_CHANNEL" and e.id == "i"


def test_channel_ids_are_canonical() -> None:
    """Upper-case UUIDs name the same channel as lower-case ones."""
    assert p.parse_channel(f"service:{SERVICE.upper()}").name == f"service:{SERVICE}"


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "subscribe", "channel": 7},
        {"type": "subscribe", "channel": f"service:{SERVICE}", "since": 5},
        {"type": "subscribe", "channel": f"service:{SERVICE}", "from": "yesterday"},
        {"type": "subscribe", "channel": f"service:{SERVICE}", "to": "2030-01-01T00:00:00"},
        {"type": "book"},
        {"type": "book", "slot_id": 5},
        {"type": "book", "slot_id": "s", "quantity": "2"},
        {"type": "book", "slot_id": "s", "quantity": True},
        {"type": "book", "slot_id": "s", "quantity": 1.5},
        {"type": "hold", "slot_id": "s", "ttl_seconds": "60"},
        {"type": "cancel"},
        {"type": "auth"},
    ],
)
def test_wrong_field_types_are_bad_message(msg: dict[str, object]) -> None:
    """A missing field or a field of the wrong type is BAD_MESSAGE, answered as an error."""
    e = err(orjson.dumps(msg))
    assert e.error.code == "BAD_MESSAGE" and not e.as_result


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "book", "id": "q", "slot_id": "s", "quantity": 0},
        {"type": "hold", "id": "q", "slot_id": "s", "ttl_seconds": 3601},
        {"type": "hold", "id": "q", "slot_id": "s", "quantity": -1},
    ],
)
def test_out_of_range_booking_fields_are_results(msg: dict[str, object]) -> None:
    """Well-typed but out-of-range booking fields are a `result` with VALIDATION_ERROR."""
    e = err(orjson.dumps(msg))
    assert e.error.code == "VALIDATION_ERROR" and e.as_result and e.id == "q"


def test_live_frames_are_valid_json() -> None:
    """Spliced update and conflict frames decode to the contract's fields."""
    slot = '{"id":"s","version":3}'
    cursor = p.quote("12@ab12")
    upd = orjson.loads(p.encode_update("service:x", cursor, "booked", slot))
    assert upd == {"type": "availability:updated", "channel": "service:x", "cursor": "12@ab12",
                   "reason": "booked", "slot": {"id": "s", "version": 3}}
    con = orjson.loads(p.encode_conflict("vendor:y", cursor, 2, slot, '[{"id":"t"}]'))
    assert con == {"type": "conflict:detected", "channel": "vendor:y", "cursor": "12@ab12",
                   "slot": {"id": "s", "version": 3}, "quantity": 2,
                   "alternatives": [{"id": "t"}]}
    assert orjson.loads(p.encode_conflict("vendor:y", cursor, 1, slot, None))["alternatives"] == []


def test_replies_are_valid_json() -> None:
    """Replies carry the id and the contract's shapes."""
    frame = p.encode_subscribed_events("i", "service:x", "3@e", [p.encode_update(
        "service:x", p.quote("3@e"), "held", "{}")])
    assert orjson.loads(frame)["events"][0]["reason"] == "held"
    assert orjson.loads(frame)["id"] == "i"
    assert orjson.loads(p.encode_subscribed_events(None, "c", "1@e", []))["events"] == []
    snap = orjson.loads(p.encode_subscribed_snapshot(None, "c", "1@e", [{"id": "s"}]))
    assert snap == {"type": "subscribed", "channel": "c", "cursor": "1@e",
                    "snapshot": {"slots": [{"id": "s"}]}}
    conflict = BookingConflict(slot={"id": "s"}, alternatives=[])
    res = orjson.loads(p.encode_result_error("r", conflict))
    assert res == {"type": "result", "id": "r", "ok": False,
                   "error": {"code": "BOOKING_CONFLICT", "message": conflict.message,
                             "slot": {"id": "s"}, "alternatives": []}}
    assert orjson.loads(p.encode_pong("p")) == {"type": "pong", "id": "p"}
    assert orjson.loads(p.encode_error(conflict)) == {"type": "error",
                                                      "error": conflict.to_dict()}
