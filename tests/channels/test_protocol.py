"""Parsing and encoding of the WebSocket protocol, without a server."""

from __future__ import annotations

import msgspec
import orjson
import pytest
from msgspec import UNSET

from realtime.channels import protocol as p
from realtime.errors import BookingConflict, RateLimited
from realtime.schema import ws

SERVICE = "0b7c7b0e-8f1c-4d3e-9a53-1b0f6c7f2a11"
SLOT = "5e11c0de-0000-4000-8000-00000000000a"
SLOT_JSON = orjson.dumps({
    "id": SLOT, "service_id": SERVICE, "vendor_id": "5e11c0de-0000-4000-8000-00000000000b",
    "starts_at": "2030-01-07T09:00:00Z", "ends_at": "2030-01-07T10:00:00.250Z", "capacity": 3,
    "booked": 1, "held": 1, "available": 1, "version": 4}).decode()
SERVER = msgspec.json.Decoder(ws.ServerMessage)


def err(raw: str | bytes) -> p.MessageError:
    with pytest.raises(p.MessageError) as info:
        p.parse(raw)
    return info.value


def test_parses_every_client_message() -> None:
    """Each message type of the contract parses into its typed class with its fields."""
    sub = p.parse(orjson.dumps({"type": "subscribe", "id": "1", "channel": f"service:{SERVICE}",
                                "since": "5@abc", "from": "2030-01-01T01:00:00+01:00"}))
    assert isinstance(sub, p.Subscribe)
    assert sub.target == p.Channel("service", SERVICE) and sub.since == "5@abc"
    assert sub.from_ is not UNSET and sub.from_.isoformat() == "2030-01-01T00:00:00+00:00"
    assert sub.to is UNSET and sub.reply_id == "1"
    unsub = p.parse(f'{{"type":"unsubscribe","channel":"vendor:{SERVICE}"}}')
    assert isinstance(unsub, p.Unsubscribe) and unsub.channel == f"vendor:{SERVICE}"
    assert unsub.reply_id is None
    book = p.parse(f'{{"type":"book","id":"b","slot_id":"{SLOT}","quantity":2,'
                   f'"idempotency_key":"k"}}')
    assert book == p.Book(id="b", slot_id=SLOT, quantity=2, idempotency_key="k")
    hold = p.parse(f'{{"type":"hold","slot_id":"{SLOT}","ttl_seconds":60}}')
    assert hold == p.HoldRequest(slot_id=SLOT, quantity=1, ttl_seconds=60)
    assert p.parse(f'{{"type":"cancel","booking_id":"{SLOT}"}}') == p.Cancel(booking_id=SLOT)
    assert p.parse('{"type":"ping","id":"p"}') == p.Ping(id="p")
    assert p.parse('{"type":"auth","token":"t"}') == p.Auth(token="t")
    assert [m.kind for m in (sub, unsub, book, hold)] == ["subscribe", "unsubscribe", "book", "hold"]


def test_ids_are_canonical_lower_case() -> None:
    """Upper-case ids are the same ids: decoding lower-cases them, so one slot is one key."""
    book = p.parse(f'{{"type":"book","slot_id":"{SLOT.upper()}","hold_id":"{SERVICE.upper()}"}}')
    assert isinstance(book, p.Book) and (book.slot_id, book.hold_id) == (SLOT, SERVICE)
    cancel = p.parse(f'{{"type":"cancel","booking_id":"{SLOT.upper()}"}}')
    assert isinstance(cancel, p.Cancel) and cancel.booking_id == SLOT
    sub = p.parse(f'{{"type":"subscribe","channel":"service:{SERVICE.upper()}"}}')
    assert isinstance(sub, p.Subscribe) and sub.channel == f"service:{SERVICE}"


@pytest.mark.parametrize("raw", ["", "nope", "[1,2]", "42", '"s"', "{", '{"type":5}', "{}",
                                 "[\tv"])
def test_junk_is_bad_message(raw: str) -> None:
    """Anything that is not a JSON object with a string type is BAD_MESSAGE."""
    assert err(raw).error.code == "BAD_MESSAGE"


def test_unknown_type_keeps_the_id() -> None:
    """An unknown type is UNKNOWN_TYPE and the reply can echo the message id."""
    e = err('{"type":"teleport","id":"abc"}')
    assert e.error.code == "UNKNOWN_TYPE" and e.id == "abc"
    assert e.error.to_dict()["field"] == "type"


