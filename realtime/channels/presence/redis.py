"""Presence shared by every server process through Redis.

Each process writes its own count per channel into a hash (`rt:presence:<channel>`, field =
process id) and keeps a heartbeat key (`rt:presence:proc:<id>`) alive with a short TTL. A total
only counts processes whose heartbeat is alive, so a process that crashed or was killed in a
deploy stops counting within `ttl` seconds: no zombie presence (phoenixframework/phoenix#2306).
A process that shuts down cleanly removes its entries at once.

The fan-out path only touches local counters (`changed` never awaits); Redis is read and written
once per `poll`, in one pipeline. If Redis is unreachable, counts fall back to this process's own
until it answers again.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

log = logging.getLogger("realtime.channels.presence")

PREFIX = "rt:presence:"


class RedisPresence:
    # Clients see a killed process's sockets uncounted within `ttl` plus one poll of the
    # others (1 s): 3 s keeps that under 5 s. The heartbeat is renewed every second, so only
    # a loop stalled for 3 s would let a live process's count lapse.
    def __init__(self, url: str, ttl: float = 3.0, process_id: str | None = None) -> None:
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.from_url(url, socket_timeout=1, socket_connect_timeout=1,
                                             decode_responses=True)
        self.process_id = process_id or uuid.uuid4().hex[:16]
        self.ttl = ttl
        self._local: dict[str, int] = {}
        self._dirty: set[str] = set()  # local counts not yet written to Redis
        self._totals: dict[str, int] = {}  # last totals reported, for channels with local subscribers
        self._warned_at = 0.0

    def changed(self, channel: str, delta: int) -> None:
        count = self._local.get(channel, 0) + delta
        if count > 0:
            self._local[channel] = count
        else:
            self._local.pop(channel, None)
        self._dirty.add(channel)

    def count(self, channel: str) -> int:
        return self._totals.get(channel, self._local.get(channel, 0))

    async def poll(self) -> dict[str, int]:
        dirty, self._dirty = self._dirty, set()
        watched = sorted(self._local)
        try:
            totals = await self._sync(dirty, watched)
        except Exception as exc:
            self._dirty |= dirty  # write them next time
            if time.monotonic() - self._warned_at > 10:
                self._warned_at = time.monotonic()
                log.warning("redis presence unavailable; counting this process only",
                            extra={"error": exc.__class__.__name__})
            totals = {channel: self._local.get(channel, 0) for channel in watched}
        changed = {ch: n for ch, n in totals.items() if self._totals.get(ch) != n}
        for channel in dirty - set(totals):
            if channel in self._totals:  # nobody local watches it any more
                del self._totals[channel]
        self._totals.update(totals)
        return changed

    async def _sync(self, dirty: set[str], watched: list[str]) -> dict[str, int]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(f"{PREFIX}proc:{self.process_id}", "1", px=int(self.ttl * 1000))
        for channel in dirty:
            count = self._local.get(channel, 0)
            if count > 0:
                pipe.hset(PREFIX + channel, self.process_id, count)
                pipe.pexpire(PREFIX + channel, int(self.ttl * 6000))
            else:
                pipe.hdel(PREFIX + channel, self.process_id)
        for channel in watched:
            pipe.hgetall(PREFIX + channel)
        results = await pipe.execute()
        hashes: list[dict[str, str]] = results[len(results) - len(watched):] if watched else []
        processes = sorted({pid for h in hashes for pid in h if pid != self.process_id})
        alive: set[str] = {self.process_id}
        if processes:
            flags = await self._redis.mget([f"{PREFIX}proc:{pid}" for pid in processes])
            alive |= {pid for pid, flag in zip(processes, flags, strict=True) if flag}
        totals = {}
        for channel, entries in zip(watched, hashes, strict=True):
            total = self._local.get(channel, 0)
            total += sum(int(n) for pid, n in entries.items() if pid != self.process_id and pid in alive)
            totals[channel] = total
        return totals

    async def close(self) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for channel in self._local:
                pipe.hdel(PREFIX + channel, self.process_id)
            pipe.delete(f"{PREFIX}proc:{self.process_id}")
            await pipe.execute()
        except Exception:
            log.warning("could not remove this process's presence from redis; it expires in %ss",
                        self.ttl)
        finally:
            self._local.clear()
            await self._redis.aclose()

