"""How a connection's frames reach its socket: one interface, two writers, chosen once.

`writer_for(send)` picks one writer per connection, when it opens:

- `DirectWriter` writes frames straight into the transport of uvicorn's websockets Sans-I/O
  protocol, past the ASGI `send` coroutine. The fan-out writes the same bytes to thousands of
  sockets; through ASGI each write is a coroutine call into the server that re-encodes the
  text and frames it again, driven by a task per socket that must first be woken. With no
  extension negotiated (compression is off), a server's text frame is the same bytes for
  every socket: it is built once, and each socket costs one `transport.write`. A dispatch to
  many sockets is written from threads with `os.write` into the sockets themselves
  (`write_parallel`), which is why this writer is only for plain TCP: on a TLS connection
  those bytes would bypass the encryption and break the stream.
- `AsgiWriter` sends one ASGI message per frame: always correct, slower. It serves TLS,
  compression, uvicorn's other WebSocket implementations and any other server.

The connection only talks to `FrameWriter`; nothing outside this module knows the internals
of uvicorn's WebSocket protocols. Server-Sent Events streams have writers of the same
interface for uvicorn's HTTP protocol, with the same rules (plain TCP only, an ASGI fallback),
in ssewire.py; the pieces both use (`server_protocol`, `plain_socket`, `tune`,
`write_parallel`, `Sent`) are here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from websockets.server import ServerProtocol

from realtime.channels import metrics
from realtime.channels.subscriber import Subscriber
from realtime.channels.wire import JoinedBatches, framed
from realtime.errors import CLOSE_OVERLOAD

log = logging.getLogger("realtime.channels.writer")

Send = Callable[[dict[str, Any]], Awaitable[None]]

# Bounds the kernel's share of a stalled reader's backlog; past it the outbox (coalescing,
# then 1013) takes over. Loopback autotuning would otherwise let each socket buffer megabytes.
SOCKET_SEND_BUFFER = 64 * 1024
TRANSPORT_HIGH_WATER = 16 * 1024
# Frames per direct write: the transport takes whatever it is given, so this is what bounds a
# socket's buffered bytes (its high-water mark plus one chunk) when its peer reads slowly; the
# rest waits in the outbox, where it can be coalesced.
WRITE_CHUNK = 32


class Sent:
    """Frames handed to sockets since the process started, by writer. Plain class counters:
    a Prometheus inc() per socket per frame would cost as much as the write."""

    direct = 0
    bulk = 0
    asgi = 0
    # Frames taken by Server-Sent Events streams (ssewire.py), by writer likewise.
    sse = 0
    sse_direct = 0
    sse_bulk = 0
    _exported = 0

    @classmethod
    def since_last(cls) -> int:
        """Frames sent since the last call (the runtime moves them into Prometheus)."""
        total = cls.direct + cls.bulk + cls.asgi + cls.sse + cls.sse_direct + cls.sse_bulk
        new, cls._exported = total - cls._exported, total
        return new


def _observe(sub: Subscriber) -> None:
    # Latency is observed on a sample of sockets: observing every send would cost more than
    # the send.
    metrics.DELIVERY_LATENCY.observe(asyncio.get_running_loop().time() - sub.stamp)
    sub.stamp = 0.0


class FrameWriter:
    """The writing side of one connection. `reason` says why it is not the direct writer."""

    __slots__ = ("reason", "transport")

    def __init__(self, transport: Any, reason: str = "") -> None:
        # The server's transport when it could be found, for socket tuning and abort only.
        self.transport = transport
        self.reason = reason

    def write_now(self, sub: Subscriber) -> bool:
        """Write (part of) what `sub` owes right here, synchronously; True if nothing is left.

        False means a writer task has to do it (`write_some`)."""
        raise NotImplementedError

    async def write_some(self, sub: Subscriber) -> None:
        """From the connection's writer task: write what `sub` owes, or wait until it can."""
        raise NotImplementedError

    def take_bulk(self, sub: Subscriber) -> tuple[int, bytes] | None:
        """(fd, bytes) of `sub`'s outbox, taken, if a thread may `os.write` them now."""
        return None

    def write_rest(self, data: bytes) -> None:
        """What the kernel did not take from a bulk write, in order."""
        raise RuntimeError("bulk writes are only taken by the direct writer")

    def tune(self) -> None:
        """Bound the kernel's and the transport's buffers for this socket."""
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)
        # The user-space share of a slow peer's backlog; past it the outbox takes over.
        with contextlib.suppress(AttributeError, ValueError):
            transport.set_write_buffer_limits(high=TRANSPORT_HIGH_WATER)

    def abort(self) -> None:
        """Drop the connection now (a peer that stopped reading cannot take a close frame)."""
        if self.transport is not None:
            self.transport.abort()


