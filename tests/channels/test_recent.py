"""The recent events a process holds for resumes: exactly the events after a cursor, or None."""

from __future__ import annotations

from realtime.eventlog.events import Event
from realtime.eventlog.recent import RecentEvents


def ev(pos: int, service: str = "s1", vendor: str = "v1") -> Event:
    return Event(pos, pos, "booked", f"slot-{pos}", service, vendor, pos, 1, "{}", None)


def test_resumes_within_what_is_held_get_exactly_the_channels_events():
    """After a cursor it holds, a channel gets its own events only, in order."""
    recent = RecentEvents(limit=100)
    recent.reset(10, "e")
    recent.extend([ev(11, "s1"), ev(12, "s2"), ev(13, "s1"), ev(14, "s2", "v2")])
    assert [e.pos for e in recent.since("service:s1", 10, "e") or []] == [11, 13]
    assert [e.pos for e in recent.since("service:s1", 11, "e") or []] == [13]
    assert [e.pos for e in recent.since("vendor:v1", 10, "e") or []] == [11, 12, 13]
    assert recent.since("service:s1", 14, "e") == []  # up to date
    assert recent.since("service:none", 12, "e") == []  # a quiet channel: nothing missed


def test_cursors_not_covered_are_refused():
    """Older than the floor, ahead of the top, or of another epoch: None (ask the database)."""
    recent = RecentEvents(limit=100)
    recent.reset(10, "e")
    recent.extend([ev(11), ev(12)])
    assert recent.since("service:s1", 9, "e") is None
    assert recent.since("service:s1", 13, "e") is None
    assert recent.since("service:s1", 11, "other") is None


def test_eviction_raises_the_floor_and_keeps_channels_consistent():
    """Past the limit the oldest events go; a cursor at the new floor still resumes exactly."""
    recent = RecentEvents(limit=3)
    recent.reset(0, "e")
    recent.extend([ev(1, "a"), ev(2, "b"), ev(3, "a"), ev(4, "b"), ev(5, "a")])
    assert len(recent) == 3 and recent.floor == 2 and recent.top == 5
    assert recent.since("service:a", 1, "e") is None
    assert [e.pos for e in recent.since("service:a", 2, "e") or []] == [3, 5]
    assert [e.pos for e in recent.since("service:b", 2, "e") or []] == [4]
    recent.extend([ev(6, "c"), ev(7, "c"), ev(8, "c")])
    assert recent.since("service:a", 5, "e") == [] and recent.floor == 5


def test_a_hole_starts_the_history_anew_after_it():
    """Events pruned before they were read, at the start of a batch or inside it: no cursor from
    before the hole is answered (it would skip the pruned events); one after it still is."""
    recent = RecentEvents(limit=100)
    recent.reset(10, "e")
    recent.extend([ev(11, "a"), ev(13, "a"), ev(14, "b")])  # 12 was never read
    assert recent.floor == 12 and recent.top == 14 and len(recent) == 2
    assert recent.since("service:a", 10, "e") is None
    assert recent.since("service:a", 11, "e") is None
    assert [e.pos for e in recent.since("service:a", 12, "e") or []] == [13]
    recent.extend([ev(17, "b"), ev(18, "a")])  # a hole before the whole batch
    assert recent.since("service:b", 14, "e") is None and "service:a" in recent
    assert [e.pos for e in recent.since("service:a", 16, "e") or []] == [18]
