"""A small keep-alive HTTP/1.1 client: the load tester's booker and the benchmarks' generators.

Why not httpx: at a few thousand bookings a second its per-request overhead would be the
load generator's bottleneck on a shared two-core machine. This speaks just enough HTTP/1.1 for
JSON requests to a known server: Content-Length or chunked bodies, keep-alive, timeouts. Each
connection is an asyncio protocol that parses the answer as its bytes arrive (no stream
reader, no task or coroutine per request): a benchmark's loop of pre-encoded requests
(`Connection.exchange`) costs a future, a write and a header scan per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson

MAX_BODY = 8 * 1024 * 1024
MAX_HEAD = 64 * 1024
# Servers drop idle keep-alive connections (uvicorn after 5 s). A request written into one
# that the server is closing fails without an answer, and a POST cannot safely be retried,
# so a connection idle for longer than this is replaced before use.
MAX_IDLE = 2.0


class HttpError(Exception):
    pass


class Response(NamedTuple):
    status: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None

    def error_code(self) -> str:
        try:
            data = self.json()
            return str(data["error"]["code"])
        except Exception:
            return f"HTTP_{self.status}"


# Response(status, body) without the Python-level __new__ a NamedTuple has: an answer is made
# per request, on the load generator's hot path.
_response = tuple.__new__

# Given the last answer (None before the first request), the next request to send, or None.
NextRequest = Callable[[Response | None], bytes | None]


def split_url(url: str) -> tuple[str, int, str]:
    """(host, port, base path) of an http:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"--url must be an http:// URL, got {url!r}")
    if parts.scheme == "https":
        raise ValueError("the load tester targets a local server over plain http://")
    host = parts.hostname or "127.0.0.1"
    return host, parts.port or 80, parts.path.rstrip("/")


def _header(head: bytes, name: bytes) -> bytes | None:
    """The value of a header in a lower-cased response head, or None."""
    i = head.find(b"\r\n" + name + b":")
    if i < 0:
        return None
    i += len(name) + 3
    j = head.find(b"\r\n", i)
    return head[i:j if j >= 0 else len(head)].strip()


def _chunked(buf: bytes, start: int) -> tuple[bytes, int] | None:
    """(body, end) of a complete chunked body at `start`, None while bytes are missing."""
    chunks: list[bytes] = []
    size = 0
    i = start
    while True:
        j = buf.find(b"\r\n", i)
        if j < 0:
            return None
        n = int(buf[i:j].split(b";")[0], 16)
        size += n
        if size > MAX_BODY:
            raise ValueError("response body too large")
        if n == 0:
            # No trailers from a JSON server: the last chunk is followed by an empty line.
            return (b"".join(chunks), j + 4) if len(buf) >= j + 4 else None
        if len(buf) < j + 2 + n + 2:
            return None
        chunks.append(buf[j + 2:j + 2 + n])
        i = j + 2 + n + 2


