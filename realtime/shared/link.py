"""The process's one connection to Redis, and whether Redis answers.

Redis is an accelerator, never the truth: when it does not answer, what uses it falls back to
this process's own state, `/readyz` reports it under `degraded` (the server still serves), and
`realtime_redis_up` is 0. A ping every `PING_SECONDS` notices Redis coming back (and going
away while nothing else asks it), so everything recovers by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from prometheus_client import Gauge

log = logging.getLogger("realtime.redis")

REDIS_UP = Gauge("realtime_redis_up", "1 while Redis answers (REDIS_URL set), else 0")
PING_SECONDS = 1.0
TIMEOUT = 0.5  # Redis answers in well under a millisecond; half a second means it is away
WARN_EVERY = 10.0


class RedisLink:
    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.client: Any = aioredis.from_url(url, socket_timeout=TIMEOUT,
                                             socket_connect_timeout=TIMEOUT,
                                             decode_responses=True)
        self.up = True
        self.error: str | None = None
        self._warned_at = 0.0
        REDIS_UP.set(1)

    def ok(self) -> None:
        if not self.up:
            log.info("redis answers again; presence and rate limits are shared again")
        self.up, self.error = True, None
        REDIS_UP.set(1)

    def failed(self, exc: BaseException) -> None:
        """Record a failed call; says so in the log at most every WARN_EVERY seconds."""
        self.up, self.error = False, type(exc).__name__
        REDIS_UP.set(0)
        if time.monotonic() - self._warned_at > WARN_EVERY:
            self._warned_at = time.monotonic()
            log.warning("redis unavailable; presence and rate limits count this process only",
                        extra={"error": self.error})

    def degraded(self) -> str | None:
        if self.up:
            return None
        return (f"redis unreachable ({self.error}): presence and rate limits count this "
                "process only")

    async def watch(self) -> None:
        """Ping forever (a supervised background task)."""
        while True:
            try:
                await self.client.ping()
            except Exception as exc:
                self.failed(exc)
            else:
                self.ok()
            await asyncio.sleep(PING_SECONDS)

    async def close(self) -> None:
        await self.client.aclose()
