"""The cap on open sockets per client address (REALTIME_MAX_SOCKETS_PER_ADDRESS): `/ws` and
`/sse` together, over real sockets from two loopback addresses (127.0.0.1 and 127.0.0.2)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import httpx
import orjson

from tests.channels.conftest import Client, Live, World, client, start_live, stop_live
from tests.channels.sse_client import sse

CAP = 2
OTHER = "127.0.0.2"


async def _refused(live: Live, door: str) -> float:
    """realtime_sockets_refused_total{door=...} as /metrics shows it (0 before the first)."""
    async with httpx.AsyncClient(base_url=live.url) as http:
        text = (await http.get("/metrics")).text
    found = re.search(rf'^realtime_sockets_refused_total{{door="{door}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def _alive(c: Client) -> None:
    await c.send(type="ping", id="p")
    await c.expect("pong", id="p")


async def _held(live: Live, address: str, count: int) -> None:
    """Wait until the server counts `count` sockets for the address (a close is seen by the
    server a moment after the client's)."""
    for _ in range(200):
        if live.runtime.sockets.held(address) == count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{address} holds {live.runtime.sockets.held(address)}, not {count}")


@contextlib.asynccontextmanager
async def _socket(live: Live, source: str = "127.0.0.1") -> AsyncIterator[Client]:
    async with client(live.ws_url, local_addr=(source, 0)) as c:
        yield c


async def test_the_cap_refuses_the_next_socket_frees_on_close_and_spares_others(
        database_url: str, world: World) -> None:
    """With a cap of 2: a third /ws from one address is closed with 1013 and a reason, a
    /sse from it is 429 RATE_LIMITED with Retry-After; closing one socket frees a place;
    127.0.0.2 is unaffected; the refusals are counted in /metrics by door."""
    live = await start_live(database_url, max_sockets_per_address=CAP)
    channel = f"channel=service:{world.services[0]}"
    try:
        ws_before, sse_before = await _refused(live, "ws"), await _refused(live, "sse")
        async with _socket(live) as first, _socket(live) as second:
            await _alive(first)
            await _alive(second)
            async with _socket(live) as third:
                assert await third.closed() == 1013
                assert "too many open sockets from this address" in third.ws.close_reason
            async with sse(live.port, channel) as stream:
                assert stream.status == 429
                assert stream.headers["retry-after"] == "5"
                error = orjson.loads(stream.body)["error"]
                assert error["code"] == "RATE_LIMITED" and "at most 2" in error["message"]
            # Another address has its own places, for either door.
            async with _socket(live, OTHER) as other, sse(live.port, channel,
                                                          source=OTHER) as stream:
                await _alive(other)
                assert stream.status == 200 and (await stream.next()).event == "subscribed"
                async with _socket(live, OTHER) as over:
                    assert await over.closed() == 1013
            await _alive(first)  # the refusals touched nothing already open
            await second.aclose()
            await _held(live, "127.0.0.1", 1)
            async with _socket(live) as again:
                await _alive(again)
        await _held(live, "127.0.0.1", 0)
        assert len(live.runtime.sockets) == 0  # no address is kept once its sockets are gone
        assert await _refused(live, "ws") == ws_before + 2
        assert await _refused(live, "sse") == sse_before + 1
    finally:
        await stop_live(live)


async def test_an_sse_stream_holds_a_place_until_it_ends(database_url: str, world: World) -> None:
    """A /sse stream counts against the same cap as sockets: with a cap of 1, a /ws beside it
    is refused, and once the stream is closed the /ws opens."""
    live = await start_live(database_url, max_sockets_per_address=1)
    try:
        async with sse(live.port, f"channel=service:{world.services[0]}") as stream:
            assert stream.status == 200 and (await stream.next()).event == "subscribed"
            async with _socket(live) as refused:
                assert await refused.closed() == 1013
        await _held(live, "127.0.0.1", 0)
        async with _socket(live) as c:
            await _alive(c)
    finally:
        await stop_live(live)


async def test_no_cap_by_default(live: Live) -> None:
    """Unset (0), nothing is counted: many sockets from one address all open."""
    assert live.runtime.sockets.limit == 0
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(_socket(live)) for _ in range(8)]
        for c in clients:
            await _alive(c)
        assert len(live.runtime.sockets) == 0
