"""The load tester's HTTP client against real sockets: scripted servers and a real `realtime serve`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from realtime.httpclient import Client, Connection, HttpError, Response, get

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    return head


@asynccontextmanager
async def scripted(answer: Answer) -> AsyncIterator[tuple[int, list[int]]]:
    """A server on a free port; `answer(request, writer)` writes each response and returns
    whether to keep the connection. Yields the port and a list counting connections."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while await answer(await _read_request(reader), writer):
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        server.close()
        await server.wait_closed()


def _json(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
            % (status, len(body), extra, body))


async def test_keep_alive_reuses_one_connection() -> None:
    """Two requests through a one-connection pool travel on the same TCP connection."""
    async def answer(request: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(_json(201, b'{"path": "%s"}' % request.split(b" ")[1]))
        return True

    async with scripted(answer) as (port, connections):
        client = Client(f"http://127.0.0.1:{port}", size=1)
        first = await client.request("POST", "/a", {"x": 1})
        second = await client.request("GET", "/b")
        client.close()
    assert (first.status, first.json(), second.json()) == (201, {"path": "/a"}, {"path": "/b"})
    assert len(connections) == 1


async def test_chunked_body_in_pieces() -> None:
    """A chunked body that arrives a few bytes at a time is reassembled."""
    async def answer(_: bytes, w: asyncio.StreamWriter) -> bool:
        raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\n{\"a\":\r\n3;ext=1\r\n 12\r\n1\r\n}\r\n0\r\n\r\n")
        for i in range(0, len(raw), 7):
            w.write(raw[i:i + 7])
            await w.drain()
            await asyncio.sleep(0.002)
        return True

    async with scripted(answer) as (port, _):
        conn = Connection("127.0.0.1", port)
        resp = await conn.request("GET", "/")
        again = await conn.request("GET", "/")
        conn.close()
    assert resp.json() == {"a": 12} and again.json() == {"a": 12}


async def test_connection_close_and_body_until_eof() -> None:
    """`Connection: close` and a body without a length both end the connection; the next
    request opens a fresh one."""
    async def answer(request: bytes, w: asyncio.StreamWriter) -> bool:
        if b"/close" in request:
            w.write(_json(200, b"[1]", b"Connection: close\r\n"))
        else:
            w.write(b"HTTP/1.1 200 OK\r\n\r\n[2]")
        return False

    async with scripted(answer) as (port, connections):
        conn = Connection("127.0.0.1", port)
        a = await conn.request("GET", "/close")
        assert not conn.is_open
        b = await conn.request("GET", "/eof")
        conn.close()
    assert (a.json(), b.json(), len(connections)) == ([1], [2], 2)


async def test_no_content_needs_no_length() -> None:
    """A 204 without Content-Length is complete at its head."""
    async def answer(_: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        return True

    async with scripted(answer) as (port, _):
        conn = Connection("127.0.0.1", port, timeout=2)
        resp = await conn.request("POST", "/x", {})
        conn.close()
    assert (resp.status, resp.body) == (204, b"")


async def test_timeout_is_an_error_and_drops_the_connection() -> None:
    """No answer within the timeout raises HttpError; the connection is not reused."""
    async def answer(_: bytes, w: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(1)
        return False

    async with scripted(answer) as (port, _):
        conn = Connection("127.0.0.1", port, timeout=0.1)
        with pytest.raises(HttpError, match="no answer within"):
            await conn.request("POST", "/slow", {})
        assert not conn.is_open


async def test_get_is_retried_once_post_is_not() -> None:
    """A connection lost with the request unanswered: a GET is sent again on a fresh one, a
    POST is reported (it may have been applied)."""
    async def answer(request: bytes, w: asyncio.StreamWriter) -> bool:
        if len(connections) > 1:
            w.write(_json(200, b"{}"))
        return False  # the first connection closes without an answer

    for method, body in (("GET", None), ("POST", {})):
        async with scripted(answer) as (port, connections):
            conn = Connection("127.0.0.1", port)
            if method == "GET":
                assert (await conn.request(method, "/", body)).status == 200
            else:
                with pytest.raises(HttpError, match="POST /"):
                    await conn.request(method, "/", body)
            conn.close()
        assert len(connections) == (2 if method == "GET" else 1)


async def test_exchange_sends_encoded_requests() -> None:
    """`exchange` writes a pre-encoded request and resolves with its answer; a second request
    while one is in flight is refused."""
    async def answer(request: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(_json(201, request.split(b"\r\n\r\n", 1)[1]))
        return True

    async with scripted(answer) as (port, _):
        conn = await Connection("127.0.0.1", port).open()
        raw = conn.encode("POST", "/api/bookings", {"slot_id": "s"})
        first = conn.exchange(raw)
        with pytest.raises(ConnectionError):
            conn.exchange(raw)
        resp = await first
        again = await conn.exchange(raw)
        conn.close()
        with pytest.raises(ConnectionError):
            conn.exchange(raw)
    assert resp.status == 201 and resp.json() == {"slot_id": "s"} == again.json()


async def test_cycle_sends_the_next_request_from_each_answer() -> None:
    """`cycle` writes each request as the last answer arrives, until next_request says stop;
    a connection the server closes ends it with ConnectionError, after handing the answer on."""
    async def answer(request: bytes, w: asyncio.StreamWriter) -> bool:
        n = int(request.split(b" ")[1][1:])
        w.write(_json(200, b"%d" % n, b"Connection: close\r\n" if n == 5 else b""))
        return n != 5

    async with scripted(answer) as (port, connections):
        conn = await Connection("127.0.0.1", port).open()
        answers: list[int | None] = []
        sent: list[int] = []

        def up_to(last: int) -> Callable[[Response | None], bytes | None]:
            def next_request(resp: Response | None) -> bytes | None:
                answers.append(None if resp is None else resp.json())
                if len(sent) == last:
                    return None
                sent.append(len(sent) + 1)
                return conn.encode("GET", f"/{sent[-1]}")
            return next_request

        await conn.cycle(up_to(3))
        assert answers == [None, 1, 2, 3] and conn.is_open
        answers.clear()
        with pytest.raises(ConnectionError):
            await conn.cycle(up_to(9))  # the server closes after /5
        assert answers == [None, 4, 5] and not conn.is_open

        def broken(resp: Response | None) -> bytes:
            if resp is not None:
                raise KeyError("the caller's own error")
            return conn.encode("GET", "/1")

        await conn.open()
        with pytest.raises(KeyError):
            await conn.cycle(broken)
        conn.close()
    assert len(connections) == 2


async def test_not_http_is_an_error() -> None:
    """An answer that is not HTTP/1.x raises HttpError."""
    async def answer(_: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        return True

    async with scripted(answer) as (port, _):
        conn = Connection("127.0.0.1", port)
        with pytest.raises(HttpError, match="not an HTTP response"):
            await conn.request("GET", "/")


async def test_get_against_the_real_server(server) -> None:
    """`get` reads a real server's readiness and metrics."""
    ready = await get(server.url + "/readyz")
    metrics = await get(server.url + "/metrics?x=1")
    assert ready.status == 200 and b"realtime_" in metrics.body
