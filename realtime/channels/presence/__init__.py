"""Presence backends: where subscriber counts per channel are kept."""

from __future__ import annotations

from typing import Protocol


class PresenceBackend(Protocol):
    """Counts subscribers per channel; in-process now, shared between processes later (Redis).

    `changed` is called synchronously from the hub (never awaits on the fan-out path);
    `poll` returns the channels whose total changed since the last poll, with their totals.
    """

    def changed(self, channel: str, delta: int) -> None: ...

    async def poll(self) -> dict[str, int]: ...

    async def close(self) -> None: ...


def presence_for(redis_url: str | None) -> PresenceBackend:
    """The backend the settings ask for: shared through Redis when REDIS_URL is set."""
    if redis_url:
        from realtime.channels.presence.redis import RedisPresence

        return RedisPresence(redis_url)
    from realtime.channels.presence.memory import MemoryPresence

    return MemoryPresence()
