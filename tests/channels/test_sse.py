"""Server-Sent Events at /sse: the WebSocket's frames as events, resumes, errors, slow readers."""

from __future__ import annotations

import asyncio
import time

import jwt
import orjson
import pytest

from realtime.channels.ssewire import ChunkWriter
from realtime.channels.writer import TRANSPORT_HIGH_WATER, WRITE_CHUNK
from tests.channels.conftest import Live, World, client, seed, start_live, stop_live
from tests.channels.sse_client import sse
from tests.channels.streams import book_stream


async def test_subscribed_then_every_update_as_the_websocket_sends_it(live: Live,
                                                                      world: World) -> None:
    """A `subscribed` event per channel, then each update with its cursor as the id and the
    very same JSON a WebSocket subscriber gets."""
    svc = world.services[0]
    slot = world.slots[svc][0]["id"]
    query = f"channel=service:{svc}&channel=vendor:{world.vendor}"
    async with sse(live.port, query) as stream, client(live.ws_url) as ws:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        first = [await stream.next(), await stream.next()]
        assert [e.event for e in first] == ["subscribed", "subscribed"]
        assert {e.data["channel"] for e in first} == {f"service:{svc}", f"vendor:{world.vendor}"}
        assert all("snapshot" in e.data and e.id is None for e in first)
        await ws.subscribe(f"service:{svc}")
        await world.booking.book(slot, 1)
        over_ws = await ws.expect("availability:updated")
        got = [await stream.next(), await stream.next()]
    by_channel = {e.data["channel"]: e for e in got}
    update = by_channel[f"service:{svc}"]
    assert update.event == "availability:updated" and update.id == update.data["cursor"]
    assert update.data == over_ws
    assert by_channel[f"vendor:{world.vendor}"].data["slot"] == over_ws["slot"]


async def test_last_event_id_resumes_with_exactly_what_was_missed(live: Live,
                                                                  world: World) -> None:
    """Reconnecting with Last-Event-ID (as EventSource does) or ?since= gets exactly the
    events committed meanwhile, then the live stream."""
    svc = world.services[0]
    slots = [s["id"] for s in world.slots[svc]]
    async with sse(live.port, f"channel=service:{svc}") as stream:
        await stream.next()
        await world.booking.book(slots[0], 1)
        last = await stream.next()
    await book_stream(world.booking, slots, 4)
    for resume in ({"Last-Event-ID": last.id}, None):
        query = f"channel=service:{svc}" + ("" if resume else f"&since={last.id}")
        async with sse(live.port, query, headers=resume) as again:
            subscribed = await again.next()
            assert subscribed.event == "subscribed" and "snapshot" not in subscribed.data
            # What the server had read by then comes in the reply, the rest live after it.
            missed = list(subscribed.data["events"])
            while len(missed) < 4:
                missed.append((await again.next()).data)
        assert all(e["type"] == "availability:updated" for e in missed)
        positions = [int(e["cursor"].split("@")[0]) for e in missed]
        assert positions == sorted(set(positions)) and positions[0] > int(last.id.split("@")[0])


async def test_bad_requests_get_the_apis_errors(database_url: str, world: World) -> None:
    """Unknown channels are 404, bad parameters 422 naming them, a foreign origin 403, a bad
    token 401: JSON error bodies, no stream."""
    secret = "an-sse-secret-long-enough-for-hs256-tokens"
    live = await start_live(database_url, jwt_secret=secret, ws_max_subscriptions=2)
    svc = world.services[0]
    try:
        cases = {
            f"channel=service:{'0' * 8}-0000-0000-0000-{'0' * 12}": (404, "UNKNOWN_CHANNEL", None),
            "channel=room:1": (404, "UNKNOWN_CHANNEL", None),
            "": (422, "VALIDATION_ERROR", "channel"),
            f"channel=service:{svc}&from=yesterday": (422, "VALIDATION_ERROR", "from"),
            f"channel=service:{svc}&from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z":
                (422, "VALIDATION_ERROR", "to"),
            f"channel=service:{svc}&channel=vendor:{world.vendor}&channel=service:{world.services[1]}":
                (422, "VALIDATION_ERROR", "channel"),
            f"channel=service:{svc}&token=garbage": (401, "UNAUTHORIZED", None),
        }
        for query, (status, code, field) in cases.items():
            async with sse(live.port, query) as stream:
                assert stream.status == status, (query, stream.body)
                error = orjson.loads(stream.body)["error"]
                assert error["code"] == code, (query, error)
                if field:
                    assert error["field"] == field, (query, error)
        async with sse(live.port, f"channel=service:{svc}",
                       headers={"Origin": "https://evil.example"}) as stream:
            assert stream.status == 403
        token = jwt.encode({"sub": "ann", "exp": int(time.time()) + 60}, secret, algorithm="HS256")
        async with sse(live.port, f"channel=service:{svc}&token={token}") as stream:
            assert stream.status == 200 and (await stream.next()).event == "subscribed"
        async with sse(live.port, f"channel=service:{svc}",
                       headers={"Origin": f"http://127.0.0.1:{live.port}"}) as stream:
            assert stream.status == 200  # its own pages may
    finally:
        await stop_live(live)


