"""The fan-out floor for bench/fanout.py: a bare websockets server (`websockets.broadcast()`,
uvloop, compression off) broadcasting one frame to every subscriber, back to back."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
from typing import Any

from .cpu import proc_rss_kib
from .net import free_port
from .subscribers import Workers


def floor_main(port: int, pipe: Any) -> None:
    import uvloop

    uvloop.install()
    asyncio.run(_floor(port, pipe))


async def _floor(port: int, pipe: Any) -> None:
    import logging

    from websockets.asyncio.server import broadcast, serve

    logging.getLogger("websockets").setLevel(logging.CRITICAL)  # aborted clients at the end

    conns: set[Any] = set()

    async def handler(ws: Any) -> None:
        conns.add(ws)
        try:
            async for _ in ws:
                # Answer a subscribe like the real server would, so clients count it.
                await ws.send('{"type":"subscribed"}')
        finally:
            conns.discard(ws)

    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=16,
                     ping_interval=None):
        loop = asyncio.get_running_loop()
        pipe.send("ready")
        while True:
            cmd, *args = await loop.run_in_executor(None, pipe.recv)
            if cmd == "broadcast":
                frame, seconds, rate = args
                sent = 0
                start = loop.time()
                end = start + seconds
                targets = list(conns)
                in_broadcast = 0.0
                rounds = 0
                while loop.time() < end:
                    if rate:
                        await asyncio.sleep(max(0.0, start + rounds / rate - loop.time()))
                    t0 = time.perf_counter()
                    if os.environ.get("FLOOR_PROFILE") and rounds == 5:
                        import cProfile
                        import pstats

                        prof = cProfile.Profile()
                        prof.runcall(broadcast, targets, frame)
                        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
                    else:
                        broadcast(targets, frame)
                    in_broadcast += time.perf_counter() - t0
                    sent += len(targets)
                    rounds += 1
                    await asyncio.sleep(0)
                    # Keep its buffers bounded as the real server does (else it only measures
                    # how fast memory fills): wait while any socket owes more than 64 KiB.
                    while any(ws.transport.get_write_buffer_size() > 65536  # noqa: ASYNC110
                              for ws in targets):
                        await asyncio.sleep(0.0005)
                print("floor: broadcast() busy", round(in_broadcast, 2), "of", seconds, "s",
                      flush=True)
                pipe.send(sent)
            elif cmd == "exit":
                pipe.send(True)
                return


def floor_phase(subscribers: int, seconds: float, frame: str, rate: float = 0) -> dict[str, Any]:
    """Frames/s the floor delivers to `subscribers` sockets in `seconds` (`rate`: broadcasts
    per second, 0 for back to back), counted at the subscribers."""
    ctx = mp.get_context("spawn")
    port = free_port()
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=floor_main, args=(port, child), daemon=True)
    proc.start()
    assert parent.recv() == "ready"
    workers = Workers(port, "/")
    try:
        workers.call("open", "x", split=subscribers)
        mem = proc_rss_kib(proc.pid or 0) * 1024
        before = sum(workers.call("frames"))
        started = time.monotonic()
        parent.send(("broadcast", frame, seconds, rate))
        sent = parent.recv()
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        after = sum(workers.call("frames"))
        return {"subscribers": subscribers, "seconds": round(elapsed, 1), "sent": sent,
                "frames": after - before, "frames_per_s": round((after - before) / elapsed),
                "rss_mib": round(mem / 2**20, 1)}
    finally:
        workers.stop()
        parent.send(("exit",))
        proc.join(5)
        if proc.is_alive():
            proc.kill()
