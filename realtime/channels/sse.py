"""`GET /sse`: the WebSocket stream as Server-Sent Events, for readers behind proxies that
break WebSockets and for backends that want the stream over plain HTTP.

`?channel=` (repeatable), `from`/`to` and `?token=` as on `/ws`; `?since=` or the
`Last-Event-ID` header (what a browser's EventSource resends by itself when it reconnects)
resumes every channel from that cursor. The answer is `text/event-stream`: one `subscribed`
event per channel (the same JSON as the WebSocket's reply), then every `availability:updated`
and `conflict:detected` of those channels as `event: <type>`, `id: <cursor>`,
`data: <the same JSON as on the WebSocket>`, and a `: ping` comment every `PING_SECONDS`.

Update ids are their cursors and arrive in log order, so the last one a reader received is a
position up to which it has every event of its channels: resuming from it is exact. The
`subscribed` events carry no id: their cursors are per channel, and one of them can be ahead
of what another channel has delivered yet.

A stream is a subscriber of the hub like a socket, with the same bounded outbox: a slow reader
is coalesced, then its stream ends (it reconnects and resumes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson
from msgspec import UNSET

from realtime.access import Access
from realtime.channels import metrics
from realtime.channels.session import Session
from realtime.channels.subscriber import Subscriber
from realtime.channels.writer import FrameWriter, Sent, transport_of
from realtime.errors import (
    CLOSE_GOING_AWAY,
    Forbidden,
    MethodNotAllowed,
    NotReady,
    RealtimeError,
    ValidationError,
)
from realtime.schema import decode, http
from realtime.schema.channels import Channel, parse_channel
from realtime.settings import Settings

log = logging.getLogger("realtime.channels.sse")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

PING_SECONDS = 15.0
STUCK_WRITE_SECONDS = 2.0
HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"),
           (b"cache-control", b"no-cache, no-transform"),
           # Proxies that buffer responses (nginx) would hold the events back.
           (b"x-accel-buffering", b"no")]
PING = b": ping\n\n"
_STREAMED = (b"availability:updated", b"conflict:detected")

_CACHE_SIZE = 256
# id(frame) -> (frame, event): the frames of one dispatch are the same objects for every
# subscriber, so each is turned into an event once (see writer.framed for the same idea).
_events: dict[int, tuple[bytes, bytes]] = {}


def event_for(frame: bytes) -> bytes:
    """The SSE event of a WebSocket frame; b"" for frames SSE does not carry (presence,
    replies)."""
    entry = _events.get(id(frame))
    if entry is not None and entry[0] is frame:
        return entry[1]
    msg = orjson.loads(frame)
    kind = str(msg.get("type", "")).encode()
    if kind == b"subscribed":
        data = b"event: subscribed\ndata: " + frame + b"\n\n"
    elif kind in _STREAMED:
        data = (b"event: " + kind + b"\nid: " + str(msg["cursor"]).encode() + b"\ndata: "
                + frame + b"\n\n")
    else:
        data = b""
    if len(_events) >= _CACHE_SIZE:
        _events.clear()
    _events[id(frame)] = (frame, data)
    return data


class Host(Protocol):
    settings: Settings
    access: Access
    session: Session
    closing: bool

    def opened(self, conn: Any) -> None: ...

    def closed(self, conn: Any) -> None: ...


async def serve(host: Host, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The ASGI app of `GET /sse`: an error as JSON (the same body as the HTTP API's) before
    the stream starts, or the stream."""
    try:
        channels, query = _request(host, scope)
        stream = SseStream(host, scope, send)
        await stream.start(channels, query)
    except RealtimeError as exc:
        await _answer_error(send, exc)
        return
    await stream.run(receive)


def _request(host: Host, scope: dict[str, Any]) -> tuple[list[Channel], http.StreamQuery]:
    if scope.get("method") not in ("GET", "HEAD"):
        raise MethodNotAllowed("GET")
    headers = {k.decode("latin-1").lower(): v.decode("latin-1")
               for k, v in scope.get("headers", [])}
    if host.closing:
        raise NotReady("the server is shutting down: connect again")
    if not host.access.origin_allowed(headers.get("origin"), headers.get("host")):
        raise Forbidden("origin not allowed")
    params: dict[str, Any] = {}
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                 keep_blank_values=True):
        if name == "channel":
            params.setdefault("channel", []).append(value)
        else:
            params[name] = value
    last = headers.get("last-event-id")
    if last:
        params["since"] = last  # what an EventSource resends when it reconnects
    try:
        query = decode.convert(params, http.StreamQuery, "query")
    except decode.Invalid as exc:
        raise exc.problem.error() from None
    channels = {c.name: c for c in (parse_channel(name) for name in query.channel)}
    limit = host.settings.ws_max_subscriptions
    if len(channels) > limit:
        raise ValidationError("channel", f"at most {limit} channels per stream")
    return list(channels.values()), query


