"""The `/ws` endpoint: a thin ASGI adapter between one socket and the hub.

It is a raw ASGI app (Starlette mounts it as is). Per socket: a reader loop (parse,
rate-limit, act, reply) and the socket's frame writer (writer.py, chosen once when it opens),
which writes the bounded outbox synchronously when it can and otherwise from a writer task
that exists only while the socket owes something. Protocol-level pings (dead peers) are
uvicorn's job, configured with `ws_ping_interval` / `ws_ping_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qs

from realtime import logs
from realtime.access import Access, Caller
from realtime.channels import gcwatch, metrics
from realtime.channels.peraddress import AddressCap
from realtime.channels.protocol import (
    MAX_FRAME_BYTES,
    ClientMessage,
    MessageError,
    encode_error,
    encode_result_error,
    parse,
)
from realtime.channels.subscriber import Subscriber
from realtime.channels.writer import FrameWriter, writer_for
from realtime.errors import (
    CLOSE_GOING_AWAY,
    CLOSE_OVERLOAD,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    BadMessage,
    RateLimited,
    TooManySockets,
    Unauthorized,
)
from realtime.settings import Settings
from realtime.shared.ratelimit import TokenBucket


class Host(Protocol):
    """What a connection needs from the channels layer around it (the runtime)."""

    settings: Settings
    access: Access
    closing: bool
    sockets: AddressCap

    def opened(self, conn: Connection) -> None: ...

    def closed(self, conn: Connection) -> None: ...

    async def handle(self, conn: Connection, msg: ClientMessage) -> None: ...


log = logging.getLogger("realtime.channels.connection")


class _QuietInvalidUtf8(logging.Filter):
    """uvicorn's default WebSocket implementation (websockets-sansio) fails a text frame that
    is not UTF-8 as RFC 6455 says, closing with 1007, but logs it as an error with a traceback.
    Any client can send one: that is a bad client, not a server error, so one info line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, UnicodeDecodeError):
            log.info("a client sent a text frame that is not UTF-8: closed with 1007")
            return False
        return True


logging.getLogger("uvicorn.error").addFilter(_QuietInvalidUtf8())

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

