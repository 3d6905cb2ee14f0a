"""Frames as the bytes that go on the wire, built once for every socket that sends them.

The fan-out hands the same frame objects, in the same order, to thousands of outboxes; the
writers turn them into bytes here, so that the work is done once per frame and once per
batch, not once per socket."""

from __future__ import annotations

from collections.abc import Callable

from websockets.frames import Frame, Opcode

_CACHE_SIZE = 256
# id(payload) -> (payload, framed). The payload is kept so that its id cannot be reused while
# cached. Frames of one dispatch are the same objects for every subscriber, so nearly every
# write after the first is a hit.
_framed: dict[int, tuple[bytes, bytes]] = {}


def framed(payload: bytes) -> bytes:
    """`payload` as one unmasked, unfragmented WebSocket text frame (RFC 6455 section 5.2)."""
    entry = _framed.get(id(payload))
    if entry is not None and entry[0] is payload:
        return entry[1]
    data = Frame(Opcode.TEXT, payload).serialize(mask=False)
    if len(_framed) >= _CACHE_SIZE:
        _framed.clear()
    _framed[id(payload)] = (payload, data)
    return data


class JoinedBatches:
    """What a batch of frames becomes on the wire (`each` per frame, joined), once per batch.

    A dispatch to one channel puts the same frames, in the same order, into every reader's
    outbox, so thousands of sockets take the same batch: profiled at 5,000 readers of one
    channel, turning each frame into bytes and joining them per socket took a third of the
    event loop. The key is the frames' ids; an entry keeps its frames alive, so an id in a
    key cannot be reused by another object while the entry is there."""

    __slots__ = ("_cache", "_each")

    SIZE = 64

    def __init__(self, each: Callable[[bytes], bytes]) -> None:
        self._each = each
        self._cache: dict[tuple[int, ...], tuple[tuple[bytes, ...], bytes]] = {}

    def __call__(self, batch: list[bytes]) -> bytes:
        if len(batch) == 1:
            return self._each(batch[0])
        key = tuple(map(id, batch))
        entry = self._cache.get(key)
        if entry is not None:
            return entry[1]
        data = b"".join([self._each(frame) for frame in batch])
        if len(self._cache) >= self.SIZE:
            self._cache.clear()
        self._cache[key] = (tuple(batch), data)
        return data
