"""Server-Sent Events written past ASGI: which writer a stream gets, and that the direct one
(chunks straight into uvicorn's httptools transport, threaded bulk writes) is exact.

The direct writer depends on uvicorn's internals (see realtime/channels/ssewire.py). When an
upgrade changes them, streams quietly fall back to ASGI send, correct but slower; the canaries
here are what notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from realtime.channels import ssewire
from realtime.channels.sse import SseStream
from realtime.channels.ssewire import AsgiChunkWriter, ChunkWriter, chunk_for
from realtime.channels.writer import PARALLEL_MIN, Sent, versions
from realtime.loadtest.sseclient import SseSubscriber
from tests.channels.conftest import Live, World, start_live, stop_live
from tests.channels.crowd import book_over_http
from tests.channels.sse_client import sse
from tests.support.server import ServerProcess
from tests.support.tls import self_signed

FELL_BACK = "Server-Sent Events go through ASGI send"
CROWD = max(300, PARALLEL_MIN + 1)


def fell_back(why: str) -> str:
    return (f"the direct chunk writer did not attach to a plain SSE stream under the installed "
            f"{versions(ssewire.PACKAGES)}: the stream fell back to ASGI send ({why}). A uvicorn upgrade "
            f"changed what realtime/channels/ssewire.py relies on; re-verify it there.")


def streams(live: Live) -> list[SseStream]:
    return [c for c in live.runtime.connections if isinstance(c, SseStream)]


class Reader:
    """The messages of one SSE stream (the load tester's reader, on a real socket)."""

    def __init__(self, channel: str, host: str) -> None:
        self.got: list[dict[str, Any]] = []
        self.lost: Exception | None = None
        self.ended = False
        self.sub = SseSubscriber(channel=channel, host=host, path="/sse",
                                 on_message=self._message, on_lost=self._lost)

    def _message(self, sub: SseSubscriber, payload: bytes) -> None:
        msg = orjson.loads(payload)
        self.got.append(msg)
        if msg["type"] == "subscribed" and not sub.subscribed.done():
            sub.subscribed.set_result(None)

    def _lost(self, sub: SseSubscriber, exc: Exception | None) -> None:
        self.ended, self.lost = True, exc

    def versions(self, slot: str) -> list[int]:
        return [m["slot"]["version"] for m in self.got
                if m["type"] == "availability:updated" and m["slot"]["id"] == slot]

    def snapshot_version(self, slot: str) -> int:
        snap = next(m for m in self.got if m["type"] == "subscribed")["snapshot"]
        return int(next(s["version"] for s in snap["slots"] if s["id"] == slot))


@contextlib.asynccontextmanager
async def readers(port: int, channel: str, n: int,
                  ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[list[Reader]]:
    """`n` streams of `channel`, each past its `subscribed` event, opened 50 at a time."""
    loop = asyncio.get_running_loop()
    opened: list[Reader] = []

    async def one() -> None:
        reader = Reader(channel, f"127.0.0.1:{port}")
        opened.append(reader)
        await loop.create_connection(lambda: reader.sub, "127.0.0.1", port, ssl=ssl_context)
        await asyncio.wait_for(reader.sub.subscribed, 30)

    try:
        for start in range(0, n, 50):
            await asyncio.gather(*(one() for _ in range(min(50, n - start))))
        yield opened
    finally:
        for reader in opened:
            reader.sub.close()


async def every_update_in_order(group: list[Reader], slot: str, start: int, count: int) -> None:
    """Each reader got versions start+1..start+count of the slot, once each, in order, and its
    stream is still open."""
    expected = list(range(start + 1, start + count + 1))
    for _ in range(600):
        if all(len(r.versions(slot)) >= count or r.ended for r in group):
            break
        await asyncio.sleep(0.05)
    wrong = {i: r.versions(slot) for i, r in enumerate(group) if r.versions(slot) != expected}
    assert not wrong, (f"{len(wrong)} of {len(group)} streams did not get {expected} in order: "
                       f"{dict(list(wrong.items())[:5])}")
    ended = [r.lost for r in group if r.ended]
    assert not ended, f"{len(ended)} streams ended: {ended[:3]}"


async def test_plain_stream_gets_the_chunk_writer(live: Live, world: World) -> None:
    """Canary: under the installed uvicorn, a plain SSE stream is written directly."""
    async with sse(live.port, f"channel=service:{world.services[0]}") as stream:
        assert (await stream.next()).event == "subscribed"
        (found,) = streams(live)
        assert isinstance(found.writer, ChunkWriter), fell_back(found.writer.reason)
        assert found.writer.fd == found.writer.transport.get_extra_info("socket").fileno()


async def test_the_served_process_writes_plain_streams_directly(server: ServerProcess,
                                                                world: World) -> None:
    """Canary on `realtime serve` itself (uvloop, httptools): a stream gets its update and the
    process never fell back to ASGI send."""
    svc = world.services[0]
    slot = world.slots[svc][0]["id"]
    async with readers(server.port, f"service:{svc}", 1) as (reader,):
        start = reader.snapshot_version(slot)
        await book_over_http(server.url, slot, 2)
        await every_update_in_order([reader], slot, start, 2)
    log = server.log_path.read_text()
    reasons = [line for line in log.splitlines() if FELL_BACK in line]
    assert not reasons, fell_back("; ".join(reasons))


@pytest.mark.slow
async def test_hundreds_of_streams_get_every_update_through_bulk_writes(live: Live,
                                                                        world: World) -> None:
    """300 streams of one channel: each dispatch goes out through the threaded bulk writes,
    none through ASGI send, and every stream gets every update, once, in order."""
    svc = world.services[0]
    slot = world.slots[svc][2]["id"]
    async with readers(live.port, f"service:{svc}", CROWD) as group:
        assert all(isinstance(s.writer, ChunkWriter) for s in streams(live))
        start = group[0].snapshot_version(slot)
        bulk, asgi = Sent.sse_bulk, Sent.sse
        await book_over_http(live.url, slot, 5)
        await every_update_in_order(group, slot, start, 5)
        assert Sent.sse_bulk - bulk >= 5 * CROWD
        assert Sent.sse == asgi


async def test_a_drained_stream_ends_with_a_well_formed_last_chunk(database_url: str,
                                                                   world: World) -> None:
    """Chunks written directly and the server's own last chunk interleave: when the server
    drains, the stream's body is well-formed chunks, every update in order, then `0\\r\\n\\r\\n`
    and nothing after it."""
    live = await start_live(database_url)
    svc = world.services[1]
    slot = world.slots[svc][0]["id"]
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    try:
        writer.write(f"GET /sse?channel=service:{svc} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b"transfer-encoding: chunked" in head.lower()
        for _ in range(100):
            if streams(live):
                break
            await asyncio.sleep(0.02)
        assert isinstance(streams(live)[0].writer, ChunkWriter)
        await book_over_http(live.url, slot, 3)
        for _ in range(100):
            if Sent.sse_direct and not streams(live)[0].sub.frames:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        # What `realtime serve` does first on SIGTERM: every stream ends, through ASGI send.
        await live.runtime.drain()
        body = await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), 10)
        with pytest.raises(TimeoutError):  # and nothing after it
            await asyncio.wait_for(reader.read(1), 0.3)
    finally:
        writer.close()
        await stop_live(live)
    events, pos = [], 0
    while True:
        line_end = body.index(b"\r\n", pos)
        size = int(body[pos:line_end], 16)
        chunk = body[line_end + 2:line_end + 2 + size]
        assert body[line_end + 2 + size:line_end + 4 + size] == b"\r\n"
        pos = line_end + 4 + size
        if size == 0:
            break
        events += [e for e in chunk.split(b"\n\n") if e]
    assert pos == len(body), body[pos:]
    updates = [orjson.loads(e.split(b"data: ", 1)[1]) for e in events
               if e.startswith(b"event: availability:updated")]
    assert [u["slot"]["id"] for u in updates] == [slot] * 3
    versions = [u["slot"]["version"] for u in updates]
    assert versions == list(range(versions[0], versions[0] + 3))


@pytest.mark.slow
async def test_tls_streams_go_through_asgi(database_url: str, world: World,
                                           tmp_path: Path) -> None:
    """Over TLS, 300 streams of one channel (enough for bulk writes) are written through ASGI
    send, never directly or from threads, and each gets every update in order."""
    cert, key = self_signed(tmp_path)
    live = await start_live(database_url, uvicorn_options={
        "ssl_certfile": str(cert), "ssl_keyfile": str(key)})
    trust = ssl.create_default_context(cafile=str(cert))
    svc = world.services[0]
    slot = world.slots[svc][1]["id"]
    try:
        async with readers(live.port, f"service:{svc}", CROWD, ssl_context=trust) as group:
            found = streams(live)
            assert len(found) == CROWD
            assert all(isinstance(s.writer, AsgiChunkWriter) and s.writer.reason == "TLS"
                       for s in found)
            start = group[0].snapshot_version(slot)
            direct, bulk = Sent.sse_direct, Sent.sse_bulk
            await book_over_http(f"https://127.0.0.1:{live.port}", slot, 3, verify=trust)
            await every_update_in_order(group, slot, start, 3)
            assert (Sent.sse_direct, Sent.sse_bulk) == (direct, bulk)
    finally:
        await stop_live(live)


async def test_h11_streams_go_through_asgi(database_url: str, world: World) -> None:
    """Under uvicorn's h11 protocol (which frames bodies in its own state machine) a stream is
    written through ASGI send, and gets its updates in order."""
    live = await start_live(database_url, uvicorn_options={"http": "h11"})
    svc = world.services[0]
    slot = world.slots[svc][0]["id"]
    try:
        async with readers(live.port, f"service:{svc}", 2) as group:
            (found, _) = streams(live)
            assert isinstance(found.writer, AsgiChunkWriter)
            assert "h11" in found.writer.reason
            start = group[0].snapshot_version(slot)
            await book_over_http(live.url, slot, 3)
            await every_update_in_order(group, slot, start, 3)
    finally:
        await stop_live(live)


def test_chunks_are_cached_for_a_whole_dispatch() -> None:
    """Every stream walks a dispatch's frames in the same order: a dispatch of a full listener
    batch (2 frames per event, 1,000 events) stays cached for the next stream; an event-less
    frame is no chunk at all (a zero-length chunk would end the body)."""
    frames = [orjson.dumps({"type": "availability:updated", "cursor": f"{i}@e", "n": i})
              for i in range(2000)]
    first = [chunk_for(f) for f in frames]
    assert first[7] == b"%x\r\n%b\r\n" % (len(ssewire.event_for(frames[7])),
                                          ssewire.event_for(frames[7]))
    assert all(chunk_for(f) is c for f, c in zip(frames, first, strict=True))
    assert chunk_for(orjson.dumps({"type": "presence", "count": 1})) == b""


async def test_a_head_request_gets_the_asgi_writer(live: Live, world: World) -> None:
    """HEAD has no body to chunk: the stream is answered with headers only, and is given the
    ASGI writer, which writes nothing the server would not."""
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    try:
        writer.write(f"HEAD /sse?channel=service:{world.services[0]} HTTP/1.1\r\n"
                     f"Host: x\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
        for _ in range(100):
            if streams(live):
                break
            await asyncio.sleep(0.02)
        (found,) = streams(live)
        assert isinstance(found.writer, AsgiChunkWriter) and "HEAD" in found.writer.reason
        with pytest.raises(TimeoutError):  # no body at all, not even a chunk
            await asyncio.wait_for(reader.read(1), 0.3)
    finally:
        writer.close()
