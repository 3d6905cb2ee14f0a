"""Graceful shutdown of a real `realtime serve` process."""

from __future__ import annotations

import asyncio
import signal
import time

from tests.channels.conftest import World, client
from tests.support.server import ServerProcess


async def test_sigterm_closes_sockets_with_1001_within_10s(server: ServerProcess,
                                                           world: World) -> None:
    """On SIGTERM every subscriber sees 1001 (not 1006 or 1012) and the process exits in 10 s."""
    clients = [client(server.ws_url) for _ in range(5)]
    conns = [await c.__aenter__() for c in clients]
    try:
        for i, c in enumerate(conns):
            await c.subscribe(f"service:{world.services[i % 2]}")
        assert server.proc is not None
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(c.closed(within=10) for c in conns))
        assert codes == [1001] * len(conns)
        assert time.monotonic() - started < 10
        left = 10 - (time.monotonic() - started)
        await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, max(left, 0.1))
        assert time.monotonic() - started < 10
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)