class _Protocol(asyncio.Protocol):
    """One connection's bytes: the answer to the one request in flight, parsed as it arrives."""

    def __init__(self) -> None:
        self.buf = b""
        # The request's or the cycle's future; with `next`, answers go to it (a cycle).
        self.waiter: asyncio.Future[Any] | None = None
        self.next: NextRequest | None = None
        self.transport: Any = None
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.eof = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        # An answer usually arrives whole in one read: then it is parsed straight from `data`,
        # inline, without copying it into a buffer first (every microsecond here is taken
        # from the server a benchmark measures).
        buf = self.buf = self.buf + data if self.buf else data
        if self.waiter is None:
            return
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].lower()
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 17)
                try:
                    length = int(head[i + 17:j if j >= 0 else len(head)])
                    status = int(head[9:12])
                except ValueError as exc:
                    self._fail(exc)
                    return
                total = end + 4 + length
                if len(buf) >= total:
                    self.buf = buf[total:]
                    resp = _response(Response, (status, buf[end + 4:total]))
                    if self.next is None and not (b"\r\nconnection:" in head or self.eof):
                        waiter, self.waiter = self.waiter, None
                        if not waiter.done():
                            waiter.set_result(resp)
                        return
                    self._done(resp, head)
                    return
        self._parse_other(end)

    def eof_received(self) -> bool:
        self.eof = self.closed = True
        if self.waiter is not None:
            self._parse_other(self.buf.find(b"\r\n\r\n"))
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.eof:
            self.eof = True
            self._parse_other(self.buf.find(b"\r\n\r\n"))
        self._fail(ConnectionError(f"connection lost: {exc}" if exc else "connection closed"))

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter, self.next = self.waiter, None, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _done(self, resp: Response, head: bytes) -> None:
        """An answer is complete: close the connection if it ends here, and hand the answer
        on (to the request's future, or to the cycle's next_request)."""
        if self.eof or (b"\r\nconnection:" in head and _header(head, b"connection") == b"close"):
            self.closed = True
            self.transport.close()
        waiter, nxt = self.waiter, self.next
        if nxt is None or waiter is None or waiter.done():  # a request, or a cycle given up
            self.waiter = self.next = None
            if nxt is None and waiter is not None and not waiter.done():
                waiter.set_result(resp)
            return
        try:
            raw = nxt(resp)
        except Exception as exc:
            self._fail(exc)
            return
        if raw is None:
            self.waiter = self.next = None
            waiter.set_result(None)
        elif self.closed:
            self._fail(ConnectionError("the server closed the connection"))
        else:
            self.transport.write(raw)

    def _parse_other(self, end: int) -> None:
        """Everything but a complete answer with a Content-Length: an incomplete one, a
        chunked body, a body that ends with the connection, no body, or not HTTP."""
        buf = self.buf
        if end < 0:
            if len(buf) > MAX_HEAD:
                self._fail(ValueError("response head too large"))
            elif self.eof:
                self._fail(ConnectionError("connection closed before the response's head"))
            return
        if not buf.startswith(b"HTTP/1."):
            self._fail(ValueError(f"not an HTTP response: {buf[:80]!r}"))
            return
        head = buf[:end].lower()
        start = end + 4
        try:
            status = int(head[9:12])
            length = _header(head, b"content-length")
            if length is not None:
                if int(length) > MAX_BODY:
                    raise ValueError("response body too large")
                if len(buf) >= start + int(length):  # complete, arrived in pieces
                    body, total = buf[start:start + int(length)], start + int(length)
                elif self.eof:
                    raise ConnectionError("connection closed within the body")
                else:
                    return
            elif status in (204, 304) or 100 <= status < 200:
                body, total = b"", start
            elif b"chunked" in (_header(head, b"transfer-encoding") or b""):
                done = _chunked(buf, start)
                if done is None:
                    if self.eof:
                        raise ConnectionError("connection closed within the body")
                    return
                body, total = done
            elif not self.eof:
                # No length: the body ends with the connection.
                if len(buf) - start > MAX_BODY:
                    raise ValueError("response body too large")
                return
            else:
                body, total = buf[start:], len(buf)
        except (ValueError, ConnectionError) as exc:
            self._fail(exc)
            return
        self.buf = buf[total:]
        self._done(_response(Response, (status, body)), head)


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.last_used = 0.0
        self._proto: _Protocol | None = None

    @property
    def is_open(self) -> bool:
        return self._proto is not None and not self._proto.closed

    async def open(self) -> Connection:
        """Connects (a fresh connection replaces the current one)."""
        self.close()
        loop = asyncio.get_running_loop()
        _, self._proto = await loop.create_connection(_Protocol, self.host, self.port)
        self.last_used = loop.time()
        return self

    def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None:
            proto.closed = True
            if proto.transport is not None:
                proto.transport.close()

    def exchange(self, raw: bytes) -> asyncio.Future[Response]:
        """Sends one complete, already encoded request on the open connection; the future is
        its answer. The fast path of a load generator: no encoding, no timer, no retry. It fails
        with ConnectionError (closed, lost, or a request given up on is still unanswered: open
        again) or ValueError (not HTTP: open again)."""
        proto = self._ready()
        waiter: asyncio.Future[Response] = proto.loop.create_future()
        proto.waiter = waiter
        proto.transport.write(raw)
        return waiter

    def cycle(self, next_request: NextRequest) -> asyncio.Future[None]:
        """Requests back to back on the open connection, each written as soon as the last
        one's answer is parsed: `next_request(None)` returns the first request,
        `next_request(answer)` the next one, None to stop (the future then resolves). No
        future, await or task switch per request: the cheapest way to keep a server busy
        (bench/booking.py's generators). Fails like `exchange`, when the server closes the
        connection (the answer is handed on first), or with what `next_request` raised."""
        proto = self._ready()
        waiter: asyncio.Future[None] = proto.loop.create_future()
        raw = next_request(None)
        if raw is None:
            waiter.set_result(None)
            return waiter
        proto.waiter, proto.next = waiter, next_request
        proto.transport.write(raw)
        return waiter

    def _ready(self) -> _Protocol:
        proto = self._proto
        if proto is None or proto.closed:
            raise ConnectionError("the connection is not open")
        if proto.waiter is not None:
            raise ConnectionError("an earlier request on this connection is still unanswered")
        return proto

    def encode(self, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> bytes:
        """A request as bytes: a JSON body when `body` is not None."""
        payload = b"" if body is None else orjson.dumps(body)
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body is not None:
            head.append("Content-Type: application/json")
        head.append(f"Content-Length: {len(payload)}")
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + payload

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        loop = asyncio.get_running_loop()
        if self.is_open and loop.time() - self.last_used > MAX_IDLE:
            self.close()
        raw = self.encode(method, path, body, headers)
        # Only a request that cannot change anything is retried, once, on a fresh connection.
        attempts = 2 if method == "GET" else 1
        for attempt in range(attempts):
            try:
                resp = await self._timed(raw, loop)
                self.last_used = loop.time()
                return resp
            except TimeoutError:
                # (Before OSError, its base class.) The server is overloaded or stuck: a retry
                # would only add load, so report it.
                self.close()
                raise HttpError(f"{method} {path}: no answer within {self.timeout:g}s") from None
            except OSError as exc:
                # The connection's state is unknown after any failure: never reuse it.
                self.close()
                if attempt + 1 < attempts:
                    continue
                raise HttpError(f"{method} {path}: {exc!r}") from None
            except ValueError as exc:
                self.close()
                raise HttpError(f"{method} {path}: {exc!r}") from None
            except asyncio.CancelledError:
                self.close()  # an answer may still be on its way
                raise
        raise AssertionError("unreachable")

    async def _timed(self, raw: bytes, loop: asyncio.AbstractEventLoop) -> Response:
        deadline = loop.time() + self.timeout
        if not self.is_open:
            await asyncio.wait_for(self.open(), self.timeout)
        waiter = self.exchange(raw)
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


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


async def get(url: str, within: float = 5.0) -> Response:
    """One GET on a connection of its own, closed after: a readiness probe, a scrape. Raises
    HttpError when there is no answer `within` seconds."""
    host, port, _ = split_url(url)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = Connection(host, port, within)
    try:
        return await conn.request("GET", path)
    finally:
        conn.close()
