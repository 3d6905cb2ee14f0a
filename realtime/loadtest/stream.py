"""What a load-test worker holds of one subscriber, whichever transport carries it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast


class Stream(asyncio.Protocol):
    """One subscriber's connection to one channel: a WebSocket (wsclient.Subscriber) or a
    Server-Sent Events stream (sseclient.SseSubscriber). What the worker uses of either is
    here, so that it holds both alike: the channel, the resume cursor, its delivery state
    and conflict count, whether it subscribed, and how it ends (failed, dropped, closed,
    lost). A subclass sends `request()` on connecting and parses what comes back."""

    def __init__(
        self,
        *,
        channel: str,
        host: str,
        path: str,
        on_message: Callable[[Any, bytes], None],
        on_lost: Callable[[Any, Exception | None], None],
    ) -> None:
        self.channel = channel
        self.host = host
        self.path = path
        self.on_message = on_message
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.closing = False  # set when we close on purpose, so the loss is not reported
        self.cursor: str | None = None
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.delivery: Any = None  # the worker's per-channel state for this connection
        self.last_error: Exception | None = None
        self.conflicts = 0  # conflict:detected messages this connection received

    def request(self) -> bytes:
        """The bytes that open the subscription (an HTTP request)."""
        raise NotImplementedError

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        if self.closing:  # given up on before it connected (a connect timeout)
            self.transport.abort()
            return
        self.transport.write(self.request())

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        exc = exc or self.last_error
        if not self.subscribed.done():
            self.subscribed.set_exception(exc or ConnectionError("connection closed"))
        self.on_lost(self, exc)

    # -- ending ---------------------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(exc)
        self.last_error = exc
        if self.transport is not None:
            self.transport.abort()

    def abort(self) -> None:
        """Drop the TCP connection at once (no closing handshake), like a crashed client."""
        self.closing = True
        self.open = False
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
