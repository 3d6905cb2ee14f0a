"""A subscriber: one socket's bounded outbox and its channels, as the hub sees it. No I/O."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Protocol

from realtime.channels import metrics
from realtime.errors import CLOSE_OVERLOAD


class Outlet(Protocol):
    """The writing side of a subscriber's socket, for a dispatch written to many at once."""

    def take_direct(self) -> tuple[int, bytes] | None:
        """(fd, bytes) of what the outbox holds, taken, if a thread may write them now."""
        ...

    def write_rest(self, data: bytes) -> None:
        """What the kernel did not take from a bulk write, written in order."""
        ...


def _nobody() -> None:
    """What a detached subscriber wakes: no one."""


class Subscriber:
    """One socket's view of the hub: its bounded outbox and its channels.

    `frames` and `keys` are parallel lists rather than one list of tuples so that appending a
    frame allocates nothing; lists rather than deques because an empty list costs 56 bytes
    and a deque ~700, at 10k sockets. The writer takes the whole outbox at once (`take`), so
    a socket owes at most one outbox in flight plus one bounded outbox. A key names what a
    frame is about (channel and slot) so that a backlog can be coalesced to the newest frame
    per key; frames with key None (replies, `subscribed`) are never dropped.
    """

    __slots__ = (
        "backlog",
        "channels",
        "close_code",
        "coalesce_at",
        "frames",
        "hard_limit",
        "keys",
        "limit",
        "notified",
        "outlet",
        "sampled",
        "stamp",
        "wake",
    )

    def __init__(
        self, limit: int, wake: Callable[[], None], sampled: bool = False,
        outlet: Outlet | None = None,
    ) -> None:
        self.limit = max(4, limit)
        # What writes to the socket behind this subscriber, for bulk writes.
        self.outlet = outlet
        # A reader is behind only if frames of an earlier batch are still waiting when a new
        # batch comes (`backlog`): one big batch (a burst on a hot channel) must not coalesce
        # a reader that keeps up. Frames are shared strings, so an outbox costs a pointer per
        # frame; `hard_limit` still bounds it whatever happens.
        self.hard_limit = 8 * self.limit
        self.backlog = 0
        # After coalescing to n frames, the next attempt waits for 2n: coalescing on every
        # append would cost O(n) per frame.
        self.coalesce_at = self.limit
        self.wake = wake
        self.frames: list[bytes] = []
        self.keys: list[Hashable | None] = []
        # A list, not a set: a socket holds a few channels, and an empty set costs 216 bytes.
        self.channels: list[str] = []
        self.close_code: int | None = None
        self.notified = False
        # Latency is observed on a sample of sockets: observing every send would cost more
        # than the send.
        self.sampled = sampled
        self.stamp = 0.0

    def detach(self) -> None:
        """Its socket is gone: forget it. The socket's object refers to this subscriber and
        this one back to it (`wake`, `outlet`), a reference cycle that only a garbage
        collection would free, and not at all while the collector keeps it frozen (gcwatch.py).
        Cut, the closed socket's objects are freed as soon as nothing else holds them."""
        self.wake = _nobody
        self.outlet = None

    def __len__(self) -> int:
        return len(self.frames)

    def take(self, most: int = 0) -> list[bytes]:
        """What is queued, in order, up to `most` frames (0: all); the rest stays queued."""
        frames = self.frames
        if most and len(frames) > most:
            self.frames = frames[most:]
            self.keys = self.keys[most:]
            return frames[:most]
        if frames:
            self.frames = []
            self.keys = []
            self.coalesce_at = self.limit
        return frames

    def send(self, frame: str | bytes, key: Hashable | None = None) -> None:
        """Queue a reply or any frame outside the fan-out; wakes the writer at once."""
        if self.close_code is not None:
            return
        self.frames.append(frame.encode() if isinstance(frame, str) else frame)
        self.keys.append(key)
        if len(self.frames) > self.hard_limit:
            self._overflow()
        self.wake()

    def close(self, code: int) -> None:
        """Ask the writer to send what is queued, then close with `code`."""
        if self.close_code is None:
            self.close_code = code
        self.wake()

    def _overflow(self) -> None:
        # Availability is state: only the newest frame per slot matters to a reader that fell
        # behind. Keep each key's last frame where it stands so that cursors still grow.
        before = len(self.frames)
        seen: set[Hashable] = set()
        frames: list[bytes] = []
        keys: list[Hashable | None] = []
        for frame, key in zip(reversed(self.frames), reversed(self.keys), strict=True):
            if key is not None:
                if key in seen:
                    continue
                seen.add(key)
            frames.append(frame)
            keys.append(key)
        frames.reverse()
        keys.reverse()
        self.frames, self.keys = frames, keys
        metrics.FRAMES_COALESCED.inc(before - len(frames))
        self.coalesce_at = max(self.limit, 2 * len(frames))
        if len(frames) > 4 * self.limit:
            # Even one frame per slot is far past the bound: it owes too many different
            # slots, so it goes, and its client resumes with its last cursor.
            metrics.FRAMES_DROPPED.inc(len(frames))
            metrics.SLOW_CLOSES.inc()
            self.frames = []
            self.keys = []
            self.close_code = CLOSE_OVERLOAD
