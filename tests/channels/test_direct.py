"""The frame writers: which one a connection gets, and that the direct one is exact.

The direct writer depends on uvicorn's internals (see realtime/channels/writer.py). When an
upgrade changes them, the server quietly falls back to ASGI send, correct but slower; the
canaries here are what notice.
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop
from websockets.protocol import State
from websockets.server import ServerProtocol

from realtime.channels import writer
from realtime.channels.writer import AsgiWriter, DirectWriter, framed, plain_socket
from tests.channels.conftest import Live, World, client, start_live, stop_live
from tests.channels.crowd import assert_every_update_intact, book_over_http, crowd, snapshot_version
from tests.support.server import ServerProcess
from tests.support.tls import self_signed

FELL_BACK = "WebSocket frames go through ASGI send"


def fell_back(why: str) -> str:
    return (f"the direct frame writer did not attach to a plain ws connection under the "
            f"installed {writer.versions()}: the server fell back to ASGI send ({why}). "
            f"A uvicorn or websockets upgrade changed what realtime/channels/writer.py relies "
            f"on; re-verify it there.")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_framed_matches_websockets(size: int) -> None:
    """A prebuilt text frame is byte for byte what websockets' send_text produces."""
    proto = ServerProtocol()
    proto.state = State.OPEN
    payload = ("é" * size).encode()[:size] if size % 2 == 0 else b"x" * size
    proto.send_text(payload)
    assert framed(payload) == b"".join(proto.data_to_send())


def test_framed_cache_is_by_identity() -> None:
    """Two equal payloads that are different objects are never confused by the cache."""
    a = b'{"a":1}'
    b = bytes(bytearray(b'{"a":2}'))
    assert framed(a) != framed(b)
    assert framed(a) is framed(a)


async def test_plain_ws_gets_the_direct_writer(live: Live, world: World) -> None:
    """Canary: under the installed uvicorn, a plain ws connection is written directly."""
    async with client(live.ws_url) as c:
        await c.subscribe(f"service:{world.services[0]}")
        (conn,) = live.runtime.connections
        assert isinstance(conn.writer, DirectWriter), fell_back(conn.writer.reason)
        assert conn.writer.fd == conn.writer.transport.get_extra_info("socket").fileno()


async def test_the_served_process_writes_plain_ws_directly(server: ServerProcess,
                                                           world: World) -> None:
    """Canary on `realtime serve` itself (uvloop): a plain ws subscriber gets its update and
    the process never fell back to ASGI send."""
    svc = world.services[0]
    slot = world.slots[svc][0]["id"]
    async with client(server.ws_url) as c:
        snap = await c.subscribe(f"service:{svc}")
        version = {s["id"]: s["version"] for s in snap["snapshot"]["slots"]}[slot]
        await book_over_http(server.url, slot, 1)
        assert (await c.expect("availability:updated"))["slot"]["version"] == version + 1
    log = server.log_path.read_text()
    reasons = [line for line in log.splitlines() if FELL_BACK in line]
    assert not reasons, fell_back("; ".join(reasons))


def _serve_and_connect(loop: asyncio.AbstractEventLoop, tls: tuple[Path, Path] | None,
                       check: Callable[[asyncio.BaseTransport], object]) -> object:
    """`check` applied to the server side of one real connection on `loop`."""
    got: asyncio.Future[object] = loop.create_future()

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if not got.done():
                got.set_result(check(transport))

    async def run() -> object:
        server_ctx = client_ctx = None
        if tls is not None:
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(*tls)
            client_ctx = ssl.create_default_context(cafile=str(tls[0]))
        server = await loop.create_server(Protocol, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port,
                                                    ssl=client_ctx)
        try:
            return await asyncio.wait_for(got, 10)
        finally:
            transport.close()
            server.close()
            await server.wait_closed()

    return loop.run_until_complete(run())


@pytest.mark.parametrize("loop_factory", [asyncio.SelectorEventLoop, uvloop.new_event_loop],
                         ids=["asyncio", "uvloop"])
def test_only_plain_tcp_transports_allow_writes_past_them(loop_factory: Callable[[], asyncio.AbstractEventLoop],
                                                         tmp_path: Path) -> None:
    """On both event loops the server uses, a plain TCP transport yields its socket and a TLS
    one (whose reported socket is the raw TCP one) does not."""
    tls = self_signed(tmp_path)
    loop = loop_factory()
    try:
        sock, why = _serve_and_connect(loop, None, plain_socket)
        assert sock is not None and sock.type == socket.SOCK_STREAM, why
        raw, why = _serve_and_connect(loop, tls, lambda t: (
            t.get_extra_info("socket"), plain_socket(t)))
        assert raw is not None, "the TLS transport reports its raw socket"
        assert why == (None, "TLS")
    finally:
        loop.close()


