"""Presence: subscriber counts per channel, in this process or across processes via Redis.

The hub calls `changed` synchronously on every join and leave (it never awaits on the fan-out
path); once a second the channels layer calls `poll` for the channels whose total changed.

Through Redis, each process writes its own count per channel into a hash
(`rt:presence:<channel>`, field = process id) and keeps a heartbeat key
(`rt:presence:proc:<id>`) alive with a short TTL. A total only counts processes whose heartbeat
is alive, so a process that crashed or was killed in a deploy stops counting within `ttl`
seconds: no zombie presence. A process that shuts down cleanly removes its entries at once.
Redis is read and written once per `poll`, in one pipeline; if it does not answer, counts fall
back to this process's own until it does.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from realtime.shared.link import RedisLink

PREFIX = "rt:presence:"
# A SIGKILLed process leaves the counts within TTL + one poll (1 s): under 5 s.
TTL = 3.0


class PresenceBackend(Protocol):
    def changed(self, channel: str, delta: int) -> None: ...

    async def poll(self) -> dict[str, int]: ...

    async def close(self) -> None: ...


class MemoryPresence:
    """Counts in this process only: right for one server process."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        # Bounded by the number of channels with subscribers (or that just lost their last).
        self._dirty: set[str] = set()

    def changed(self, channel: str, delta: int) -> None:
        count = self._counts.get(channel, 0) + delta
        if count > 0:
            self._counts[channel] = count
        else:
            self._counts.pop(channel, None)
        self._dirty.add(channel)

    def count(self, channel: str) -> int:
        return self._counts.get(channel, 0)

    async def poll(self) -> dict[str, int]:
        dirty, self._dirty = self._dirty, set()
        return {channel: self._counts.get(channel, 0) for channel in dirty}

    async def close(self) -> None:
        self._dirty.clear()


class RedisPresence:
    """Counts across every process that shares the Redis."""

    def __init__(self, link: RedisLink, ttl: float = TTL, process_id: str | None = None) -> None:
        self._link = link
        self._redis = link.client
        self.process_id = process_id or uuid.uuid4().hex[:16]
        self.ttl = ttl
        self._local: dict[str, int] = {}
        self._dirty: set[str] = set()  # local counts not yet written to Redis
        self._totals: dict[str, int] = {}  # last totals reported, for channels with local subscribers

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
            self._link.failed(exc)
            totals = {channel: self._local.get(channel, 0) for channel in watched}
        else:
            self._link.ok()
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
        """Remove this process's counts now (a clean exit leaves nothing to expire)."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for channel in self._local:
                pipe.hdel(PREFIX + channel, self.process_id)
            pipe.delete(f"{PREFIX}proc:{self.process_id}")
            await pipe.execute()
        except Exception as exc:
            self._link.failed(exc)
        finally:
            self._local.clear()
