"""The log's most recent events, as this process read them, by channel. No I/O.

A client that reconnects resumes from its cursor; when thousands do at once (a deploy, a
network blip), reading each one's missed events from the database would cost a query per
client. The reader keeps the last `limit` events it read here, so a resume from a cursor that
is still covered is answered from memory: the database pays per channel and per process
(one read of the recent log when the process starts), not per client.

`floor` is the position above which every event is held, up to `top`, the last position the
reader read. A cursor below `floor` (older than what is held), from another epoch, or ahead of
`top` (from a process that read further) is not answered here: the caller falls back to the
database, or to a snapshot.

What is held has no hole: an event that does not follow `top` (the log was pruned before the
reader read it, whether at the start of a batch or inside one) starts the history anew just
before it, so a cursor from before the hole is never answered from memory with the events
after it (the client would silently miss the pruned ones).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from realtime.eventlog.events import Event
from realtime.schema.channels import service_channel, vendor_channel

LIMIT = 10_000  # events held, all channels together (REALTIME_RESUME_EVENTS): a few MB


class RecentEvents:
    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = max(1, limit)
        self.epoch = ""
        self.floor = 0
        self.top = 0
        self._events: deque[Event] = deque()
        self._channels: dict[str, deque[Event]] = {}

    def reset(self, pos: int, epoch: str) -> None:
        """Hold nothing; every event after `pos` of `epoch` will be added."""
        self.epoch = epoch
        self.floor = self.top = pos
        self._events.clear()
        self._channels.clear()

    def extend(self, events: Iterable[Event]) -> None:
        """Events the reader read, in position order, usually continuing from `top`."""
        channels = self._channels
        for ev in events:
            if ev.pos != self.top + 1:
                self.reset(ev.pos - 1, self.epoch)  # a hole: nothing before it is held
            self._events.append(ev)
            for name in (vendor_channel(ev.vendor_id), service_channel(ev.service_id)):
                held = channels.get(name)
                if held is None:
                    held = channels[name] = deque()
                held.append(ev)
            self.top = ev.pos
        while len(self._events) > self.limit:
            self._evict()

    def _evict(self) -> None:
        ev = self._events.popleft()
        self.floor = ev.pos
        for name in (vendor_channel(ev.vendor_id), service_channel(ev.service_id)):
            held = self._channels[name]
            held.popleft()  # the channel's oldest: channels hold their events in log order
            if not held:
                del self._channels[name]

    def since(self, channel: str, pos: int, epoch: str) -> list[Event] | None:
        """The channel's events after `pos`, up to `top`, or None when they are not all held."""
        if epoch != self.epoch or not self.floor <= pos <= self.top:
            return None
        held = self._channels.get(channel)
        if not held:
            return []
        out: list[Event] = []
        for ev in reversed(held):  # a resume is usually near the end: walk from there
            if ev.pos <= pos:
                break
            out.append(ev)
        out.reverse()
        return out

    def __len__(self) -> int:
        return len(self._events)

    def __contains__(self, channel: str) -> bool:
        """Whether events of the channel are held (so it exists)."""
        return channel in self._channels
