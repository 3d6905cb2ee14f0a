"""Small helpers of the server-level replica tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import REGISTRY

from realtime.eventlog.replica import ReadReplica
from tests.channels.conftest import Live, World
from tests.channels.streams import slot_versions
from tests.replicas.conftest import Timeline, cursor_pos


def served() -> float:
    """Reads the replica served, all servers of this process together."""
    return REGISTRY.get_sample_value("realtime_replica_reads_total") or 0.0


def fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value("realtime_replica_fallbacks_total",
                                     {"reason": reason}) or 0.0


async def number(world: World) -> None:
    """What a server's sequencer does: number every committed event (when none runs)."""
    await world.pool.fetchval("SELECT rt_sequence_events(100000)")


def reads_of(live: Live) -> ReadReplica:
    reads = live.runtime.listener.reads
    assert reads is not None, "the server has no read replica"
    return reads


async def until(what: str, check: Callable[[], bool], within: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)


async def versions_of(world: World, service: str) -> dict[str, int]:
    """The primary's version of each slot of the service."""
    ids = {s["id"] for s in world.slots[service]}
    return {k: v for k, v in (await slot_versions(world.pool)).items() if k in ids}


async def versions_all(world: World) -> dict[str, int]:
    """The primary's version of every slot of the world."""
    merged: dict[str, int] = {}
    for service in world.services:
        merged.update(await versions_of(world, service))
    return merged


async def availability(live: Live, service: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        response = await http.get(f"/api/services/{service}/availability")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_versions(timeline: Timeline, channel: str, expected: dict[str, list[int]]) -> None:
    """Exactly these versions per slot, in this order: none missed, none repeated."""
    got = {slot: timeline.versions[channel].get(slot, []) for slot in expected}
    assert got == expected, (channel, got, expected)


def snapshot_versions(subscribed: dict[str, Any]) -> dict[str, int]:
    return {s["id"]: s["version"] for s in subscribed["snapshot"]["slots"]}


def pos_of(subscribed: dict[str, Any]) -> int:
    return cursor_pos(subscribed["cursor"])
