"""Presence across two real server processes sharing one Redis."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from tests.booking.helpers import client_for, one_slot
from tests.support.server import ServerProcess

pytestmark = pytest.mark.redis


async def _presence(ws, want: int, within: float = 10.0) -> int:
    """Reads frames until a presence frame with `want` arrives; returns the last count seen."""
    last = -1
    async with asyncio.timeout(within):
        while last != want:
            msg = json.loads(await ws.recv())
            if msg["type"] == "presence":
                last = msg["count"]
    return last


async def test_presence_counts_sockets_on_every_process(database_url, redis_url, tmp_path):
    """A socket on each of two processes: both see 2; one leaves: the other sees 1."""
    env = {"REDIS_URL": redis_url}
    a = ServerProcess(database_url, env=env, log_dir=tmp_path)
    b = ServerProcess(database_url, env=env, log_dir=tmp_path)
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
    try:
        async with client_for(a.url) as client:
            slot = await one_slot(client)
        channel = f"service:{slot['service_id']}"
        async with connect(a.ws_url) as wa:
            await wa.send(json.dumps({"type": "subscribe", "channel": channel, "id": "a"}))
            assert await _presence(wa, 1) == 1
            async with connect(b.ws_url) as wb:
                await wb.send(json.dumps({"type": "subscribe", "channel": channel, "id": "b"}))
                assert await _presence(wb, 2) == 2
                assert await _presence(wa, 2) == 2
            assert await _presence(wa, 1) == 1
    finally:
        await asyncio.gather(asyncio.to_thread(a.stop), asyncio.to_thread(b.stop))