STUCK_WRITE_SECONDS = 2.0
LATENCY_SAMPLE_EVERY = 16


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class Connection:
    __slots__ = (
        "__weakref__",  # gcwatch watches a sample of closed connections go
        "_abort_scheduled",
        "_asked",
        "_bucket",
        "_close_sent",
        "_closed_waiter",
        "_finished",
        "_request_base",
        "_send",
        "_writer",
        "caller",
        "host",
        "scope",
        "sub",
        "writer",
    )
    _counter = 0

    def __init__(self, host: Host, scope: dict[str, Any], send: Send) -> None:
        Connection._counter += 1
        self.host = host
        self.scope = scope
        self._send = send
        # Chosen once: how every frame of this socket is written (direct or through ASGI).
        self.writer: FrameWriter = writer_for(send)
        # A bare future, made only if someone waits, rather than an asyncio.Event: an Event
        # carries a deque (~700 bytes) for its whole life, and there are 10k sockets.
        self._closed_waiter: asyncio.Future[None] | None = None
        self._finished = False
        self._close_sent = False
        self.sub = Subscriber(
            host.settings.ws_send_queue,
            self._wake,
            sampled=Connection._counter % LATENCY_SAMPLE_EVERY == 0,
            outlet=self,
        )
        self.caller: Caller | None = None
        # Exists only while the socket owes something it could not write at once (its buffer
        # is full, or it must close): an idle socket costs no task.
        self._writer: asyncio.Task[None] | None = None
        self._abort_scheduled = False
        # The socket's part of its booking messages' request ids, made on the first one.
        self._request_base: str | None = None
        self._asked = 0
        rate = host.settings.ws_messages_per_second
        # A rate of 0 turns the limit off.
        self._bucket = TokenBucket(rate, max(10.0, 2 * rate)) if rate > 0 else None

    async def wait_closed(self) -> None:
        if self._finished:
            return
        if self._closed_waiter is None:
            self._closed_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closed_waiter)

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self, receive: Receive) -> None:
        """The socket's life: handshake and checks, then one message at a time until it goes.

        Nothing of a message outlives its handling (`_on`): an idle socket's frame holds no
        message, parsed or raw. And at the end its subscriber forgets it (`Subscriber.detach`),
        so that reference counting frees the closed socket at once."""
        # Counted from the upgrade request on, so that sockets still in their handshake count.
        counted = self.host.sockets.take(self.scope, "ws")
        try:
            try:
                if not await self._open(receive, counted):
                    return
            except OSError:
                return  # the peer went away mid-handshake: nothing left to tell it
            self.host.opened(self)
            gcwatch.opened()
            metrics.CONNECTIONS.inc()
            try:
                while await self._on(await receive()):
                    pass
            except OSError:
                pass  # the peer went away mid-close
            finally:
                self._finished = True
                gcwatch.closed(self)
                self.host.closed(self)
                if self._closed_waiter is not None and not self._closed_waiter.done():
                    self._closed_waiter.set_result(None)
                metrics.CONNECTIONS.dec()
                writer = self._writer
                if writer is not None and not writer.done():
                    writer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await writer
        finally:
            # Refused sockets too (over the cap, a foreign origin, a bad token): a flood of
            # them must not leave a flood of cycles for the collector.
            self.sub.detach()
            if counted:
                self.host.sockets.give(self.scope)

    async def _open(self, receive: Receive, counted: bool) -> bool:
        """Accept the socket, then check it: False if it was closed instead. `counted`: its
        address had a place left (`AddressCap.take`)."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return False
        await self._send({"type": "websocket.accept"})
        if self.host.closing:
            await self._close(CLOSE_GOING_AWAY, "server is shutting down")
            return False
        if not counted:
            refused = TooManySockets(self.host.sockets.limit)
            await self._close(refused.close_code, refused.message)
            return False
        if not self._origin_allowed():
            await self._close(CLOSE_POLICY, "origin not allowed")
            return False
        token = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("token")
        try:
            self.caller = await self.host.access.socket_caller(token[0] if token else None)
        except Unauthorized:
            await self._close(CLOSE_POLICY, "bad token")
            return False
        self.writer.tune()
        # The scope lives as long as the socket (uvicorn's protocol and the app's frames hold
        # it); its headers, a list of pairs, are not read again: what `request_id` wants of
        # them is kept now.
        given = _headers(self.scope).get("x-request-id")
        if given and logs.SAFE_REQUEST_ID.match(given):
            self._request_base = given
        self.scope["headers"] = []
        return True

    def _origin_allowed(self) -> bool:
        headers = _headers(self.scope)
        return self.host.access.origin_allowed(headers.get("origin"), headers.get("host"))

    async def _close(self, code: int, reason: str = "") -> None:
        with contextlib.suppress(OSError, RuntimeError):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def _wake(self) -> None:
        sub = self.sub
        if sub.close_code == CLOSE_OVERLOAD and not self._abort_scheduled and not self._finished:
            # Typically its writer is stuck behind a full buffer: give the close frame a few
            # seconds to get out, then drop the connection.
            self._abort_scheduled = True
            asyncio.get_running_loop().call_later(STUCK_WRITE_SECONDS, self._abort_if_stuck)
        if self._finished or self._close_sent or self._writer is not None:
            return  # gone, or a writer is at work and looks at the outbox before it ends
        # A writer that can writes right here, synchronously, as broadcast() would.
        if sub.close_code is None and self.writer.write_now(sub):
            return
        self._writer = asyncio.create_task(self._write_loop())

    def _abort_if_stuck(self) -> None:
        if self._finished:
            return
        # Asked to close seconds ago and still open: the peer does not read, and a close frame
        # queues behind the same full buffer. Drop the TCP connection.
        self.abort()

    def take_direct(self) -> tuple[int, bytes] | None:
        """(fd, bytes) of the outbox, taken, if it may be written to the socket from a thread.

        Only when nothing else is in flight for this socket (no writer task, not closing), and
        only if its writer allows it at all (the direct writer, never on TLS).
        """
        if (
            self._writer is not None
            or self._finished
            or self._close_sent
            or self.sub.close_code is not None
        ):
            return None
        return self.writer.take_bulk(self.sub)

    def write_rest(self, data: bytes) -> None:
        """What the kernel did not take from a bulk write, through the transport."""
        self.writer.write_rest(data)

    def abort(self) -> None:
        self.writer.abort()
        if self._writer is not None:
            self._writer.cancel()

    async def _write_loop(self) -> None:
        sub = self.sub
        writer = self.writer
        try:
            while True:
                if sub.frames:
                    await writer.write_some(sub)
                    continue
                if sub.close_code is not None:
                    self._close_sent = True
                    await self._close(sub.close_code)
                return
        except (OSError, RuntimeError):
            return  # the peer went away; the read loop sees the disconnect
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None

    async def _on(self, message: dict[str, Any]) -> bool:
        """Act on one ASGI message; False once the socket is gone."""
        kind = message["type"]
        if kind == "websocket.disconnect":
            return False
        if kind != "websocket.receive":
            return True
        text = message.get("text")
        if text is None:
            data = message.get("bytes") or b""
            if len(data) > MAX_FRAME_BYTES:
                self.sub.close(CLOSE_TOO_BIG)
                return True
            self.reply_error(MessageError(BadMessage(
                "message: send text frames, one JSON object each", field="message")))
            return True
        if len(text) > MAX_FRAME_BYTES // 4 and len(text.encode()) > MAX_FRAME_BYTES:
            self.sub.close(CLOSE_TOO_BIG)
            return True
        if self.sub.close_code is not None or self.host.closing:
            return True  # closing: act on nothing more
        try:
            msg = parse(text)
        except MessageError as exc:
            self.reply_error(exc)
            return True
        if self._bucket is not None and (wait := self._bucket.take()) > 0:
            self.reply_error(MessageError(RateLimited(wait), msg.reply_id))
            return True
        metrics.MESSAGES_RECEIVED.labels(msg.kind).inc()
        await self.host.handle(self, msg)
        return True

    def request_id(self, msg_id: str | None) -> str:
        """The request id of this socket's next booking message, for the audit trail and the
        log lines: `<socket>.<n>`, or `<socket>.<n>:<message id>` when the message has an id.
        `<socket>` is the upgrade request's X-Request-Id when it is a plain token (as HTTP
        keeps it), else one made here; n counts the socket's booking messages from 1, so
        two messages never share an id even when a client reuses its message ids."""
        base = self._request_base
        if base is None:  # the upgrade request named none (`_open` kept it if it did)
            base = self._request_base = logs.new_request_id()
        self._asked += 1
        return f"{base}.{self._asked}" if msg_id is None else f"{base}.{self._asked}:{msg_id}"

    def reply_error(self, exc: MessageError) -> None:
        metrics.ERRORS_SENT.labels(exc.error.code).inc()
        if exc.as_result:
            self.sub.send(encode_result_error(exc.id, exc.error))
        else:
            self.sub.send(encode_error(exc.error, exc.id))
