"""Helpers to drive a stream of bookings and to check what subscribers received."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

from realtime.db.interface import ConnectionPool
from tests.channels.conftest import Client


async def slot_versions(pool: ConnectionPool) -> dict[str, int]:
    rows = await pool.fetch("SELECT id::text, version FROM rt_slots")
    return {r["id"]: r["version"] for r in rows}


async def book_stream(booking: Any, slot_ids: list[str], count: int, workers: int = 6,
                      pause: float = 0.0) -> int:
    """`count` one-unit bookings spread over `slot_ids`; returns how many succeeded."""
    done = 0
    queue = list(range(count))

    async def worker() -> None:
        nonlocal done
        while queue:
            queue.pop()
            try:
                await booking.book(random.choice(slot_ids), 1)
                done += 1
            except Exception:  # the stream goes on through outages; the checks count versions
                await asyncio.sleep(0.01)
            if pause:
                await asyncio.sleep(pause)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return done


class Collector:
    """Reads a client continuously into per-slot version lists, per channel."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.versions: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        self.cursors: dict[str, list[int]] = defaultdict(list)
        client.listeners.append(self.take)

    def take(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "availability:updated":
            self.versions[msg["channel"]][msg["slot"]["id"]].append(msg["slot"]["version"])
            self.cursors[msg["channel"]].append(int(msg["cursor"].split("@")[0]))
        elif msg["type"] == "subscribed" and "events" in msg:
            for event in msg["events"]:
                self.take(event)
        elif msg["type"] == "subscribed":
            # Each slot's history starts at its snapshot version.
            for slot in msg["snapshot"]["slots"]:
                self.versions[msg["channel"]][slot["id"]].append(slot["version"])

    async def wait_for(self, channel: str, final: dict[str, int], within: float = 15) -> None:
        """Until every slot in `final` reached its final version on `channel`."""
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            got = self.versions[channel]
            if all(got.get(s) and max(got[s]) >= v for s, v in final.items()):
                return
            await asyncio.sleep(0.02)
        missing = {s: (self.versions[channel].get(s, [None])[-1], v) for s, v in final.items()}
        raise AssertionError(f"{channel}: not every final version arrived: {missing}")

    def assert_complete(self, channel: str, final: dict[str, int]) -> None:
        """Each slot's versions are consecutive from where it started to `final`: no gap."""
        got = self.versions[channel]
        for slot, last in final.items():
            seen = got[slot]
            assert seen, f"{channel}: nothing for slot {slot}"
            assert seen == list(range(seen[0], last + 1)), f"{channel} slot {slot}: {seen}"
        cursors = self.cursors[channel]
        assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)

    async def stop(self) -> None:
        self.client.listeners.remove(self.take)
