"""What the server processes of one deployment share, chosen by REDIS_URL here and nowhere
else: presence counts and rate limits live in each process without it, in Redis with it
(an accelerator, never the truth: PostgreSQL is)."""

from __future__ import annotations

from dataclasses import dataclass

from realtime.settings import Settings
from realtime.shared.link import RedisLink
from realtime.shared.presence import MemoryPresence, PresenceBackend, RedisPresence
from realtime.shared.ratelimit import RedisTokenBuckets, TokenBuckets


@dataclass
class Shared:
    presence: PresenceBackend
    rate_limits: TokenBuckets
    redis: RedisLink | None = None

    def degraded(self) -> str | None:
        """Why sharing works in a lesser way now (for /readyz), or None."""
        return self.redis.degraded() if self.redis is not None else None

    async def close(self) -> None:
        """After the presence backend's own close (the channels layer's, at shutdown)."""
        if self.redis is not None:
            await self.redis.close()


def shared_for(settings: Settings) -> Shared:
    rate, burst = settings.rate_limit_per_second, settings.rate_limit_burst
    if not settings.redis_url:
        return Shared(MemoryPresence(), TokenBuckets(rate, burst))
    link = RedisLink(settings.redis_url)
    return Shared(RedisPresence(link), RedisTokenBuckets(link, rate, burst), link)
