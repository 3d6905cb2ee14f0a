"""Server-Sent Events on the wire: events built from the hub's frames, and their writers.

A stream's response is HTTP/1.1 with a chunked body. `writer_for(send)` picks one writer per
stream once its headers are out, with the `FrameWriter` interface of writer.py:

- `ChunkWriter` writes each event as a chunk (`<hex length>\\r\\n<event>\\r\\n`) straight into
  the transport of uvicorn's httptools protocol, past the ASGI `send` coroutine, and hands
  dispatches to many streams to the same threaded `os.write` bulk writes as the WebSocket
  direct writer. Through ASGI, each dispatch would cost every stream a woken task and a
  coroutine call through four `send` wrappers into the server; here it costs one
  `transport.write` of bytes built once per event. So it is only for plain TCP: on TLS those
  bytes would bypass the encryption.
- `AsgiChunkWriter` sends each batch as one `http.response.body` message: always correct,
  slower. It serves TLS, uvicorn's h11 protocol, HEAD requests and any other server.

The response's start and its end (the zero-length last chunk) always go through ASGI `send`,
so the server's own state (response complete, keep-alive) stays its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from realtime.channels.subscriber import Subscriber
from realtime.channels.wire import JoinedBatches
from realtime.channels.writer import (
    WRITE_CHUNK,
    FrameWriter,
    SendWriter,
    Sent,
    TransportWriter,
    plain_socket,
    report,
    server_protocol,
)

Send = Callable[[dict[str, Any]], Awaitable[None]]

PING = b": ping\n\n"
# Queued like a frame so that a ping takes its turn behind what the stream owes; recognised
# by identity, so no frame of the hub can be mistaken for it.
PING_FRAME = b'{"type":"ping"}'
_STREAMED = (b"availability:updated", b"conflict:detected")

# id(frame) -> (frame, event, chunk). The frames of one dispatch are the same objects for
# every stream, so each is turned into an event once. The frame is kept so that its id cannot
# be reused while cached. A dispatch holds up to 2 frames per event of a listener batch (1,000
# events): the bound is above that, because every stream walks the same frames in the same
# order, and a cache smaller than that walk would miss on every frame of every stream.
_CACHE_SIZE = 4096
_cache: dict[int, tuple[bytes, bytes, bytes]] = {}


def _entry(frame: bytes) -> tuple[bytes, bytes, bytes]:
    entry = _cache.get(id(frame))
    if entry is not None and entry[0] is frame:
        return entry
    event = _event(frame)
    chunk = b"%x\r\n%b\r\n" % (len(event), event) if event else b""
    if len(_cache) >= _CACHE_SIZE:
        # The oldest quarter goes (dicts keep insertion order): the frames being walked now
        # are the newest.
        for key in list(itertools.islice(_cache, _CACHE_SIZE // 4)):
            del _cache[key]
    entry = _cache[id(frame)] = (frame, event, chunk)
    return entry


def _event(frame: bytes) -> bytes:
    if frame is PING_FRAME:
        return PING
    msg = orjson.loads(frame)
    kind = str(msg.get("type", "")).encode()
    if kind == b"subscribed":
        return b"event: subscribed\ndata: " + frame + b"\n\n"
    if kind in _STREAMED:
        return (b"event: " + kind + b"\nid: " + str(msg["cursor"]).encode() + b"\ndata: "
                + frame + b"\n\n")
    return b""  # presence, replies: not carried by SSE


def event_for(frame: bytes) -> bytes:
    """The SSE event of a WebSocket frame; b"" for frames SSE does not carry (presence,
    replies)."""
    return _entry(frame)[1]


def chunk_for(frame: bytes) -> bytes:
    """`event_for(frame)` as one chunk of a chunked HTTP/1.1 body; b"" when there is no
    event (a zero-length chunk would end the body)."""
    return _entry(frame)[2]


_chunks = JoinedBatches(chunk_for)


class AsgiChunkWriter(SendWriter):
    """A stream's events through the ASGI `send` the app was given, a batch per message."""

    __slots__ = ()

    async def write_some(self, sub: Subscriber) -> None:
        batch = sub.take()
        Sent.sse += len(batch)
        data = b"".join([event_for(frame) for frame in batch])
        if data:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})


