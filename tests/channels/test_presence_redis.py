"""Presence shared through a real Redis: totals across processes, no zombies after a crash."""

from __future__ import annotations

import asyncio

import pytest

from realtime.shared.link import RedisLink
from realtime.shared.presence import RedisPresence

pytestmark = pytest.mark.redis


async def test_totals_span_processes_and_clean_exit_is_immediate(redis_url):
    """Two processes' subscribers add up; a clean close removes its share at once."""
    a, b = RedisPresence(RedisLink(redis_url), ttl=5), RedisPresence(RedisLink(redis_url), ttl=5)
    try:
        a.changed("service:x", +1)
        assert await a.poll() == {"service:x": 1}
        b.changed("service:x", +1)
        b.changed("service:x", +1)
        assert await b.poll() == {"service:x": 3}
        assert await a.poll() == {"service:x": 3}
        assert await a.poll() == {}  # reported on change only
        await b.close()
        assert await a.poll() == {"service:x": 1}
    finally:
        await a.close()
        await a._link.close()
        await b._link.close()


async def test_a_crashed_process_stops_counting_after_its_ttl(redis_url):
    """A process that dies without cleaning up (kill -9 in a deploy) is no zombie."""
    survivor = RedisPresence(RedisLink(redis_url), ttl=0.5)
    crashed = RedisPresence(RedisLink(redis_url), ttl=0.5)
    try:
        crashed.changed("vendor:v", +2)
        await crashed.poll()
        survivor.changed("vendor:v", +1)
        assert await survivor.poll() == {"vendor:v": 3}
        await crashed._redis.aclose()  # gone without a goodbye
        await asyncio.sleep(0.7)
        assert await survivor.poll() == {"vendor:v": 1}
    finally:
        await survivor.close()
        await survivor._link.close()


async def test_redis_down_falls_back_to_local_counts():
    """With Redis unreachable, presence still counts this process's subscribers."""
    link = RedisLink("redis://127.0.0.1:1/0")
    presence = RedisPresence(link, ttl=1)
    presence.changed("service:y", +2)
    assert await presence.poll() == {"service:y": 2}
    assert not link.up and link.degraded() is not None
    await presence.close()
    await link.close()
