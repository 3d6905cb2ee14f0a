"""Closed sockets are freed when they close, by reference counting, not by a later collection.

A collection that never comes in time is what made memory follow the reconnect rate: the
objects of sockets frozen while open (gcwatch.py) stayed until a thaw. So these tests count
the server's per-socket objects after many connect-subscribe-close cycles with the
collector kept out of the way, and expect only the sockets still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

import pytest

from realtime.channels import gcwatch
from tests.channels.conftest import Live, World, client, start_live, stop_live
from tests.channels.sse_client import sse

# One object of each per socket, of the server side only (the test's clients have their own
# protocols and transports): ours, uvicorn's (its HTTP protocol too, which read the upgrade
# request) and websockets'.
PER_SOCKET = ("Connection", "SseStream", "Subscriber", "SocketProtocol", "ServerProtocol",
              "HttpToolsProtocol", "RequestResponseCycle")
SERVER_MODULES = ("realtime.", "uvicorn.", "websockets.server")
CYCLES = 120
AT_ONCE = 12
OPEN = 3


def per_socket_objects() -> Counter[str]:
    """The server's per-socket objects alive in this process, frozen ones included."""
    gc.unfreeze()  # gc.get_objects() does not list the frozen generation
    return Counter(type(o).__name__ for o in gc.get_objects()
                   if type(o).__name__ in PER_SOCKET
                   and type(o).__module__.startswith(SERVER_MODULES))


@pytest.fixture
def collector_out_of_the_way(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No automatic collection, and none from the server's own policy, while the test runs."""
    monkeypatch.setattr(gcwatch, "FREEZE_AFTER_OPENED", 10**9)
    monkeypatch.setattr(gcwatch, "THAW_AFTER_CLOSED", 10**9)
    monkeypatch.setattr(gcwatch, "THAW_AFTER_FREEZES", 10**9)
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """Fails if any garbage collection ran inside: the counts would prove nothing."""
    ran: list[object] = []

    def count(phase: str, info: dict[str, object]) -> None:
        if phase == "start":
            ran.append(info["generation"])

    gc.callbacks.append(count)
    try:
        yield
    finally:
        gc.callbacks.remove(count)
    assert ran == [], f"collections of generations {ran} ran"


async def settled(live: Live, sockets: int) -> None:
    """Until the server holds exactly `sockets` connections and their tasks, and the hub no
    newcomers (subscribers owed a presence count, kept until the next presence tick)."""
    state = live.server.server_state
    for _ in range(400):
        if (len(live.runtime.connections) == sockets and len(state.connections) == sockets
                and len(state.tasks) == sockets and not live.runtime.hub._newcomers):
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"the server still holds {len(live.runtime.connections)} connections "
                         f"and {len(state.tasks)} tasks, expected {sockets}")


async def counted_around(live: Live, channel: str, cycle: Callable[[], Awaitable[None]],
                         cycles: int) -> tuple[Counter[str], Counter[str]]:
    """The per-socket objects with OPEN subscribers open, before and after `cycles` runs of
    `cycle` (AT_ONCE at a time), with no collection in between."""
    async with client(live.ws_url) as a, client(live.ws_url) as b, client(live.ws_url) as c:
        for stay in (a, b, c):
            await stay.subscribe(channel)
        await settled(live, OPEN)
        gc.collect()
        before = per_socket_objects()
        with no_collection():
            gc.freeze()  # as the server's policy does with open sockets' objects
            for _ in range(cycles // AT_ONCE):
                await asyncio.gather(*(cycle() for _ in range(AT_ONCE)))
            await settled(live, OPEN)
            after = per_socket_objects()
        await a.send(type="ping", id="p")
        await a.expect("pong", id="p")
    return before, after


async def test_closed_sockets_are_freed_without_a_collection(
        database_url: str, world: World, collector_out_of_the_way: None) -> None:
    """After 120 connect-subscribe-close cycles (12 at a time) beside 3 open subscribers,
    the server holds the objects of 3 sockets, with no garbage collection having run."""
    live = await start_live(database_url)
    channel = f"service:{world.services[0]}"

    async def cycle() -> None:
        async with client(live.ws_url) as c:
            await c.subscribe(channel)

    try:
        before, after = await counted_around(live, channel, cycle, CYCLES)
        assert after == before, after - before
        assert after["Connection"] == OPEN and after["SocketProtocol"] == OPEN
        assert after["Subscriber"] == OPEN and after["ServerProtocol"] == OPEN
    finally:
        await stop_live(live)


async def test_closed_event_streams_are_freed_without_a_collection(
        database_url: str, world: World, collector_out_of_the_way: None) -> None:
    """The same for Server-Sent Events: after 60 streams opened, subscribed and closed (12
    at a time) beside 3 open subscribers, the server holds the objects of 3 sockets."""
    live = await start_live(database_url)
    channel = f"service:{world.services[0]}"

    async def cycle() -> None:
        async with sse(live.port, f"channel={channel}") as stream:
            assert (await stream.next()).event == "subscribed"

    try:
        before, after = await counted_around(live, channel, cycle, 60)
        assert after == before, after - before
        assert after["SseStream"] == 0 and after["Subscriber"] == OPEN
    finally:
        await stop_live(live)


async def test_refused_sockets_and_streams_are_freed_without_a_collection(
        database_url: str, world: World, collector_out_of_the_way: None) -> None:
    """Sockets and streams refused at once (over REALTIME_MAX_SOCKETS_PER_ADDRESS, here held
    by the 3 open subscribers, or from a foreign origin) leave nothing for a collection: a
    flood of them costs no memory once they are gone."""
    live = await start_live(database_url, max_sockets_per_address=OPEN)
    channel = f"service:{world.services[0]}"

    async def cycle() -> None:
        async with client(live.ws_url) as c:
            assert await c.closed() == 1013
        async with sse(live.port, f"channel={channel}") as stream:
            assert stream.status == 429

    async def foreign() -> None:  # from another address, which has places left
        async with client(live.ws_url, origin="http://evil.example",
                          local_addr=("127.0.0.2", 0)) as c:
            assert await c.closed() == 1008

    try:
        for refused in (cycle, foreign):
            before, after = await counted_around(live, channel, refused, 60)
            # The difference only: objects that earlier tests' servers left frozen may be
            # counted on both sides.
            assert after == before, after - before
    finally:
        await stop_live(live)
