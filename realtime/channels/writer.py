"""Writing frames straight into uvicorn's WebSocket connection, past the ASGI `send` coroutine.

The fan-out writes the same bytes to thousands of sockets. Through ASGI, each write is a
coroutine call into the server that re-encodes the text and frames it again, driven by a task
per socket that must first be woken. When uvicorn runs its websockets Sans-I/O implementation
(its default with websockets installed) and no extension is negotiated (compression is off),
a server's text frame is the same bytes for every socket: the frame is built once and each
socket costs one `transport.write`, less than `websockets.broadcast()` spends.

Only used when the objects are recognisably that implementation; otherwise the endpoint falls
back to ASGI `send`, which is always correct, only slower.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

_CACHE_SIZE = 256
# id(payload) -> (payload, framed). The payload is kept so that its id cannot be reused while
# cached. Frames of one dispatch are the same objects for every subscriber, so nearly every
# write after the first is a hit.
_framed: dict[int, tuple[bytes, bytes]] = {}


def framed(payload: bytes) -> bytes:
    """`payload` as one unmasked, unfragmented WebSocket text frame (RFC 6455 section 5.2)."""
    entry = _framed.get(id(payload))
    if entry is not None and entry[0] is payload:
        return entry[1]
    data = Frame(Opcode.TEXT, payload).serialize(mask=False)
    if len(_framed) >= _CACHE_SIZE:
        _framed.clear()
    _framed[id(payload)] = (payload, data)
    return data


class DirectWriter:
    __slots__ = ("_protocol", "fd")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        sock = protocol.transport.get_extra_info("socket")
        self.fd: int = sock.fileno() if sock is not None else -1

    @classmethod
    def attach(cls, protocol: Any) -> DirectWriter | None:
        conn = getattr(protocol, "conn", None)
        if (
            isinstance(conn, ServerProtocol)
            and not conn.extensions
            and isinstance(getattr(protocol, "writable", None), asyncio.Event)
            and hasattr(protocol, "close_sent")
            and hasattr(protocol, "disconnected")
            and getattr(protocol, "transport", None) is not None
        ):
            return cls(protocol)
        return None

    def state(self) -> int:
        """1: can write now; 0: paused (buffer above its high-water mark); -1: gone."""
        p = self._protocol
        if p.close_sent or p.disconnected or p.transport.is_closing():
            return -1
        return 1 if p.writable.is_set() else 0

    async def wait_writable(self) -> None:
        await self._protocol.writable.wait()

    def data(self, frames: list[bytes]) -> bytes:
        """The frames as text frames, ready for one write."""
        if len(frames) == 1:
            return framed(frames[0])
        return b"".join([framed(f) for f in frames])

    def write(self, frames: list[bytes]) -> None:
        self._protocol.transport.write(self.data(frames))

    def write_bytes(self, data: bytes) -> None:
        self._protocol.transport.write(data)

    def buffered(self) -> int:
        return int(self._protocol.transport.get_write_buffer_size())


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

    A loopback or LAN write is mostly kernel time, during which Python releases the GIL, so
    the writes to thousands of sockets run on several cores at once. The event loop waits
    meanwhile (as it would in websockets.broadcast()), so nothing else touches these sockets;
    and callers only pass sockets whose transport has nothing buffered, so order holds. What
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
