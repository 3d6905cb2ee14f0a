"""HTTP/1.1 answers, parsed as their bytes arrive: the protocol under realtime.httpclient's
connections (no stream reader, no task or coroutine per request)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

MAX_BODY = 8 * 1024 * 1024
MAX_HEAD = 64 * 1024

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


class AnswerProtocol(asyncio.Protocol):
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
