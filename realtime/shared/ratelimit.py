"""Token buckets keyed by client: in the process, or in Redis (REDIS_URL) so that every server
process draws from the same bucket."""

from __future__ import annotations

import time
from collections import OrderedDict

from realtime.shared.link import RedisLink


class TokenBucket:
    """`rate` tokens per second, up to `burst`, starting full: the one bucket of the server
    (per client address for HTTP, per socket for WebSocket messages; the Redis script below
    is the same arithmetic)."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = self.burst
        self.at = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class TokenBuckets:
    """A bucket per client key; at most `max_keys` clients tracked (least recently used go)."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def take(self, key: str) -> float:
        return self.take_now(key)

    def take_now(self, key: str, now: float | None = None) -> float:
        """0 when allowed, else the seconds until a token is available."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        bucket = self._buckets.pop(key, None) or TokenBucket(self.rate, self.burst, now)
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return bucket.take(now)

    async def close(self) -> None:
        return None


# Redis' own clock (TIME) keeps processes on different hosts consistent.
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1]) or burst
local ts = tonumber(v[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisTokenBuckets(TokenBuckets):
    """The same buckets kept in Redis, so that every process draws from one bucket per client.
    If Redis does not answer, the buckets of this process decide instead: a rate limiter must
    not take bookings down with it, nor stop limiting."""

    def __init__(self, link: RedisLink, rate: float, burst: int) -> None:
        super().__init__(rate, burst)
        self._link = link
        self._script = link.client.register_script(_LUA)

    async def take(self, key: str) -> float:
        if not self.enabled:
            return 0.0
        if self._link.up:
            try:
                wait = float(await self._script(keys=[f"rt:rl:{key}"], args=[self.rate, self.burst]))
            except Exception as exc:
                self._link.failed(exc)
            else:
                return wait
        return self.take_now(key)
