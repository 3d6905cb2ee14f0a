"""The project's one HTTP/1.1 client: the load tester's booker, the benchmarks' generators, the
webhook dispatcher's deliveries and the JWKS fetches.

Why not httpx: at a few thousand requests a second its per-request overhead (about 1.4 ms of
CPU a request measured on this machine, against tens of µs here) would be the limit of a load
generator on a shared two-core machine, and of webhook deliveries. This speaks just enough
HTTP/1.1: Content-Length or chunked bodies, keep-alive, timeouts, TLS; it never follows a
redirect (a 3xx is an answer like any other). Each
connection is an asyncio protocol that parses the answer as its bytes arrive (no stream
reader, no task or coroutine per request): a benchmark's loop of pre-encoded requests
(`Connection.exchange`) costs a future, a write and a header scan per request.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import urlsplit

import orjson

from realtime.httpwire import AnswerProtocol, NextRequest, Response

__all__ = ["MAX_IDLE", "Client", "Connection", "HttpError", "HttpTimeout", "NextRequest",
           "Response", "connection_for", "get", "split_url"]

# Servers drop idle keep-alive connections (uvicorn after 5 s). A request written into one
# that the server is closing fails without an answer, and a POST cannot safely be retried,
# so a connection idle for longer than this is replaced before use.
MAX_IDLE = 2.0


class HttpError(Exception):
    """No answer: the connection failed, was lost, or the answer was not HTTP."""


class HttpTimeout(HttpError):
    """No answer within the connection's timeout."""


def split_url(url: str) -> tuple[str, int, str]:
    """(host, port, base path) of an http:// URL (the load tester's server)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"--url must be an http:// URL, got {url!r}")
    if parts.scheme == "https":
        raise ValueError("the load tester targets a local server over plain http://")
    host = parts.hostname or "127.0.0.1"
    return host, parts.port or 80, parts.path.rstrip("/")


def connection_for(url: str, timeout: float) -> tuple[Connection, str]:
    """A connection (not yet open) to an http or https URL's host, certificates verified, and
    the request target (path and query) to send it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    port = parts.port or (443 if tls is not None else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Connection(parts.hostname, port, timeout, tls), target


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, host: str, port: int, timeout: float = 10.0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.tls = tls
        self.last_used = 0.0
        self._proto: AnswerProtocol | None = None

    @property
    def is_open(self) -> bool:
        return self._proto is not None and not self._proto.closed

    async def open(self) -> Connection:
        """Connects (a fresh connection replaces the current one)."""
        self.close()
        loop = asyncio.get_running_loop()
        _, self._proto = await loop.create_connection(
            AnswerProtocol, self.host, self.port, ssl=self.tls,
            server_hostname=self.host if self.tls is not None else None)
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

    def _ready(self) -> AnswerProtocol:
        proto = self._proto
        if proto is None or proto.closed:
            raise ConnectionError("the connection is not open")
        if proto.waiter is not None:
            raise ConnectionError("an earlier request on this connection is still unanswered")
        return proto

    def encode(self, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> bytes:
        """A request as bytes: `body` as JSON when it is not None, or sent as it is when it is
        already bytes (the caller's headers then say what it is)."""
        if isinstance(body, bytes):
            payload = body
        else:
            payload = b"" if body is None else orjson.dumps(body)
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{self.port}"]
        if body is not None and not isinstance(body, bytes):
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
                raise HttpTimeout(f"{method} {path}: no answer within {self.timeout:g}s") from None
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
