"""A Server-Sent Events reader for tests, over a real socket: the events as they arrive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass
class SseEvent:
    event: str
    id: str | None
    data: Any  # the JSON of `data`, or None for a comment
    comment: str | None = None


class SseReader:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 status: int, headers: dict[str, str], body: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.status = status
        self.headers = headers
        self.body = body  # an error's JSON body (no stream)
        self._buffer = b""

    async def next(self, within: float = 10.0, comments: bool = False) -> SseEvent:
        """The next event (comments skipped unless asked for)."""
        while True:
            event = await asyncio.wait_for(self._one(), within)
            if event.comment is None or comments:
                return event

    async def _one(self) -> SseEvent:
        while b"\n\n" not in self._buffer:
            chunk = await self._chunk()
            if not chunk:
                raise ConnectionError("the stream ended")
            self._buffer += chunk
        block, self._buffer = self._buffer.split(b"\n\n", 1)
        fields: dict[str, str] = {}
        comment = None
        for line in block.decode().split("\n"):
            if line.startswith(":"):
                comment = line[1:].strip()
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        data = orjson.loads(fields["data"]) if "data" in fields else None
        return SseEvent(fields.get("event", "message"), fields.get("id"), data, comment)

    async def _chunk(self) -> bytes:
        """One chunk of the chunked body (b"" at its end)."""
        size_line = await self.reader.readline()
        if not size_line:
            return b""
        size = int(size_line.strip(), 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def ended(self, within: float = 10.0) -> bool:
        """Whether the server ends the stream within the time (the last chunk, or a close)."""
        async def drain() -> None:
            while await self._chunk():
                pass

        try:
            await asyncio.wait_for(drain(), within)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        return True

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def sse(port: int, query: str, headers: dict[str, str] | None = None,
              rcvbuf: int | None = None, source: str | None = None) -> AsyncIterator[SseReader]:
    """GET /sse?{query} on 127.0.0.1:port with the given headers (from the loopback address
    `source` when given, e.g. 127.0.0.2: another client address)."""
    import socket

    sock = socket.socket()
    if source is not None:
        sock.bind((source, 0))
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    head = [f"GET /sse?{query} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    status_line = await asyncio.wait_for(reader.readline(), 10)
    status = int(status_line.split()[1])
    got: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        got[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in got:
        body = await reader.readexactly(int(got["content-length"]))
    client = SseReader(reader, writer, status, got, body)
    try:
        yield client
    finally:
        client.close()