@pytest.mark.parametrize("msg_id", [5, True, ["a"], "x" * 65, None])
def test_id_must_be_a_short_string(msg_id: object) -> None:
    """An id that is not a string of at most 64 characters (null included) is BAD_MESSAGE
    naming `id`, and is not echoed."""
    e = err(orjson.dumps({"type": "ping", "id": msg_id}))
    assert e.error.code == "BAD_MESSAGE" and e.id is None
    assert e.error.message.startswith("id: ") and e.error.to_dict()["field"] == "id"
    assert p.parse(orjson.dumps({"type": "ping", "id": "x" * 64})) == p.Ping(id="x" * 64)


@pytest.mark.parametrize(
    "channel",
    ["vendor", "vendor:", "vendors:" + SERVICE, "service:123", "room:" + SERVICE, "service:x:y",
     "service:{" + SERVICE + "}", "service:" + SERVICE.replace("-", "")],
)
def test_bad_channels_are_unknown_channel(channel: str) -> None:
    """A channel that is not vendor:UUID or service:UUID is UNKNOWN_CHANNEL."""
    e = err(orjson.dumps({"type": "subscribe", "id": "i", "channel": channel}))
    assert e.error.code == "UNKNOWN_CHANNEL" and e.id == "i"
    assert e.error.message.startswith("channel: ")


def test_channel_ids_are_canonical() -> None:
    """Upper-case UUIDs name the same channel as lower-case ones."""
    assert p.parse_channel(f"service:{SERVICE.upper()}").name == f"service:{SERVICE}"


@pytest.mark.parametrize(
    "msg,field",
    [
        ({"type": "subscribe", "channel": 7}, "channel"),
        ({"type": "subscribe", "channel": f"service:{SERVICE}", "since": 5}, "since"),
        ({"type": "subscribe", "channel": f"service:{SERVICE}", "from": "yesterday"}, "from"),
        ({"type": "subscribe", "channel": f"service:{SERVICE}", "to": "2030-01-01T00:00:00"}, "to"),
        ({"type": "book"}, "slot_id"),
        ({"type": "book", "slot_id": 5}, "slot_id"),
        ({"type": "book", "slot_id": SLOT, "quantity": "2"}, "quantity"),
        ({"type": "book", "slot_id": SLOT, "quantity": True}, "quantity"),
        ({"type": "book", "slot_id": SLOT, "quantity": 1.5}, "quantity"),
        ({"type": "book", "slot_id": SLOT, "quantity": None}, "quantity"),
        ({"type": "hold", "slot_id": SLOT, "ttl_seconds": "60"}, "ttl_seconds"),
        ({"type": "cancel"}, "booking_id"),
        ({"type": "auth"}, "token"),
    ],
)
def test_wrong_field_types_are_bad_message(msg: dict[str, object], field: str) -> None:
    """A missing field or a field of the wrong type is BAD_MESSAGE naming the field."""
    e = err(orjson.dumps({**msg, "id": "m"}))
    assert e.error.code == "BAD_MESSAGE" and not e.as_result and e.id == "m"
    assert e.error.message.startswith(f"{field}: ") and e.error.to_dict()["field"] == field


@pytest.mark.parametrize(
    "msg,field,words",
    [
        ({"type": "book", "slot_id": SLOT, "quantity": 0}, "quantity", "from 1 to 1000000"),
        ({"type": "hold", "slot_id": SLOT, "ttl_seconds": 3601}, "ttl_seconds", "from 1 to 3600"),
        ({"type": "hold", "slot_id": SLOT, "quantity": -1}, "quantity", "from 1 to 1000000"),
        ({"type": "book", "slot_id": "zzz"}, "slot_id", "an id (a UUID)"),
        ({"type": "book", "slot_id": SLOT + "\n"}, "slot_id", "an id (a UUID)"),
        ({"type": "book", "slot_id": SLOT, "hold_id": "zzz"}, "hold_id", "an id (a UUID)"),
        ({"type": "cancel", "booking_id": "zzz"}, "booking_id", "an id (a UUID)"),
        ({"type": "book", "slot_id": SLOT, "idempotency_key": ""}, "idempotency_key",
         "printable ASCII"),
    ],
)
def test_out_of_range_booking_fields_are_results(msg: dict[str, object], field: str,
                                                 words: str) -> None:
    """Well-typed values out of their limits in booking messages are a `result` with
    VALIDATION_ERROR naming the field in the project's words (no driver text)."""
    e = err(orjson.dumps({**msg, "id": "q"}))
    assert e.error.code == "VALIDATION_ERROR" and e.as_result and e.id == "q"
    assert e.error.to_dict()["field"] == field
    assert e.error.message.startswith(f"{field}: must be ") and words in e.error.message
    assert "invalid input" not in e.error.message and "$" not in e.error.message