class ChunkWriter(TransportWriter):
    """Prebuilt chunks written to uvicorn's httptools transport, and to the raw socket from
    threads. Built only by `writer_for`, which has checked the protocol, that the response's
    headers are out with a chunked body, and that the transport is plain TCP."""

    __slots__ = ("_cycle", "_flow")

    def __init__(self, cycle: Any, fd: int) -> None:
        super().__init__(cycle.transport)
        self._cycle = cycle
        self._flow = cycle.flow
        self.fd = fd

    def _state(self) -> int:
        c = self._cycle
        if c.disconnected or c.response_complete or self.transport.is_closing():
            return -1
        return 0 if self._flow.write_paused else 1

    def write_now(self, sub: Subscriber) -> bool:
        # The fan-out's hot path: one call per stream per dispatch, so the state check is
        # inlined rather than a call of its own.
        c = self._cycle
        if c.disconnected or c.response_complete or self.transport.is_closing():
            sub.take()  # gone: nothing will be written, the stream sees the disconnect
            return True
        if self._flow.write_paused:
            return False
        batch = sub.take(WRITE_CHUNK)
        if batch:
            data = _chunks(batch)
            if data:
                self.transport.write(data)
            Sent.sse_direct += len(batch)
        return not sub.frames

    async def _writable(self) -> None:
        await self._flow.drain()

    def take_bulk(self, sub: Subscriber) -> tuple[int, bytes] | None:
        # Only with nothing in the transport's buffer (else order could break) and not paused.
        if self._state() != 1 or self.transport.get_write_buffer_size():
            return None
        batch = sub.take(WRITE_CHUNK)
        if not batch:
            return None
        Sent.sse_bulk += len(batch)
        data = _chunks(batch)
        return (self.fd, data) if data else None


# --- choosing a writer: the one place that knows uvicorn's HTTP internals -------------------
#
# Verified against uvicorn 0.54.0 (uvicorn/protocols/http/httptools_impl.py, httptools 0.9.0;
# the protocol `realtime serve` runs, uvicorn's "auto" choice whenever httptools is installed,
# which uvicorn[standard] does), on uvloop 0.23 and on asyncio's selector loop. What is relied
# on: the ASGI `send` is the bound method of a `RequestResponseCycle` (reached through the
# closures of the middleware that wrap it) with `transport`; `response_started`,
# `response_complete` and `chunked_encoding`, which say that the headers are written and the
# body is chunked (HEAD and responses with a length are not); `disconnected`, set when the
# connection is lost; and `flow`, whose `write_paused` is set while the transport is paused
# (`pause_writing`) and whose `drain()` waits until it resumes. The cycle writes each body
# message as `<hex length>\r\n<body>\r\n` with one `transport.write`, and the end as
# `0\r\n\r\n`; chunks written here are the same bytes, in the same transport, in between.
# Nothing else writes to the connection while a response is in progress (a pipelined request
# waits until it completes). uvicorn's h11 protocol frames the body inside h11's state machine,
# so it gets the ASGI writer. If any of that stops holding, `writer_for` returns the ASGI
# writer: tests/channels/test_sse_direct.py fails loudly then.

_HTTPTOOLS_CYCLE = ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle")
# What the chunk writer depends on, named in messages and in the canary tests.
PACKAGES = ("uvicorn", "httptools")
# The reader went away before its stream started: nothing will be written, nothing to report.
GONE = "the connection is already gone"


def _not_direct(cycle: Any) -> str | None:
    """Why the stream behind this object does not allow chunks past ASGI `send`; None if it
    does."""
    if cycle is None or getattr(cycle, "transport", None) is None:
        return "the server's protocol object was not found behind ASGI send"
    kind = type(cycle)
    if (kind.__module__, kind.__qualname__) != _HTTPTOOLS_CYCLE:
        return f"the HTTP protocol is {kind.__module__}, not uvicorn's httptools one"
    try:
        flow = cycle.flow
        if cycle.disconnected is not False or cycle.response_complete is not False:
            return GONE
        ready = (cycle.response_started is True and cycle.chunked_encoding is True
                 and isinstance(flow.write_paused, bool) and callable(flow.drain))
    except AttributeError:
        return "uvicorn's httptools protocol is not the verified one"
    if not ready:
        return "the response is not a chunked body (a HEAD request)"
    return None


def writer_for(send: Send) -> FrameWriter:
    """The writer of a stream whose ASGI `send` is `send`; chosen once its headers are out."""
    cycle = server_protocol(send)
    reason = _not_direct(cycle)
    if reason is None:
        sock, reason = plain_socket(cycle.transport)
        if sock is not None:
            return ChunkWriter(cycle, sock.fileno())
    if reason is not GONE:
        report(reason, "Server-Sent Events", PACKAGES)
    return AsgiChunkWriter(send, getattr(cycle, "transport", None), reason)
