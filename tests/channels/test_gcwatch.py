"""The collector policy: freeze after full collections, thaw after many sockets closed."""

from __future__ import annotations

import gc
import weakref

import pytest

from realtime.channels import gcwatch


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


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
        assert gc.get_freeze_count() == frozen and alive() is not None
        for _ in range(gcwatch.THAW_AFTER_CLOSED):
            gcwatch.closed()
        monkeypatch.setattr(gcwatch, "_last_thaw", 0.0)
        assert gcwatch.maybe_thaw(open_sockets=10)
        assert alive() is None
        assert not gcwatch.maybe_thaw(open_sockets=10)
    finally:
        if gcwatch._callback in gc.callbacks:
            gc.callbacks.remove(gcwatch._callback)
        gc.unfreeze()
