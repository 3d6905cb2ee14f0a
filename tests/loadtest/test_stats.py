"""Unit tests of the load tester's statistics, frame handling and planning."""

from __future__ import annotations

import argparse
import random

import pytest

from realtime.loadtest.options import LoadTestError, check_args, split_sockets
from realtime.loadtest.stats import Counters, Delivery, Histogram, classify, compare_final, merged
from realtime.loadtest.wsclient import (
    UPDATE,
    NativeDialect,
    SocketIODialect,
    Subscriber,
    mask_frame,
    parse_message,
)


def test_histogram_percentiles_within_one_percent() -> None:
    """Percentiles of 1..10000 ms come out within the buckets' 1% precision."""
    h = Histogram()
    for ms in range(1, 10001):
        h.add(ms / 1000)
    assert h.count == 10000
    for p, want in ((50, 5.0), (95, 9.5), (99, 9.9)):
        assert abs(h.percentile(p) - want) / want < 0.011
    assert h.percentile(100) == pytest.approx(10.0)
    assert h.max == pytest.approx(10.0)


def test_histogram_never_reports_above_max() -> None:
    """A percentile is capped at the largest sample, whatever its bucket's bound."""
    h = Histogram()
    h.add(0.0123)
    assert h.percentile(50) == h.percentile(99) == pytest.approx(0.0123)


def test_histogram_empty_and_negative() -> None:
    """An empty histogram reports zeros; a negative sample counts as zero."""
    h = Histogram()
    assert h.percentile(99) == 0.0 and h.summary()["count"] == 0
    h.add(-0.5)
    assert h.count == 1 and h.max == 0.0


def test_histogram_merge_and_round_trip() -> None:
    """Merging shipped histograms equals recording everything in one."""
    rng = random.Random(1)
    parts = [Histogram() for _ in range(3)]
    whole = Histogram()
    for i in range(3000):
        v = rng.expovariate(100)
        parts[i % 3].add(v)
        whole.add(v)
    shipped = merged(Histogram.from_dict(p.to_dict()) for p in parts)
    assert shipped.count == whole.count
    assert shipped.buckets == whole.buckets
    assert shipped.percentile(99) == whole.percentile(99)
    assert shipped.cdf()[-1][1] == pytest.approx(1.0)


def test_classify_in_order_duplicate_disorder_gap() -> None:
    """Frames are classified per slot version: next, duplicate, older, or a gap."""
    d = Delivery()
    d.snapshot([{"id": "a", "version": 1, "booked": 0, "held": 0, "available": 5}])
    c = Counters()
    assert classify(d, "a", 2, (1, 0, 4), c)
    assert not classify(d, "a", 2, (1, 0, 4), c)
    assert not classify(d, "a", 1, (0, 0, 5), c)
    assert classify(d, "a", 5, (4, 0, 1), c)
    assert classify(d, "b", 7, (0, 0, 1), c)  # a slot created after the snapshot
    seen = (c.delivered, c.duplicated, c.out_of_order, c.gaps, c.skipped_versions)
    assert seen == (3, 1, 1, 1, 2)
    assert d.states["a"] == (4, 0, 1)


def test_compare_final_counts_lost_versions_and_mismatch() -> None:
    """Versions behind the database are lost; the same version in another state is a mismatch."""
    d = Delivery(versions={"a": 3, "b": 5, "c": 2},
                 states={"a": (2, 0, 3), "b": (4, 0, 1), "c": (0, 0, 9)})
    expected = {"a": (5, (4, 0, 1)), "b": (5, (4, 0, 1)), "c": (2, (1, 0, 8)), "d": (1, (0, 0, 1))}
    assert compare_final(d, expected) == (2 + 1, 2, 1)


def test_counters_merge_and_round_trip() -> None:
    """Counters from workers add up field by field."""
    a = Counters(delivered=3, duplicated=1)
    b = Counters.from_dict({"delivered": 4, "gaps": 2, "unknown": 9})
    a.merge(b)
    assert a.to_dict()["delivered"] == 7 and a.gaps == 2 and a.duplicated == 1


def _unmask(frame: bytes) -> tuple[int, bytes]:
    length = frame[1] & 0x7F
    head = 2
    if length == 126:
        length, head = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, head = int.from_bytes(frame[2:10], "big"), 10
    key = frame[head : head + 4]
    body = frame[head + 4 : head + 4 + length]
    return frame[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(body))