async def test_a_reader_that_stops_reading_is_coalesced_then_ended(database_url: str) -> None:
    """A stream whose reader does not read falls behind: past a bounded transport buffer its
    outbox coalesces (to a frame per slot), then, owing more slots than its bound, the stream
    ends; other readers keep getting everything."""
    world = await seed(database_url, services=1, slots=40)
    # Coalesced at 8 frames, closed past 32 slots owed (of 40), bounded at 64 frames: a single
    # batch (two booking workers: a few events a drain) closes no reader that keeps up.
    live = await start_live(database_url, ws_send_queue=8)
    slots = [s["id"] for s in world.all_slots()]
    try:
        async with sse(live.port, f"channel=vendor:{world.vendor}", rcvbuf=2048) as slow, \
                sse(live.port, f"channel=vendor:{world.vendor}") as fast:
            await fast.next()
            local = slow.writer.get_extra_info("sockname")
            (stream,) = [c for c in live.runtime.connections
                         if c.writer.transport.get_extra_info("peername") == local]
            assert isinstance(stream.writer, ChunkWriter)  # written past ASGI, and bounded
            buffered = [0]

            async def sample() -> None:
                while True:
                    buffered.append(stream.writer.transport.get_write_buffer_size())
                    await asyncio.sleep(0.005)

            # The other reader reads all along (a reader that stops is what is under test).
            seen: list[str] = []

            async def read_fast() -> None:
                while True:
                    event = await fast.next(within=60)
                    if event.event == "availability:updated":
                        seen.append(event.data["slot"]["id"])

            sampler = asyncio.ensure_future(sample())
            reading = asyncio.ensure_future(read_fast())
            try:
                for _ in range(200):
                    await book_stream(world.booking, slots, 40, workers=2)
                    # Its own connection object: once closed it leaves `connections` at once.
                    if stream.sub.close_code == 1013:
                        break
                else:
                    pytest.fail("the slow reader was never closed")
                # The transport's high-water mark plus one write of WRITE_CHUNK events at most.
                assert 0 < max(buffered) <= TRANSPORT_HIGH_WATER + WRITE_CHUNK * 1024, max(buffered)
                assert await slow.ended(within=10)
                for _ in range(100):  # its write was stuck: it is dropped a couple of seconds later
                    if live.runtime.hub.subscribers(f"vendor:{world.vendor}") == 1:
                        break
                    await asyncio.sleep(0.1)
                assert live.runtime.hub.subscribers(f"vendor:{world.vendor}") == 1
                seen.clear()
                await world.booking.book(slots[0], 1)
                for _ in range(100):
                    if slots[0] in seen:
                        break
                    await asyncio.sleep(0.1)
                assert slots[0] in seen
            finally:
                sampler.cancel()
                reading.cancel()
    finally:
        await stop_live(live)
        await world.pool.close()


@pytest.mark.slow
async def test_a_comment_keeps_an_idle_stream_alive(live: Live, world: World) -> None:
    """With nothing to send, a `: ping` comment comes at least every 15 s."""
    async with sse(live.port, f"channel=service:{world.services[0]}") as stream:
        await stream.next()
        started = time.monotonic()
        ping = await stream.next(within=20, comments=True)
    assert ping.comment == "ping" and time.monotonic() - started < 16.5
