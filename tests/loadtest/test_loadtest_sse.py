"""`realtime loadtest --transport sse` against a real server and a real PostgreSQL, and a
stream broken on the way (a relay that drops one event) caught as lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator

import pytest

from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

# How the slot's JSON (PostgreSQL's jsonb text) says that nothing is left.
SOLD_OUT = b'"available": 0,'


async def _loadtest(url: str, *extra: str) -> tuple[int, dict]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "realtime", "loadtest", "--url", url, "--json", "--quiet",
        "--transport", "sse", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert out, f"no report; exit {proc.returncode}; stderr:\n{err.decode()[-3000:]}"
    assert proc.returncode is not None
    return proc.returncode, json.loads(out)


async def test_sse_run_loses_nothing(server: ServerProcess) -> None:
    """200 SSE streams, 40 bookings/s for 4 s: every update reaches every stream once, in
    order, and each stream ends in the database's state."""
    code, r = await _loadtest(server.url, "--sockets", "200", "--channels", "4", "--rate", "40",
                              "--duration", "4")
    d, b, c = r["delivery"], r["bookings"], r["connect"]
    assert code == 0, r
    assert r["ok"] is True and r["transport"] == "sse"
    assert c["connected"] == 200 and c["failed"] == 0
    assert b["succeeded"] >= 100 and b["errors"] == {}
    assert (d["lost"], d["duplicated"], d["out_of_order"], d["state_mismatched"]) == (0, 0, 0, 0)
    assert d["subscriber_slots_behind"] == 0
    # Each booking reaches the 50 streams of its slot's channel exactly once.
    assert d["delivered"] == b["succeeded"] * 50
    assert d["latency"]["count"] == d["delivered"]
    assert d["unexpected_closes"] == 0 and d["error_frames"] == 0


async def test_sse_reconnect_storm_resumes_by_last_event_id(server: ServerProcess) -> None:
    """A hot slot filling up and every stream dropped mid-run: each reconnects with
    Last-Event-ID, gets exactly what it missed, and nothing is lost or repeated."""
    code, r = await _loadtest(server.url, "--sockets", "100", "--channels", "2", "--rate", "50",
                              "--duration", "4", "--hot-slot", "--capacity", "60",
                              "--reconnect-at", "2")
    d, b = r["delivery"], r["bookings"]
    assert code == 0, r
    assert b["succeeded"] == 60 and b["conflicts"] > 0
    assert (d["lost"], d["duplicated"], d["out_of_order"], d["state_mismatched"]) == (0, 0, 0, 0)
    storm = r["reconnect"]
    assert storm["latency"]["count"] == 100
    # Resumed from the cursor (the events missed), not resent a snapshot.
    assert storm["resumed_from_cursor"] == 100 and storm["resynced_by_snapshot"] == 0
    assert 0 < d["conflicts_seen"] and d["conflicts_seen"] + d["conflicts_missed"] == \
        b["conflicts"] * 50


class DroppingRelay:
    """A TCP relay in front of the server that passes every byte through, except on the first
    SSE stream: from it, it takes out the one event that leaves a slot with nothing available
    (the last update of a hot slot that fills up). The chunked framing stays valid."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dropped: list[bytes] = []
        self._tapped = False
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        first = await reader.read(65536)
        up_writer.write(first)
        tap = first.startswith(b"GET /sse") and not self._tapped
        self._tapped = self._tapped or tap
        down = self._filter if tap else self._pipe
        await asyncio.gather(self._pipe(reader, up_writer), down(up_reader, writer),
                             return_exceptions=True)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def _filter(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"transfer-encoding: chunked" in head.lower(), head
            writer.write(head)
            while size_line := await reader.readline():
                size = int(size_line.strip(), 16)
                payload = (await reader.readexactly(size + 2))[:-2]
                kept = []
                for event in payload.split(b"\n\n")[:-1]:
                    if event.startswith(b"event: availability:updated") and SOLD_OUT in event:
                        self.dropped.append(event)
                    else:
                        kept.append(event + b"\n\n")
                body = b"".join(kept)
                if body or size == 0:
                    writer.write(b"%x\r\n%b\r\n" % (len(body), body))
                    await writer.drain()
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def dropping_relay(port: int) -> AsyncIterator[tuple[DroppingRelay, int]]:
    relay = DroppingRelay(port)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", 0)
    try:
        yield relay, server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_dropped_event_is_caught_as_lost(server: ServerProcess) -> None:
    """One stream misses one update (a relay between it and the server takes it out): the run
    fails (exit 1) and reports exactly that update as lost by one stream."""
    async with dropping_relay(server.port) as (relay, port):
        code, r = await _loadtest(f"http://127.0.0.1:{port}", "--sockets", "20", "--channels",
                                  "1", "--rate", "40", "--duration", "2", "--hot-slot",
                                  "--capacity", "30", "--drain-timeout", "3")
    d = r["delivery"]
    assert len(relay.dropped) == 1, relay.dropped
    assert code == 1 and r["ok"] is False, r
    assert r["bookings"]["succeeded"] == 30
    assert d["lost"] == 1 and d["subscriber_slots_behind"] == 1, d
    assert (d["duplicated"], d["out_of_order"], d["state_mismatched"]) == (0, 0, 0)
    assert d["delivered"] == 30 * 20 - 1
