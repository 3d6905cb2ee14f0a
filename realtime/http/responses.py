"""JSON in and out: the response class, the error body, and the bounded request body."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from realtime import errors
from realtime.http.validation import body_object

MAX_BODY = 64 * 1024


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: errors.RealtimeError) -> JSONResponse:
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status, headers=exc.headers())


async def read_json(request: Request) -> dict[str, Any]:
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
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise errors.InvalidJSON() from None
    return body_object(parsed)
