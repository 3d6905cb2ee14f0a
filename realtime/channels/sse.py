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

A stream is a subscriber of the hub like a socket, with the same bounded outbox and the same
kind of writer (ssewire.py: chunks straight into uvicorn's transport on plain TCP, through
ASGI `send` otherwise): a slow reader's transport buffer stays bounded, its outbox is
coalesced, then its stream ends (it reconnects and resumes).
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
from realtime.channels.peraddress import AddressCap
from realtime.channels.session import Session
from realtime.channels.ssewire import PING_FRAME, writer_for
from realtime.channels.subscriber import Subscriber
from realtime.channels.writer import FrameWriter, transport_of
from realtime.errors import (
    CLOSE_GOING_AWAY,
    Forbidden,
    MethodNotAllowed,
    NotReady,
    RealtimeError,
    TooManySockets,
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
# Pings replace one another in a backlog: only the newest one matters.
PING_KEY = ("ping",)


class Host(Protocol):
    settings: Settings
    access: Access
    session: Session
    closing: bool
    sockets: AddressCap

    def opened(self, conn: Any) -> None: ...

    def closed(self, conn: Any) -> None: ...


async def serve(host: Host, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The ASGI app of `GET /sse`: an error as JSON (the same body as the HTTP API's) before
    the stream starts, or the stream."""
    try:
        channels, query = _request(host, scope)
    except RealtimeError as exc:
        await _answer_error(send, exc)
        return
    # Counted before the token check and the joins (which wait), as /ws counts its handshake.
    if not host.sockets.take(scope, "sse"):
        await _answer_error(send, TooManySockets(host.sockets.limit))
        return
    try:
        stream = SseStream(host, scope, send)
        try:
            await stream.start(channels, query)
        except RealtimeError as exc:
            # Never opened: cut its cycle with its subscriber (subscriber.py, `detach`).
            stream.sub.detach()
            await _answer_error(send, exc)
            return
        await stream.run(receive)
    finally:
        host.sockets.give(scope)


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
    """One reader's stream: the hub's subscriber and Outlet, written like a socket.

    Its writer (ssewire.py, chosen once the headers are out) writes synchronously when the
    hub flushes a dispatch, or hands the bytes to the runtime's bulk writes; a writer task
    exists only while the stream owes what it could not write at once (or must end)."""

    def __init__(self, host: Host, scope: dict[str, Any], send: Send) -> None:
        self.host = host
        self.scope = scope
        self._send = send
        self._done = asyncio.Event()
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sub = Subscriber(host.settings.ws_send_queue, self._wake, outlet=self)
        # Until the headers are out nothing is written (frames queued while joining wait);
        # meanwhile a writer that only knows the transport, for abort.
        self.writer: FrameWriter = FrameWriter(transport_of(send))
        self._started = False
        self._finished = False
        self._end_sent = False
        self._abort_scheduled = False
        self._task: asyncio.Task[None] | None = None

    # -- what the runtime asks of every stream ------------------------------------------

    def take_direct(self) -> tuple[int, bytes] | None:
        """(fd, bytes) of the outbox, taken, if a thread may write them now: only with no
        writer task at work and the stream open, and only with the direct writer."""
        if (self._task is not None or not self._started or self._finished or self._end_sent
                or self.sub.close_code is not None):
            return None
        return self.writer.take_bulk(self.sub)

    def write_rest(self, data: bytes) -> None:
        self.writer.write_rest(data)

    async def wait_closed(self) -> None:
        await self._done.wait()

    def abort(self) -> None:
        """Drop the connection (when the server's transport is known) and stop writing."""
        self.writer.abort()
        self.sub.close(self.sub.close_code or CLOSE_GOING_AWAY)
        if self._task is not None:
            self._task.cancel()
        if not self._ended.done():
            self._ended.set_result(None)

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
        # Chosen now: direct chunks must follow the headers the server wrote.
        self.writer = writer_for(self._send)
        self.writer.tune()
        self._started = True
        host.opened(self)
        metrics.CONNECTIONS.inc()
        disconnected = asyncio.ensure_future(_disconnect(receive))
        try:
            self._wake()  # what was queued while joining: the `subscribed` events
            while True:
                done, _ = await asyncio.wait({disconnected, self._ended}, timeout=PING_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
                if done:
                    break
                # At least every PING_SECONDS, behind whatever the stream owes.
                self.sub.send(PING_FRAME, PING_KEY)
        finally:
            disconnected.cancel()
            self._finished = True
            task = self._task
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            host.session.hub.drop(self.sub)
            self.sub.detach()
            host.closed(self)
            metrics.CONNECTIONS.dec()
            self._done.set()

    def _wake(self) -> None:
        sub = self.sub
        if not self._started or self._finished or self._end_sent:
            return
        if sub.close_code is not None and not self._abort_scheduled:
            # Its write may be stuck behind a full buffer: give the end a few seconds to get
            # out, then drop the connection.
            self._abort_scheduled = True
            asyncio.get_running_loop().call_later(STUCK_WRITE_SECONDS, self._abort_if_stuck)
        if self._task is not None:
            return  # a writer is at work and looks at the outbox before it ends
        if sub.close_code is None and self.writer.write_now(sub):
            return
        self._task = asyncio.create_task(self._write_loop())

    def _abort_if_stuck(self) -> None:
        if not self._finished:
            self.abort()

    async def _write_loop(self) -> None:
        sub = self.sub
        writer = self.writer
        try:
            while True:
                if sub.frames:
                    await writer.write_some(sub)
                    continue
                if sub.close_code is not None:
                    self._end_sent = True
                    # The last chunk through the server, which then knows the response is over.
                    await self._send({"type": "http.response.body", "body": b"",
                                      "more_body": False})
                    if not self._ended.done():
                        self._ended.set_result(None)
                return
        except (OSError, RuntimeError):
            if not self._ended.done():  # the reader went away mid-write
                self._ended.set_result(None)
        finally:
            if self._task is asyncio.current_task():
                self._task = None


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
