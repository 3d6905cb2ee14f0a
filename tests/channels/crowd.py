"""Hundreds of subscribers on one channel, and the check that each got every update intact."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.protocol import State

from realtime.channels.writer import PARALLEL_MIN
from tests.channels.conftest import Client

# Enough sockets on one channel that every dispatch takes the bulk (threaded) path.
CROWD = max(300, PARALLEL_MIN + 1)
SLOT_FIELDS = {"id", "service_id", "vendor_id", "starts_at", "ends_at", "capacity", "booked",
               "held", "available", "version"}


@contextlib.asynccontextmanager
async def crowd(ws_url: str, channel: str, n: int = CROWD,
                ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[list[Client]]:
    """`n` clients subscribed to `channel`, opened a few dozen at a time."""
    clients: list[Client] = []

    async def one() -> None:
        ws = await connect(ws_url, ssl=ssl_context, compression=None, open_timeout=60)
        c = Client(ws)
        clients.append(c)
        await c.subscribe(channel)

    try:
        for start in range(0, n, 25):
            await asyncio.gather(*(one() for _ in range(min(25, n - start))))
        yield clients
    finally:
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)


def snapshot_version(c: Client, channel: str, slot_id: str) -> int:
    """The slot's version in the client's `subscribed` snapshot."""
    for msg in c.seen:
        if msg["type"] == "subscribed" and msg["channel"] == channel:
            return next(s["version"] for s in msg["snapshot"]["slots"] if s["id"] == slot_id)
    raise AssertionError("no snapshot")


def updates(c: Client, slot_id: str) -> list[dict[str, Any]]:
    return [m for m in c.seen if m["type"] == "availability:updated" and m["slot"]["id"] == slot_id]


async def book_over_http(base_url: str, slot_id: str, times: int,
                         verify: ssl.SSLContext | bool = True) -> None:
    """`times` one-unit bookings of the slot, one after the other; each must be 201."""
    async with httpx.AsyncClient(base_url=base_url, verify=verify, timeout=30) as http:
        for _ in range(times):
            response = await http.post("/api/bookings", json={"slot_id": slot_id})
            assert response.status_code == 201, response.text


async def assert_every_update_intact(clients: list[Client], channel: str, slot_id: str,
                                     start: int, count: int, within: float = 60) -> None:
    """Every client got versions start+1..start+count of the slot, once each and in order,
    as well-formed updates, and its connection still works (a ping gets its pong)."""
    expected = list(range(start + 1, start + count + 1))
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if all(len(updates(c, slot_id)) >= count or c.close_code is not None for c in clients):
            break
        await asyncio.sleep(0.05)
    closed = [c.close_code for c in clients if c.close_code is not None
              or c.ws.state is not State.OPEN]
    assert not closed, f"{len(closed)} of {len(clients)} connections broke: {closed[:5]}"
    wrong = {}
    for i, c in enumerate(clients):
        got = updates(c, slot_id)
        versions = [m["slot"]["version"] for m in got]
        if versions != expected:
            wrong[i] = versions
            continue
        for m in got:
            assert m["channel"] == channel and m["reason"] == "booked", m
            assert isinstance(m["cursor"], str) and m["cursor"], m
            slot = m["slot"]
            assert set(slot) == SLOT_FIELDS, m
            assert slot["available"] == slot["capacity"] - slot["booked"] - slot["held"], m
    assert not wrong, (f"{len(wrong)} of {len(clients)} subscribers did not get versions "
                       f"{expected} in order: {dict(list(wrong.items())[:5])}")
    for i, c in enumerate(clients):
        await c.send(type="ping", id=f"p{i}")
    for i, c in enumerate(clients):
        # Past what is still queued from before (the updates checked above).
        while (msg := await c.recv(within=30))["type"] != "pong":
            pass
        assert msg["id"] == f"p{i}", msg
