"""Presence counted in this process only: right for one server process."""

from __future__ import annotations


class MemoryPresence:
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