def test_integral_floats_are_integers() -> None:
    """JSON Schema counts 2.0 as an integer: it is accepted as 2."""
    book = p.parse(f'{{"type":"book","slot_id":"{SLOT}","quantity":2.0}}')
    assert isinstance(book, p.Book) and book.quantity == 2 and type(book.quantity) is int
    hold = p.parse(f'{{"type":"hold","slot_id":"{SLOT}","ttl_seconds":6e1}}')
    assert isinstance(hold, p.HoldRequest) and hold.ttl_seconds == 60


@pytest.mark.parametrize(
    "extra,field,words",
    [
        ({"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, "to", "after from"),
        ({"from": "2030-01-01T00:00:00Z", "to": "2030-01-01T01:00:00+01:00"}, "to", "after from"),
        ({"from": "9999-12-31T23:59:59-01:00"}, "from", "1970-9999 in UTC"),
        ({"to": "1970-01-01T00:30:00+01:00"}, "to", "1970-9999 in UTC"),
    ],
)
def test_subscribe_windows_are_checked(extra: dict[str, str], field: str, words: str) -> None:
    """A subscribe window that is empty or outside 1970-9999 (in UTC) is BAD_MESSAGE naming
    the field, as HTTP answers 422 for the same window."""
    e = err(orjson.dumps({"type": "subscribe", "id": "w", "channel": f"service:{SERVICE}",
                          **extra}))
    assert e.error.code == "BAD_MESSAGE" and e.id == "w" and not e.as_result
    assert e.error.to_dict()["field"] == field and words in e.error.message


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


def test_every_frame_kind_decodes_into_its_declared_struct() -> None:
    """Each encoder's frame, with a slot as PostgreSQL renders it, decodes into the server
    message Struct of its type (the Structs are what /asyncapi.json publishes)."""
    cursor = p.quote("12@ab12")
    update = p.encode_update(f"service:{SERVICE}", cursor, "booked", SLOT_JSON)
    conflict = p.encode_conflict(f"service:{SERVICE}", cursor, 2, SLOT_JSON, f"[{SLOT_JSON}]")
    slot = orjson.loads(SLOT_JSON)
    booking = {"id": SLOT, "slot_id": SLOT, "customer_id": None, "quantity": 1,
               "status": "confirmed", "created_at": "2030-01-01T12:00:00.123Z"}
    frames = {
        ws.AvailabilityUpdated: update,
        ws.ConflictDetected: conflict,
        ws.Subscribed: p.encode_subscribed_events("i", f"service:{SERVICE}", "12@ab12",
                                                  [update, conflict]),
        ws.Presence: p.encode_presence(f"service:{SERVICE}", 3),
        ws.Result: p.encode_result("b", {"booking": booking, "slot": slot}),
        ws.Pong: p.encode_pong(None),
        ws.Unsubscribed: p.encode_unsubscribed("u", f"service:{SERVICE}"),
        ws.ErrorFrame: p.encode_error(RateLimited(2), "r"),
    }
    for struct, frame in frames.items():
        assert type(SERVER.decode(frame)) is struct, frame
    snapshot = SERVER.decode(p.encode_subscribed_snapshot(None, "c", "1@e", [slot]))
    assert isinstance(snapshot, ws.Subscribed) and snapshot.snapshot is not UNSET
    failed = SERVER.decode(p.encode_result_error(
        "r", BookingConflict(slot=slot, alternatives=[slot], reason="capacity")))
    assert isinstance(failed, ws.Result) and failed.ok is False and failed.error is not UNSET
    with pytest.raises(msgspec.ValidationError):  # the Structs do check: a bad slot fails
        SERVER.decode(p.encode_update("c", cursor, "booked", '{"id":"s"}'))
