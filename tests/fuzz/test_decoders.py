"""Fuzzing the decoders in process: the WebSocket protocol's parser and every HTTP body, fed
arbitrary JSON and bytes, deep nesting, huge numbers and invalid UTF-8, raise only their
documented errors (MessageError with a contract code; 400 INVALID_JSON or 422 naming the
field), never another exception."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from starlette.requests import Request

from realtime import errors
from realtime.channels import protocol
from realtime.http import routes, webhooks
from realtime.http.responses import read_body
from realtime.schema import http
from realtime.schema import webhooks as webhook_schema
from realtime.schema.ws import ClientMessage
from tests.fuzz.strategies import bodies

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Every decoder an HTTP route reads its body with, and the Struct it decodes.
HTTP_BODIES = [
    (routes._CREATE_VENDOR, http.CreateVendor), (routes._CREATE_SERVICE, http.CreateService),
    (routes._CREATE_SLOTS, http.CreateSlots), (routes._PATCH_SLOT, http.PatchSlot),
    (routes._CREATE_BOOKING, http.CreateBooking), (routes._CREATE_HOLD, http.CreateHold),
    (webhooks._CREATE, webhook_schema.CreateWebhook),
]
WS_CODES = {"BAD_MESSAGE", "UNKNOWN_TYPE", "UNKNOWN_CHANNEL", "VALIDATION_ERROR"}


def _fields(struct: type) -> list[str]:
    names = [f.encode_name for f in msgspec.structs.fields(struct)]
    for f in msgspec.structs.fields(struct):  # the fields of nested Structs (slots[])
        for inner in getattr(f.type, "__args__", ()):
            if isinstance(inner, type) and issubclass(inner, msgspec.Struct):
                names += [g.encode_name for g in msgspec.structs.fields(inner)]
    return names


WS_FIELDS = sorted({name for member in ClientMessage.__args__ for name in _fields(member)})
WS_TYPES = sorted(member.__struct_config__.tag for member in ClientMessage.__args__)


def _read(decoder: msgspec.json.Decoder, raw: bytes) -> object:
    """The body as the route reads it (read_body on a real Starlette request)."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    return asyncio.run(read_body(Request(scope, receive), decoder))


def _check_http(decoder: msgspec.json.Decoder, struct: type, raw: bytes) -> None:
    try:
        body = _read(decoder, raw)
    except errors.InvalidJSON:
        return
    except errors.PayloadTooLarge:
        assert len(raw) > 64 * 1024
        return
    except errors.ValidationError as exc:
        field = exc.details.get("field")
        assert isinstance(field, str) and field, exc.to_dict()
        assert exc.message.startswith(field) or field in exc.message, exc.to_dict()
        return
    assert isinstance(body, struct)


@pytest.mark.parametrize(("decoder", "struct"), HTTP_BODIES, ids=lambda v: getattr(v, "__name__", ""))
def test_http_bodies_raise_only_invalid_json_or_a_named_validation_error(decoder, struct):
    """Any body gives the route its Struct, 400 INVALID_JSON, 413, or 422 naming a field."""
    names = _fields(struct)

    @FUZZ
    @given(bodies(names))
    def check(raw: bytes) -> None:
        _check_http(decoder, struct, raw)

    check()


@FUZZ
@given(bodies(WS_FIELDS, ("type", WS_TYPES)))
def test_ws_frames_raise_only_message_errors_naming_the_field(raw: bytes) -> None:
    """Any frame parses into a client message or raises MessageError with a contract code
    naming the field; a text frame (str) as well as bytes."""
    for frame in (raw, raw.decode("utf-8", "replace")):
        try:
            msg = protocol.parse(frame)
        except protocol.MessageError as exc:
            assert exc.error.code in WS_CODES, exc.error.to_dict()
            assert exc.error.details.get("field"), exc.error.to_dict()
            continue
        assert isinstance(msg, ClientMessage.__args__)


@pytest.mark.parametrize("raw", [
    "[" * 100000 + "]" * 100000, '{"type":"book","slot_id":' + "[" * 5000 + "]" * 5000 + "}",
    '{"type":"book","quantity":' + "9" * 5000 + "}", '{"type":"ping","id":' + '{"a":' * 3000 + "1"
    + "}" * 3000 + "}", '{"type":"subscribe","channel":"service:x","x":' + "[" * 900 + "]" * 900
    + "}"], ids=["deep-array", "deep-field", "long-number", "deep-id", "deep-unknown-field"])
def test_the_frames_that_once_crashed_the_parser(raw: str) -> None:
    """Deep nesting and numbers too long for Python's int were a RecursionError or
    ValueError out of the parser (a dead socket): now an error naming the field."""
    with pytest.raises(protocol.MessageError) as caught:
        protocol.parse(raw)
    assert caught.value.error.code in WS_CODES, caught.value.error.to_dict()
    assert caught.value.error.details["field"]