@pytest.mark.parametrize("size", [0, 5, 125, 126, 1000, 70000])
def test_mask_frame_round_trip(size: int) -> None:
    """Client frames are masked per RFC 6455 and unmask to the payload at every length encoding."""
    payload = bytes(random.Random(size).getrandbits(8) for _ in range(size))
    frame = mask_frame(payload)
    assert frame[0] == 0x81 and frame[1] & 0x80
    assert _unmask(frame) == (1, payload)


def test_parse_native_and_socketio_updates() -> None:
    """Both dialects turn an update into the same parsed tuple."""
    slot = {"id": "s1", "version": 4, "booked": 2, "held": 1, "available": 7}
    native = parse_message({"type": "availability:updated", "cursor": "9@e", "slot": slot})
    assert native[:5] == (UPDATE, "s1", 4, (2, 1, 7), "9@e")

    class Sub:
        channel = "service:x"
        sent: list[bytes] = []

        def send(self, b: bytes) -> None:
            self.sent.append(b)

    sub = Sub()
    raw = b'42["availability:updated",{"cursor":"9@e","slot":' + (
        b'{"id":"s1","version":4,"booked":2,"held":1,"available":7}}]'
    )
    parsed, cacheable = SocketIODialect().parse(sub, raw)  # type: ignore[arg-type]
    assert parsed[:5] == native[:5] and cacheable
    SocketIODialect().parse(sub, b"2")  # type: ignore[arg-type]
    assert sub.sent[-1] == b"3"
    parsed, cacheable = NativeDialect().parse(sub, b'{"type":"presence","count":3}')  # type: ignore[arg-type]
    assert not cacheable


def test_split_sockets_balances_channels_and_processes() -> None:
    """Sockets spread evenly over channels and processes, and all are assigned."""
    plan = split_sockets(1003, [f"c{i}" for i in range(10)], 3)
    per_proc = [sum(n for _, n in p) for p in plan]
    assert sum(per_proc) == 1003 and max(per_proc) - min(per_proc) <= 1
    per_channel: dict[str, int] = {}
    for p in plan:
        for ch, n in p:
            per_channel[ch] = per_channel.get(ch, 0) + n
    assert max(per_channel.values()) - min(per_channel.values()) <= 1


def _args(**kw: object) -> argparse.Namespace:
    from realtime.loadtest import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args([])
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


def test_check_args_refuses_remote_and_unbounded() -> None:
    """The load tester only targets loopback and refuses runaway sizes."""
    check_args(_args())
    with pytest.raises(LoadTestError, match="loopback"):
        check_args(_args(url="http://192.0.2.1:8000"))
    with pytest.raises(LoadTestError):
        check_args(_args(sockets=10_000_000))
    with pytest.raises(LoadTestError):
        check_args(_args(duration=0))


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True


def _server_frame(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


async def test_subscriber_reassembles_split_and_fragmented_frames() -> None:
    """Frames split across reads, fragmented messages and pings are handled; pings get pongs."""
    got: list[bytes] = []
    sub = Subscriber(channel="service:x", host="h", path="/ws", dialect=NativeDialect(),
                     on_message=lambda s, p: got.append(p), on_lost=lambda s, e: None)
    t = _Transport()
    sub.connection_made(t)  # type: ignore[arg-type]
    assert t.written[0].startswith(b"GET /ws HTTP/1.1")
    big = b"x" * 70000
    stream = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
              + _server_frame(b"hello") + _server_frame(b"ping!", opcode=9)
              + _server_frame(b"par", fin=False) + _server_frame(b"ts", opcode=0)
              + _server_frame(big, opcode=1))
    for i in range(0, len(stream), 7):
        sub.data_received(stream[i : i + 7])
    assert got == [b"hello", b"parts", big]
    assert sub.open
    # subscribe request, then a pong echoing the ping's payload
    assert _unmask(t.written[1])[0] == 1
    assert _unmask(t.written[2]) == (0xA, b"ping!")


async def test_subscriber_refuses_a_failed_handshake() -> None:
    """A non-101 answer fails the subscription with the status line."""
    sub = Subscriber(channel="c", host="h", path="/ws", dialect=NativeDialect(),
                     on_message=lambda s, p: None, on_lost=lambda s, e: None)
    t = _Transport()
    sub.connection_made(t)  # type: ignore[arg-type]
    sub.data_received(b"HTTP/1.1 403 Forbidden\r\n\r\n")
    assert t.closed
    with pytest.raises(ConnectionError, match="403"):
        sub.subscribed.result()
