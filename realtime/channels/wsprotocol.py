"""uvicorn's websockets Sans-I/O protocol, lighter per idle socket and freed when it closes.

`realtime serve` runs every WebSocket on `SocketProtocol` (uvicorn's `ws=` option). It is
uvicorn's own `WebSocketsSansIOProtocol` (what `ws="auto"` picks) with these changes, none of
them on the path of a frame:

- The queue of ASGI messages for the app is a list and one future made only while the app
  waits (`Inbox`), not an `asyncio.Queue`: a Queue carries three deques and an Event with a
  fourth, about 3 KiB per socket, to hold at most one message (uvicorn pauses reading until
  the app has taken it).
- `writable` is an `asyncio.Event` whose deque of waiters is made only when someone waits
  (`Writable`): about 0.75 KiB per socket that an idle socket never uses.
- The handshake's parsed request and response (two header tables) are dropped once the
  response is written, the request's headers emptied: uvicorn keeps them for the socket's
  whole life and never reads them again.
- When the connection is lost, websockets' parser (a generator that refers to its protocol,
  a reference cycle) is closed. Without that, every closed socket's objects waited for a
  full garbage collection, and the collector's frozen generation (gcwatch.py) kept those
  that were frozen while alive until a thaw: memory followed the reconnect rate. For the same
  reason the HTTP protocol that read the upgrade request is unlinked from its parser.

Verified against uvicorn 0.54.0 with websockets 17.4 (the newest pyproject.toml's bounds
allow); where uvicorn has no Sans-I/O protocol (before 0.35) `realtime serve` falls back to
uvicorn's own (`cli._ws_protocol`). Tested as what `realtime serve` runs
(tests/channels/conftest.py starts the same class), and the direct frame writer (writer.py)
accepts it as uvicorn's protocol.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class Inbox:
    """The part of `asyncio.Queue` that uvicorn's protocol uses: `put_nowait`, `get`, `empty`.

    Bounded as uvicorn's queue was: uvicorn stops reading the socket while a message waits
    here, so it holds one message, and at most a disconnect besides."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            # Shared by every getter (uvicorn has one: the app's `receive`); each looks again.
            await waiter
        return self._items.pop(0)


_NO_WAITERS: tuple[()] = ()


class Writable(asyncio.Event):
    """An `asyncio.Event`, set, with its deque of waiters made by the first `wait`."""

    def __init__(self) -> None:
        # Not super().__init__(): that is the deque this class exists to avoid. `set` and
        # `clear` iterate or ignore `_waiters`; only `wait` appends, below.
        self._waiters = _NO_WAITERS  # type: ignore[assignment]
        self._value = True

    async def wait(self) -> bool:  # type: ignore[override]
        if self._value:
            return True
        if self._waiters is _NO_WAITERS:
            self._waiters = collections.deque()
        return await super().wait()


class SocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets Sans-I/O protocol with the changes the module describes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Writable()

    def connection_made(self, transport: Any) -> None:
        # The HTTP protocol that read the upgrade request hands its transport over and is
        # never told the connection was lost, where uvicorn unlinks it from its parser (a
        # reference cycle, which would hold the transport until a garbage collection). Do it
        # here, as uvicorn does there.
        previous = transport.get_protocol()
        if previous is not self and getattr(previous, "parser", None) is not None:
            previous.parser = None
        super().connection_made(transport)

    def start_keepalive(self) -> None:
        # Called once the handshake's response is written: nothing reads these again. The
        # request's headers are emptied too, since websockets' parser (a generator) keeps the
        # request as a local for the socket's life.
        request = getattr(self, "request", None)
        if request is not None:
            request.headers.clear()
        self.request = None  # type: ignore[assignment]
        self.response = None  # type: ignore[assignment]
        super().start_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        parser = getattr(self.conn, "parser", None)
        if parser is not None and hasattr(parser, "close"):
            parser.close()
