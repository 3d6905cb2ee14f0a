"""JSON in and out: the response class, the error body, and bounded, typed request bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from realtime import errors
from realtime.schema import decode

MAX_BODY = 64 * 1024
T = TypeVar("T")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: errors.RealtimeError) -> JSONResponse:
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status, headers=exc.headers())


async def read_bytes(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY:
        raise errors.PayloadTooLarge()
    # ASGI messages read directly, as Request.stream() would (without an async generator
    # per request: a booking's body is one message).
    body = b""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            raise errors.PayloadTooLarge()
        if not message.get("more_body", False):
            break
    return body


async def read_body(request: Request, decoder: msgspec.json.Decoder[T]) -> T:
    """The request body decoded into its Struct: 400 if it is not JSON, 422 naming the field
    if it is not what the Struct declares."""
    raw = await read_bytes(request)
    try:
        return decode.decode(decoder, raw, "body")
    except msgspec.DecodeError:
        raise errors.InvalidJSON() from None
    except decode.Invalid as exc:
        raise exc.problem.error() from None


def read_query(params: Mapping[str, str], type_: type[T]) -> T:
    """Query parameters decoded into their Struct; 422 naming the parameter."""
    try:
        return decode.convert(params, type_, "query")
    except decode.Invalid as exc:
        raise exc.problem.error() from None
