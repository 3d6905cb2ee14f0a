"""The direct write path frames text exactly as websockets would."""

from __future__ import annotations

import pytest
from websockets.protocol import State
from websockets.server import ServerProtocol

from realtime.channels.writer import framed


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_framed_matches_websockets(size: int) -> None:
    """A prebuilt text frame is byte for byte what websockets' send_text produces."""
    proto = ServerProtocol()
    proto.state = State.OPEN
    payload = ("é" * size).encode()[:size] if size % 2 == 0 else b"x" * size
    proto.send_text(payload)
    assert framed(payload) == b"".join(proto.data_to_send())


def test_framed_cache_is_by_identity() -> None:
    """Two equal payloads that are different objects are never confused by the cache."""
    a = b'{"a":1}'
    b = bytes(bytearray(b'{"a":2}'))
    assert framed(a) != framed(b)
    assert framed(a) is framed(a)