class SendWriter(FrameWriter):
    """Writes through the ASGI `send` the app was given: always correct (TLS, any server or
    protocol), slower. AsgiWriter for WebSocket frames, ssewire.AsgiChunkWriter for events."""

    __slots__ = ("_send",)

    def __init__(self, send: Send, transport: Any, reason: str) -> None:
        super().__init__(transport, reason)
        self._send = send

    def write_now(self, sub: Subscriber) -> bool:
        return False  # `send` is a coroutine: only the writer task can await it


class TransportWriter(FrameWriter):
    """Prebuilt bytes written to the server's transport past ASGI `send`, and to the raw
    socket `fd` from threads: DirectWriter for WebSocket frames, ssewire.ChunkWriter for
    events. Each knows its protocol's state (`_state`) and how to wait while the transport
    is paused (`_writable`); the hot paths (`write_now`, `take_bulk`) are their own."""

    __slots__ = ("fd",)

    def _state(self) -> int:
        """1: can write now; 0: paused (buffer above its high-water mark); -1: gone."""
        raise NotImplementedError

    async def _writable(self) -> None:
        """Returns once the paused transport takes bytes again."""
        raise NotImplementedError

    async def write_some(self, sub: Subscriber) -> None:
        if self.write_now(sub):
            return
        if self._state() == 0:
            await self._writable()
        else:
            await asyncio.sleep(0)  # more owed: let others run first

    def write_rest(self, data: bytes) -> None:
        self.transport.write(data)


class AsgiWriter(SendWriter):
    """One `websocket.send` per frame through the ASGI `send` the app was given."""

    __slots__ = ()

    async def write_some(self, sub: Subscriber) -> None:
        batch = sub.take()
        send = self._send
        for frame in batch:
            if sub.close_code == CLOSE_OVERLOAD:
                break  # what it still owes is dropped; it resumes by cursor
            # A new message each time: a server or middleware may keep the dict it was given.
            await send({"type": "websocket.send", "text": frame.decode()})
        Sent.asgi += len(batch)
        if sub.sampled and sub.stamp:
            _observe(sub)


_wire = JoinedBatches(framed)