@pytest.mark.slow
async def test_hundreds_of_plain_subscribers_get_bulk_writes(live: Live, world: World) -> None:
    """300 plain ws subscribers of one channel: each dispatch goes out through the threaded
    bulk writes, and every subscriber gets every update intact."""
    svc = world.services[0]
    slot = world.slots[svc][1]["id"]
    channel = f"service:{svc}"
    async with crowd(live.ws_url, channel) as clients:
        assert all(isinstance(conn.writer, DirectWriter) for conn in live.runtime.connections)
        start = snapshot_version(clients[0], channel, slot)
        bulk, asgi = writer.Sent.bulk, writer.Sent.asgi
        await book_over_http(live.url, slot, 5)
        await assert_every_update_intact(clients, channel, slot, start, 5)
        assert writer.Sent.bulk - bulk >= 5 * len(clients)
        assert writer.Sent.asgi == asgi


@pytest.mark.slow
async def test_a_batch_of_several_chunks_goes_out_in_bulk(live: Live, world: World) -> None:
    """A dispatch of 3 chunks' worth of events to 300 readers that keep up is written whole
    through bulk writes, none left to writer tasks (which lagged into coalescing)."""
    svc = world.services[0]
    slot = world.slots[svc][2]["id"]
    channel = f"service:{svc}"
    count = 3 * writer.WRITE_CHUNK
    async with crowd(live.ws_url, channel) as clients:
        start = snapshot_version(clients[0], channel, slot)
        bulk = writer.Sent.bulk
        # One transaction: its events are numbered, read and dispatched as one batch.
        async with world.pool.acquire() as conn, conn.transaction():
            for _ in range(count):
                await conn.fetchval("SELECT rt_book($1::uuid, 1, NULL, NULL, NULL, '', NULL, NULL)",
                                    slot)
        await assert_every_update_intact(clients, channel, slot, start, count)
        assert writer.Sent.bulk - bulk == count * len(clients)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:The `websockets` implementation")
@pytest.mark.parametrize("impl", ["websockets", "wsproto"])
async def test_other_uvicorn_websocket_implementations(database_url: str, world: World,
                                                       impl: str) -> None:
    """Under other uvicorn WebSocket implementations the ASGI writer delivers the same frames."""
    importlib.import_module(impl)  # a dev dependency: missing is a failure, not a skip
    live = await start_live(database_url, ws=impl)
    svc = world.services[0]
    slot = world.slots[svc][0]["id"]
    try:
        async with client(live.ws_url) as c:
            snap = await c.subscribe(f"service:{svc}")
            version = {s["id"]: s["version"] for s in snap["snapshot"]["slots"]}[slot]
            (conn,) = live.runtime.connections
            assert isinstance(conn.writer, AsgiWriter)
            assert "not uvicorn's websockets-sansio" in conn.writer.reason
            await c.ws.send("junk")
            assert (await c.expect("error"))["error"]["code"] == "BAD_MESSAGE"
            await c.send(type="book", id="b", slot_id=slot)
            got = await c.expect_unordered("result", "availability:updated")
            assert got["result"]["id"] == "b" and got["result"]["ok"] is True
            assert got["availability:updated"]["slot"]["version"] == version + 1
            for _ in range(3):
                await world.booking.book(slot, 1)
            got = [(await c.expect("availability:updated"))["slot"]["version"] for _ in range(3)]
            assert got == [version + 2, version + 3, version + 4]
    finally:
        await stop_live(live)


async def test_compression_if_enabled_uses_the_asgi_writer(database_url: str, world: World) -> None:
    """With permessage-deflate negotiated, frames cannot be prebuilt: the ASGI writer serves."""
    live = await start_live(database_url, deflate=True)
    svc = world.services[0]
    slot = world.slots[svc][0]["id"]
    try:
        async with client(live.ws_url, compression="deflate") as c:
            snap = await c.subscribe(f"service:{svc}")
            version = {s["id"]: s["version"] for s in snap["snapshot"]["slots"]}[slot]
            (conn,) = live.runtime.connections
            assert isinstance(conn.writer, AsgiWriter) and "extension" in conn.writer.reason
            await world.booking.book(slot, 1)
            assert (await c.expect("availability:updated"))["slot"]["version"] == version + 1
    finally:
        await stop_live(live)
