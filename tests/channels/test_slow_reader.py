"""A subscriber that stops reading: bounded on the server, and nobody else waits for it."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import orjson
import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from realtime.channels import metrics
from tests.channels.conftest import World, client, start_live, stop_live
from tests.channels.streams import Collector, book_stream, slot_versions

QUEUE = 16


async def stalled_subscriber(port: int, channel: str) -> ClientConnection:
    """Subscribes, then never reads: a tiny receive buffer makes TCP push back at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    ws = await connect(f"ws://127.0.0.1:{port}/ws", sock=sock, max_queue=1, compression=None)
    await ws.send(orjson.dumps({"type": "subscribe", "channel": channel}).decode())
    while orjson.loads(await ws.recv())["type"] != "subscribed":
        pass
    return ws


async def read_rest(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    got = []
    try:
        while True:
            got.append(orjson.loads(await asyncio.wait_for(ws.recv(), 2)))
    except ConnectionClosed:
        pass
    except TimeoutError:
        await ws.close()
        return got, None
    return got, ws.close_code


def coalesced() -> float:
    return metrics.FRAMES_COALESCED._value.get()


async def test_stalled_reader_neither_delays_others_nor_grows(database_url: str,
                                                              world: World) -> None:
    """Stalled readers stay bounded (coalesced, or closed 1013); a reader beside them gets all."""
    live = await start_live(database_url, ws_send_queue=QUEUE)
    hot_service, wide_service = world.services
    wide = await world.booking.create_slots(wide_service, [
        {"starts_at": f"2030-03-01T{h:02d}:{m:02d}:00Z",
         "ends_at": f"2030-03-01T{h:02d}:{m + 5:02d}:00Z",
         "capacity": 1000} for h in range(24) for m in (0, 10, 20, 30, 40, 50)])
    hot_ids = [s["id"] for s in world.slots[hot_service]]
    wide_ids = [s["id"] for s in wide["slots"]]
    process = psutil.Process(os.getpid())
    try:
        stalled_hot = await stalled_subscriber(live.port, f"service:{hot_service}")
        stalled_all = await stalled_subscriber(live.port, f"vendor:{world.vendor}")
        coalesced_before = coalesced()
        rss_before = process.memory_info().rss
        async with client(live.ws_url) as fast:
            col = Collector(fast)
            await fast.subscribe(f"vendor:{world.vendor}")
            longest = 0
            sampling = True

            async def sample() -> None:
                nonlocal longest
                while sampling:
                    for conn in list(live.runtime.connections):
                        longest = max(longest, len(conn.sub))
                    await asyncio.sleep(0.005)

            sampler = asyncio.create_task(sample())
            await asyncio.gather(book_stream(world.booking, hot_ids, 1500, workers=6),
                                 book_stream(world.booking, wide_ids, 600, workers=3))
            final = await slot_versions(world.pool)
            ended = asyncio.get_running_loop().time()
            wanted = {s: v for s, v in final.items() if s in set(hot_ids) | set(wide_ids)}
            await col.wait_for(f"vendor:{world.vendor}", wanted, within=10)
            lag = asyncio.get_running_loop().time() - ended
            sampling = False
            await sampler
            col.assert_complete(f"vendor:{world.vendor}", wanted)
        assert lag < 2.0, f"the reader beside the stalled ones lagged {lag:.2f}s"
        assert longest <= 8 * QUEUE, longest  # the hard bound (see hub.Subscriber)
        assert coalesced() > coalesced_before
        assert process.memory_info().rss - rss_before < 64 * 1024 * 1024
        # The one owing more distinct slots than its bound was let go by the server, though it
        # never read again (its close frame could not get through); it resumes by cursor.
        for _ in range(200):
            if len(live.runtime.connections) <= 1:
                break
            await asyncio.sleep(0.05)
        assert len(live.runtime.connections) == 1
        _, code = await read_rest(stalled_all)
        assert code in (1013, 1006), code
        # The one on three hot slots was coalesced: what it reads ends at the newest state.
        got, code = await read_rest(stalled_hot)
        assert code is None
        newest: dict[str, int] = {}
        for msg in got:
            if msg["type"] == "availability:updated":
                newest[msg["slot"]["id"]] = msg["slot"]["version"]
        assert newest == {s: final[s] for s in hot_ids}
        print("hot got", len(got), "lag", lag, "longest", longest)
        assert len(got) < 1500
    finally:
        await stop_live(live)
