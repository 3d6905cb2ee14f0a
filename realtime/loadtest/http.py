"""A small keep-alive HTTP/1.1 client for the booker.

Why not httpx: at a few thousand bookings a second its per-request overhead would be the
load generator's bottleneck on a shared two-core machine. This speaks just enough HTTP/1.1 for
JSON requests to a known server: Content-Length or chunked bodies, keep-alive, timeouts.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import orjson

MAX_BODY = 8 * 1024 * 1024
# Servers drop idle keep-alive connections (uvicorn after 5 s). A request written into one
# that the server is closing fails without an answer, and a POST cannot safely be retried,
# so a connection idle for longer than this is replaced before use.
MAX_IDLE = 2.0


class HttpError(Exception):
    pass


class Response:
    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None

    def error_code(self) -> str:
        try:
            data = self.json()
            return str(data["error"]["code"])
        except Exception:
            return f"HTTP_{self.status}"


def split_url(url: str) -> tuple[str, int, str]:
    """(host, port, base path) of an http:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"--url must be an http:// URL, got {url!r}")
    if parts.scheme == "https":
        raise ValueError("the load tester targets a local server over plain http://")
    host = parts.hostname or "127.0.0.1"
    return host, parts.port or 80, parts.path.rstrip("/")


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        loop = asyncio.get_running_loop()
        if self.writer is not None and loop.time() - self.last_used > MAX_IDLE:
            self.close()
        # Only a request that cannot change anything is retried, once, on a fresh connection.
        attempts = 2 if method == "GET" else 1
        for attempt in range(attempts):
            try:
                resp = await asyncio.wait_for(
                    self._request(method, path, body, headers), self.timeout
                )
                self.last_used = loop.time()
                return resp
            except TimeoutError:
                # (Before OSError, its base class.) The server is overloaded or stuck: a retry
                # would only add load, so report it.
                self.close()
                raise HttpError(f"{method} {path}: no answer within {self.timeout:g}s") from None
            except (OSError, asyncio.IncompleteReadError) as exc:
                # The connection's state is unknown after any failure: never reuse it.
                self.close()
                if attempt + 1 < attempts:
                    continue
                raise HttpError(f"{method} {path}: {exc!r}") from None
            except ValueError as exc:
                self.close()
                raise HttpError(f"{method} {path}: {exc!r}") from None
        raise AssertionError("unreachable")

    async def _request(
        self, method: str, path: str, body: Any, headers: dict[str, str] | None
    ) -> Response:
        if self.writer is None or self.writer.is_closing():
            await self._open()
        assert self.reader is not None and self.writer is not None
        payload = b"" if body is None else orjson.dumps(body)
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body is not None:
            head.append("Content-Type: application/json")
        head.append(f"Content-Length: {len(payload)}")
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        reader = self.reader
        status_line = await reader.readuntil(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        keep_alive = True
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.lower() == b"close":
                keep_alive = False
        if chunked:
            chunks: list[bytes] = []
            size = 0
            while True:
                n = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if n == 0:
                    await reader.readuntil(b"\r\n")
                    break
                size += n
                if size > MAX_BODY:
                    raise ValueError("response body too large")
                chunks.append(await reader.readexactly(n))
                await reader.readexactly(2)
            data = b"".join(chunks)
        elif length is not None:
            if length > MAX_BODY:
                raise ValueError("response body too large")
            data = await reader.readexactly(length)
        else:
            data = await reader.read(MAX_BODY)
            keep_alive = False
        if not keep_alive:
            self.close()
        return Response(status, data)


class Client:
    """A bounded pool of keep-alive connections."""

    def __init__(
        self, url: str, *, size: int = 32, timeout: float = 10.0, token: str | None = None
    ) -> None:
        self.host, self.port, self.base = split_url(url)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._idle = [Connection(self.host, self.port, timeout) for _ in range(size)]
        self._free = asyncio.Semaphore(size)
        self.size = size

    @property
    def busy(self) -> int:
        return self.size - len(self._idle)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        async with self._free:
            conn = self._idle.pop()
            try:
                return await conn.request(
                    method, self.base + path, body, {**self.headers, **(headers or {})}
                )
            finally:
                self._idle.append(conn)

    def close(self) -> None:
        for c in self._idle:
            c.close()
