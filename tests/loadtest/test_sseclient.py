"""The load tester's SSE reader on a real socket: a recorded stream, however it is split,
gives the same messages; resumes send Last-Event-ID; refusals and ends are failures."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from realtime.channels.ssewire import PING_FRAME, chunk_for
from realtime.loadtest.sseclient import SseSubscriber

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
        b"transfer-encoding: chunked\r\n\r\n")


def _frames() -> list[bytes]:
    """What the server sends a stream: a `subscribed` reply, updates, a ping and a presence
    frame (which SSE does not carry), as the hub's frames."""
    subscribed = orjson.dumps({"type": "subscribed", "channel": "service:s", "cursor": "1@e",
                               "snapshot": {"slots": []}})
    updates = [orjson.dumps({"type": "availability:updated", "channel": "service:s",
                             "cursor": f"{i}@e", "reason": "booked",
                             "slot": {"id": "a", "version": i}}) for i in range(2, 40)]
    presence = orjson.dumps({"type": "presence", "channel": "service:s", "count": 3})
    return [subscribed, *updates[:10], PING_FRAME, presence, *updates[10:]]


async def _read(response: bytes, split: int, cursor: str | None = None,
                ) -> tuple[list[bytes], SseSubscriber, bytes]:
    """`response` sent `split` bytes at a time to one SseSubscriber; the messages it passed
    on, itself and the request it sent."""
    got: list[bytes] = []
    request = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request.set_result(await reader.readuntil(b"\r\n\r\n"))
        for i in range(0, len(response), split):
            writer.write(response[i:i + split])
            await writer.drain()
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
    sub = SseSubscriber(channel="service:s", host=f"127.0.0.1:{port}", path="/sse?token=t",
                        on_message=lambda s, payload: got.append(payload),
                        on_lost=lambda s, exc: lost.set_result(exc))
    sub.cursor = cursor
    try:
        await asyncio.get_running_loop().create_connection(lambda: sub, "127.0.0.1", port)
        await asyncio.wait_for(lost, 10)
    finally:
        server.close()
    # The worker resolves `subscribed` on the `subscribed` message; here nothing does, so the
    # end of the connection fails it: retrieved, so that it is not reported as unhandled.
    assert sub.subscribed.done()
    sub.subscribed.exception()
    return got, sub, request.result()


@pytest.mark.parametrize("split", [1, 7, 100, 1 << 20])
async def test_a_recorded_stream_gives_every_message_however_split(split: int) -> None:
    """The events' data are the frames' JSON, in order, whatever the TCP segments; pings and
    frames SSE does not carry give nothing."""
    frames = _frames()
    body = b"".join(chunk_for(f) for f in frames)
    got, sub, request = await _read(HEAD + body, split)
    carried = [f for f in frames if f is not PING_FRAME and b'"presence"' not in f]
    assert got == carried
    assert sub.last_id == "39@e"
    assert request.startswith(b"GET /sse?token=t&channel=service:s HTTP/1.1\r\n")
    assert b"last-event-id" not in request.lower()


async def test_events_several_to_a_chunk_and_multiline_data() -> None:
    """One chunk may carry several events, and an event's data may span lines."""
    body = (b"event: subscribed\ndata: {\"type\":\"subscribed\",\ndata: \"cursor\":\"1@e\"}\n\n"
            b": ping\n\nevent: availability:updated\nid: 2@e\ndata: {\"a\":1}\n\n")
    chunked = b"%x\r\n%b\r\n" % (len(body), body)
    got, sub, _ = await _read(HEAD + chunked, 5)
    assert got == [b'{"type":"subscribed",\n"cursor":"1@e"}', b'{"a":1}']
    assert sub.events == 2


async def test_a_resume_sends_last_event_id() -> None:
    """A stream opened with a cursor resumes from it: `Last-Event-ID: <cursor>`."""
    _, _, request = await _read(HEAD, 1 << 20, cursor="17@abc")
    assert b"\r\nLast-Event-ID: 17@abc\r\n" in request


@pytest.mark.parametrize(("response", "why"), [
    (b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
     "stream refused: HTTP/1.1 404"),
    (HEAD + b"0\r\n\r\n", "the server ended the stream"),
    (HEAD + b"zz\r\n", "malformed chunk size"),
    (HEAD + b"3\r\nabcXY", "malformed chunk end"),
])
async def test_refusals_and_ends_fail_the_subscriber(response: bytes, why: str) -> None:
    """A refused stream, one the server ends, or a broken chunk: the subscriber fails, and
    says why."""
    _, sub, _ = await _read(response, 1 << 20)
    assert sub.subscribed.done() and why in str(sub.subscribed.exception())
    assert sub.last_error is not None and why in str(sub.last_error)