class DirectWriter(TransportWriter):
    """Prebuilt frames written to uvicorn's transport, and to the raw socket from threads.

    Built only by `writer_for`, which has checked that the transport is plain TCP and that
    the protocol is uvicorn's websockets Sans-I/O one with no extension negotiated."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any, fd: int) -> None:
        super().__init__(protocol.transport)
        self._protocol = protocol
        self.fd = fd

    def _state(self) -> int:
        p = self._protocol
        if p.close_sent or p.disconnected or self.transport.is_closing():
            return -1
        return 1 if p.writable.is_set() else 0

    def write_now(self, sub: Subscriber) -> bool:
        # The fan-out's hot path: one call per socket per dispatch, so the state check and
        # the framing are inlined rather than calls of their own.
        p = self._protocol
        transport = self.transport
        if p.close_sent or p.disconnected or transport.is_closing():
            sub.take()  # gone: nothing will be written, the read loop sees the disconnect
            return True
        if not p.writable.is_set():
            return False
        batch = sub.take(WRITE_CHUNK)
        if batch:
            transport.write(_wire(batch))
            Sent.direct += len(batch)
            if sub.sampled and sub.stamp:
                _observe(sub)
        return not sub.frames

    async def _writable(self) -> None:
        await self._protocol.writable.wait()

    def take_bulk(self, sub: Subscriber) -> tuple[int, bytes] | None:
        # Only with nothing in the transport's buffer (else order could break) and not paused.
        if self._state() != 1 or self.transport.get_write_buffer_size():
            return None
        batch = sub.take(WRITE_CHUNK)
        if not batch:
            return None
        Sent.bulk += len(batch)
        if sub.sampled and sub.stamp:
            _observe(sub)
        return self.fd, _wire(batch)


# --- choosing a writer: the one place that knows uvicorn's internals ------------------------
#
# Verified against uvicorn 0.54.0 (its default `ws="auto"` runs WebSocketsSansIOProtocol,
# uvicorn/protocols/websockets/websockets_sansio_impl.py) with websockets 17.4, on uvloop 0.23
# and on asyncio's selector loop. What is relied on: the ASGI `send` is a bound method of the
# protocol object (reached through the closures of middleware that wrap it); the protocol has
# `transport`, `conn` (a websockets ServerProtocol whose `extensions` lists what was
# negotiated), `writable` (an asyncio.Event cleared while the transport is paused),
# `close_sent` and `disconnected`; and it writes every frame with `transport.write`, so frames
# written here interleave correctly with its own (pings, close). If any of that stops holding,
# `writer_for` returns the ASGI writer: tests/channels/test_direct.py fails loudly then.

# Transports known to hand their bytes unchanged to the socket they report (so `os.write` to
# its fd is equivalent): asyncio's selector transport and uvloop's stream transports. TLS
# transports, proactor transports and anything unknown are not in it.
_PLAIN_TRANSPORTS = frozenset({
    ("asyncio.selector_events", "_SelectorSocketTransport"),
    ("uvloop.loop", "TCPTransport"),
    ("uvloop.loop", "UnixTransport"),
})
_STREAM_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


def server_protocol(send: Any, depth: int = 0) -> Any:
    """The server's protocol object whose `send` method is behind `send`, or None."""
    owner = getattr(send, "__self__", None)
    if owner is not None and hasattr(owner, "transport"):
        return owner
    if depth > 4:
        return None
    for cell in getattr(send, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # an empty cell
            found = server_protocol(cell.cell_contents, depth + 1)
            if found is not None:
                return found
    return None


def plain_socket(transport: Any) -> tuple[socket.socket | None, str]:
    """(the stream socket under `transport`, "") if it is known to carry no TLS, else
    (None, why not). Whatever cannot be established counts as TLS."""
    try:
        if (transport.get_extra_info("sslcontext") is not None
                or transport.get_extra_info("ssl_object") is not None):
            return None, "TLS"
        kind = type(transport)
        if (kind.__module__, kind.__qualname__) not in _PLAIN_TRANSPORTS:
            return None, f"{kind.__module__}.{kind.__qualname__} is not known to be plain TCP"
        sock = transport.get_extra_info("socket")
        if (sock is None or sock.type != socket.SOCK_STREAM
                or sock.family not in _STREAM_FAMILIES or sock.fileno() < 0):
            return None, "the transport has no stream socket of its own"
    except Exception:
        return None, "the transport does not say whether it is TLS"
    return sock, ""


def _not_direct(protocol: Any) -> str | None:
    """Why this protocol object does not allow frames past ASGI `send`; None if it does."""
    if protocol is None or getattr(protocol, "transport", None) is None:
        return "the server's protocol object was not found behind ASGI send"
    conn = getattr(protocol, "conn", None)
    if not (isinstance(conn, ServerProtocol)
            and isinstance(getattr(protocol, "writable", None), asyncio.Event)
            and hasattr(protocol, "close_sent") and hasattr(protocol, "disconnected")):
        return "the server's WebSocket protocol is not uvicorn's websockets-sansio one"
    if conn.extensions:
        return "a WebSocket extension (compression) is negotiated"
    return None


_reported: set[str] = set()


def report(reason: str, what: str = "WebSocket frames",
           packages: tuple[str, ...] = ("uvicorn", "websockets")) -> None:
    """Logs once per reason that `what` go through ASGI send, why, and the installed versions
    of the `packages` the direct writer depends on."""
    if reason not in _reported:
        _reported.add(reason)
        log.info("%s go through ASGI send (%s; %s)", what, reason, versions(packages))


def versions(packages: tuple[str, ...] = ("uvicorn", "websockets")) -> str:
    """The installed versions a direct writer depends on, for messages."""
    found = []
    for name in packages:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def transport_of(send: Send) -> Any:
    """The transport behind an ASGI `send` (for buffer tuning and abort), or None."""
    return getattr(server_protocol(send), "transport", None)


def writer_for(send: Send) -> FrameWriter:
    """The writer for a connection whose ASGI `send` is `send`, chosen once when it opens."""
    protocol = server_protocol(send)
    reason = _not_direct(protocol)
    if reason is None:
        sock, reason = plain_socket(protocol.transport)
        if sock is not None:
            return DirectWriter(protocol, sock.fileno())
    report(reason)
    return AsgiWriter(send, getattr(protocol, "transport", None), reason)


# --- many sockets at once -------------------------------------------------------------------

# Below this many sockets in one flush, threads cost more than they save.
PARALLEL_MIN = 256
_executor: ThreadPoolExecutor | None = None


def _threads() -> int:
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def _write_chunk(chunk: list[tuple[int, bytes]]) -> list[int]:
    written = []
    for fd, data in chunk:
        try:
            written.append(os.write(fd, data))  # releases the GIL for the syscall
        except BlockingIOError:
            written.append(0)
        except OSError:
            written.append(-1)
    return written


def write_parallel(jobs: list[tuple[int, bytes]]) -> list[int]:
    """Write each job's bytes to its socket; returns how much of each went out (-1: error).

    Jobs come only from `DirectWriter.take_bulk`, so every fd is a plain TCP socket. A
    loopback or LAN write is mostly kernel time, during which Python releases the GIL, so
    the writes to thousands of sockets run on several cores at once. The event loop waits
    meanwhile (as it would in websockets.broadcast()), so nothing else touches these sockets;
    and only sockets whose transport has nothing buffered are passed, so order holds. What
    the kernel did not take is handed to the transport afterwards.
    """
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(_threads(), thread_name_prefix="realtime-fanout")
    parts = _threads() + 1
    size = -(-len(jobs) // parts)
    chunks = [jobs[i:i + size] for i in range(0, len(jobs), size)]
    futures = [_executor.submit(_write_chunk, chunk) for chunk in chunks[1:]]
    written = _write_chunk(chunks[0]) if chunks else []
    for future in futures:
        written.extend(future.result())
    return written
