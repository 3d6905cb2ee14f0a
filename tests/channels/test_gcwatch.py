"""The collector policy: freeze after full collections, thaw after many sockets closed."""

from __future__ import annotations

import gc
import time
import weakref
from collections import deque

import pytest

from realtime.channels import gcwatch


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def long_ago() -> float:
    """A last thaw an hour back (not 0.0: on a machine up for minutes, monotonic() is small)."""
    return time.monotonic() - 3600


def test_full_collection_freezes_survivors_and_thaw_collects_frozen_cycles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Survivors of a full collection are frozen; a thaw reclaims cycles that died frozen."""
    gcwatch.install()
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle, alive for now
        alive = weakref.ref(a)
        gc.collect()
        assert gc.get_freeze_count() > 0
        frozen = gc.get_freeze_count()
        del a, b  # now garbage, but frozen: no collection can see it
        gc.collect(1)
        # A younger collection freezes nothing more (the count may fall by objects of earlier
        # tests that refcounting freed meanwhile) and cannot reach the frozen cycle.
        assert gc.get_freeze_count() <= frozen and alive() is not None
        for _ in range(gcwatch.THAW_AFTER_CLOSED):
            gcwatch.closed()
        monkeypatch.setattr(gcwatch, "_last_thaw", long_ago())
        assert gcwatch.maybe_thaw(open_sockets=10)
        assert alive() is None
        assert not gcwatch.maybe_thaw(open_sockets=10)
    finally:
        if gcwatch._callback in gc.callbacks:
            gc.callbacks.remove(gcwatch._callback)
        gc.unfreeze()


def test_freeze_after_a_burst_of_opened_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst of opened sockets gets frozen at the next tick; fewer opens freeze nothing."""
    monkeypatch.setattr(gcwatch, "_opened", 0)
    try:
        gc.unfreeze()
        for _ in range(gcwatch.FREEZE_AFTER_OPENED - 1):
            gcwatch.opened()
        assert not gcwatch.maybe_freeze()
        assert gc.get_freeze_count() == 0
        survivor = [Node() for _ in range(100)]
        gcwatch.opened()
        assert gcwatch.maybe_freeze()
        assert gc.get_freeze_count() >= len(survivor)
        assert not gcwatch.maybe_freeze()  # the counter starts again
    finally:
        gc.unfreeze()


def test_dispatch_pause_defers_collection_and_restores_it() -> None:
    """Inside `paused` nothing collects automatically; after it the collector is as before."""
    assert gc.isenabled()
    with gcwatch.paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gcwatch.paused():
        raise RuntimeError("a failed dispatch")
    assert gc.isenabled()
    gc.disable()
    try:
        with gcwatch.paused():
            pass
        assert not gc.isenabled()  # someone else's choice stands
    finally:
        gc.enable()


def test_thaw_after_many_freezes_and_never_counts_on_the_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many freezes lead to one thaw; ticks that do not thaw never walk the frozen list."""

    def walk() -> int:
        raise AssertionError("maybe_thaw counted the frozen objects on a plain tick")

    monkeypatch.setattr(gcwatch, "_freezes", 0)
    monkeypatch.setattr(gcwatch, "_closed", 0)
    monkeypatch.setattr(gcwatch, "_last_thaw", long_ago())
    real_count = gc.get_freeze_count
    monkeypatch.setattr(gc, "get_freeze_count", walk)
    assert not gcwatch.maybe_thaw(open_sockets=10)
    monkeypatch.setattr(gcwatch, "_freezes", gcwatch.THAW_AFTER_FREEZES)
    monkeypatch.setattr(gc, "get_freeze_count", real_count)
    try:
        assert gcwatch.maybe_thaw(open_sockets=10)
        assert gcwatch._freezes == 0
    finally:
        gc.unfreeze()


def test_thaws_after_closes_back_off_while_they_find_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thaw after many closes that collects next to nothing doubles the wait before the
    next one; one that finds a leaking socket's worth of garbage per close resets it."""
    base = gcwatch.THAW_MIN_INTERVAL
    closes = gcwatch.THAW_AFTER_CLOSED
    monkeypatch.setattr(gcwatch, "_closed_interval", base)
    monkeypatch.setattr(gcwatch, "_freezes", 0)
    monkeypatch.setattr(gcwatch, "_watched", deque(maxlen=gcwatch.WATCHED))

    def thaw_after(seconds: float) -> bool:
        monkeypatch.setattr(gcwatch, "_closed", closes)
        monkeypatch.setattr(gcwatch, "_last_thaw", time.monotonic() - seconds)
        return gcwatch.maybe_thaw(open_sockets=10)

    try:
        gc.collect()
        assert thaw_after(base + 1)  # nothing to find
        assert gcwatch._closed_interval == 2 * base
        assert not thaw_after(base + 1)
        assert thaw_after(2 * base + 1)
        assert gcwatch._closed_interval == 4 * base
        leaked = []
        for _ in range(closes * gcwatch.GARBAGE_PER_CLOSED // 2):
            a: list[object] = []
            a.append([a])  # two lists in a cycle
            leaked.append(a)
        gc.freeze()
        del leaked, a  # garbage now, frozen: as a closed socket's cycles would be
        assert thaw_after(4 * base + 1)
        assert gcwatch._closed_interval == base
    finally:
        gc.unfreeze()


def test_closed_sockets_seen_alive_bring_the_thaw_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """While watched closed sockets outlive their close, many closes bring a thaw a minute
    after the last; while they all go at once, the same closes bring none before the longer
    wait."""
    monkeypatch.setattr(gcwatch, "_watched", deque(maxlen=gcwatch.WATCHED))
    monkeypatch.setattr(gcwatch, "_closed_interval", gcwatch.THAW_UNSEEN_INTERVAL)
    monkeypatch.setattr(gcwatch, "_freezes", 0)
    monkeypatch.setattr(gcwatch, "_closed", 0)
    monkeypatch.setattr(gcwatch, "LEAK_AFTER", 0.0)
    a_minute_ago = time.monotonic() - gcwatch.THAW_MIN_INTERVAL - 1
    try:
        for _ in range(gcwatch.THAW_AFTER_CLOSED):
            gcwatch.closed(Node())  # freed at once, as a closed socket should be
        assert not gcwatch.leaking()
        monkeypatch.setattr(gcwatch, "_last_thaw", a_minute_ago)
        assert not gcwatch.maybe_thaw(open_sockets=10)
        kept = [Node() for _ in range(10)]  # closed, yet still alive
        for i in range(gcwatch.THAW_AFTER_CLOSED):
            gcwatch.closed(kept[i % len(kept)])
        assert gcwatch.leaking()
        assert gcwatch.maybe_thaw(open_sockets=10)
        assert not gcwatch.leaking()  # a thaw starts the watch again
    finally:
        gc.unfreeze()