async def _answer_error(send: Send, exc: RealtimeError) -> None:
    body = orjson.dumps({"error": exc.to_dict()})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers().items()]
    with contextlib.suppress(OSError, RuntimeError):
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class SseStream:
    """One reader's stream (the hub's Outlet: it never takes bulk writes)."""

    def __init__(self, host: Host, scope: dict[str, Any], send: Send) -> None:
        self.host = host
        self.scope = scope
        self._send = send
        self._wakeup = asyncio.Event()
        self._done = asyncio.Event()
        self.sub = Subscriber(host.settings.ws_send_queue, self._wakeup.set, outlet=self)
        # The same bounds as a socket's (writer.py): past them, the outbox coalesces and ends.
        self._tuning = FrameWriter(transport_of(send))

    # -- what the runtime asks of every stream ------------------------------------------

    def take_direct(self) -> tuple[int, bytes] | None:
        return None

    def write_rest(self, data: bytes) -> None:
        raise RuntimeError("an SSE stream takes no bulk writes")

    async def wait_closed(self) -> None:
        await self._done.wait()

    def abort(self) -> None:
        self._tuning.abort()  # drop the connection, when the server's transport is known
        self.sub.close(self.sub.close_code or CLOSE_GOING_AWAY)

    # -- the stream ----------------------------------------------------------------------

    async def start(self, channels: list[Channel], query: http.StreamQuery) -> None:
        """Check the token and join every channel; raises RealtimeError before anything is
        sent (and leaves no subscription behind)."""
        host = self.host
        await host.access.socket_caller(None if query.token is UNSET else query.token)
        since = None if query.since is UNSET else query.since
        from_ = None if query.from_ is UNSET else query.from_
        to = None if query.to is UNSET else query.to
        try:
            for channel in channels:
                await host.session.join(self.sub, channel, since, from_, to)
        except BaseException:
            host.session.hub.drop(self.sub)
            raise

    async def run(self, receive: Receive) -> None:
        """Stream until the reader goes, the server drains or the reader falls too far
        behind (then the stream ends; the reader reconnects and resumes)."""
        host = self.host
        try:
            await self._send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        except (OSError, RuntimeError):
            host.session.hub.drop(self.sub)
            return
        self._tuning.tune()
        host.opened(self)
        metrics.CONNECTIONS.inc()
        disconnected = asyncio.ensure_future(_disconnect(receive))
        try:
            await self._stream(disconnected)
        except (OSError, RuntimeError):
            pass  # the reader went away mid-write
        finally:
            disconnected.cancel()
            host.session.hub.drop(self.sub)
            host.closed(self)
            metrics.CONNECTIONS.dec()
            self._done.set()

    async def _stream(self, disconnected: asyncio.Future[None]) -> None:
        sub = self.sub
        while not disconnected.done():
            if not sub.frames and sub.close_code is None:
                self._wakeup.clear()
                waiter: asyncio.Future[Any] = asyncio.ensure_future(self._wakeup.wait())
                done, _ = await asyncio.wait({waiter, disconnected}, timeout=PING_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if disconnected in done:
                    return
                if not done and not await self._write(PING, disconnected):
                    return
                continue
            batch = sub.take()
            data = b"".join([event_for(frame) for frame in batch])
            Sent.sse += len(batch)
            if data and not await self._write(data, disconnected):
                return
            if sub.close_code is not None and not sub.frames:
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
                return

    async def _write(self, data: bytes, disconnected: asyncio.Future[None]) -> bool:
        """One chunk; False when the stream is over. A reader that stops reading blocks the
        write (the server's flow control): its outbox coalesces, then closes, and a write
        still stuck `STUCK_WRITE_SECONDS` after that drops the connection."""
        write: asyncio.Future[Any] = asyncio.ensure_future(self._send(
            {"type": "http.response.body", "body": data, "more_body": True}))
        while True:
            timeout = STUCK_WRITE_SECONDS if self.sub.close_code is not None else 1.0
            done, _ = await asyncio.wait({write, disconnected}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if write in done:
                write.result()
                return True
            if disconnected in done or self.sub.close_code is not None:
                write.cancel()
                self.abort()
                return False


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
