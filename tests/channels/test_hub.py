"""The hub's decisions (who gets which frame), without sockets or a database."""

from __future__ import annotations

import asyncio

import orjson

from realtime.channels.hub import Hub, Subscriber
from realtime.errors import CLOSE_OVERLOAD
from realtime.eventlog.cursor import encode
from realtime.eventlog.events import Event
from realtime.shared.presence import MemoryPresence

V = "v1"
S = "s1"
EPOCH = "ep"


def ev(pos: int, slot: str = "a", version: int | None = None, kind: str = "booked",
       service: str = S, eid: int | None = None) -> Event:
    version = pos if version is None else version
    slot_json = orjson.dumps({"id": slot, "version": version}).decode()
    alts = "[]" if kind == "conflict" else None
    return Event(pos, eid or pos, kind, slot, service, V, version, 1, slot_json, alts)


def sub(limit: int = 64) -> tuple[Subscriber, list[int]]:
    wakes: list[int] = []
    s = Subscriber(limit, lambda: wakes.append(1))
    return s, wakes


def joined(hub: Hub, s: Subscriber, channel: str, after: int = 0, skip: tuple[int, ...] = ()) -> None:
    hub.begin_join(s, channel)
    assert hub.activate(s, channel, '{"type":"subscribed"}', after, skip)
    s.take()


def drain(s: Subscriber) -> list[dict]:
    return [orjson.loads(frame) for frame in s.take()]


def test_one_frame_object_for_every_subscriber() -> None:
    """All subscribers of a channel get the very same string, built once; writers wake once."""
    hub = Hub(encode)
    subs = [sub() for _ in range(3)]
    for s, w in subs:
        joined(hub, s, f"service:{S}")
        w.clear()
    hub.dispatch([ev(1), ev(2)], EPOCH)
    frames = [list(s.frames) for s, _ in subs]
    assert all(f[0] is frames[0][0] and f[1] is frames[0][1] for f in frames)
    assert [len(w) for _, w in subs] == [1, 1, 1]
    msg = orjson.loads(frames[0][0])
    assert msg["channel"] == f"service:{S}" and msg["cursor"] == "1@ep"


def test_vendor_and_service_channels_each_get_their_frame() -> None:
    """An event reaches both its vendor channel and its service channel, and no other."""
    hub = Hub(encode)
    a, _ = sub()
    b, _ = sub()
    c, _ = sub()
    joined(hub, a, f"vendor:{V}")
    joined(hub, b, f"service:{S}")
    joined(hub, c, "service:other")
    hub.dispatch([ev(1)], EPOCH)
    assert [m["channel"] for m in drain(a)] == [f"vendor:{V}"]
    assert [m["channel"] for m in drain(b)] == [f"service:{S}"]
    assert drain(c) == []


def test_a_subscriber_of_both_channels_gets_the_batch_in_position_order() -> None:
    """One socket on an event's vendor and service channels gets their frames interleaved in
    position order, beside sockets of one channel that get theirs in one step."""
    hub = Hub(encode)
    both, wakes = sub()
    one, _ = sub()
    joined(hub, both, f"vendor:{V}")
    joined(hub, both, f"service:{S}")
    joined(hub, one, f"service:{S}")
    wakes.clear()
    hub.dispatch([ev(1, "a"), ev(2, "b"), ev(3, "a", service="s2")], EPOCH)
    assert [(m["channel"], m["cursor"]) for m in drain(both)] == [
        (f"vendor:{V}", "1@ep"), (f"service:{S}", "1@ep"), (f"vendor:{V}", "2@ep"),
        (f"service:{S}", "2@ep"), (f"vendor:{V}", "3@ep")]
    assert [m["cursor"] for m in drain(one)] == ["1@ep", "2@ep"]
    assert len(wakes) == 1


def test_pending_join_buffers_then_filters_by_position() -> None:
    """Frames dispatched while the snapshot is read are held, then only those after it pass."""
    hub = Hub(encode)
    s, _ = sub()
    channel = f"service:{S}"
    hub.begin_join(s, channel)
    hub.dispatch([ev(1), ev(2), ev(3)], EPOCH)
    assert len(s) == 0
    assert hub.activate(s, channel, '{"type":"subscribed"}', after_pos=2)
    hub.dispatch([ev(4)], EPOCH)
    msgs = drain(s)
    assert [m["type"] for m in msgs] == ["subscribed", "availability:updated",
                                         "availability:updated"]
    assert [m["cursor"] for m in msgs[1:]] == ["3@ep", "4@ep"]


def test_snapshot_ahead_of_the_hub_filters_future_positions() -> None:
    """A snapshot taken at a position the hub has not dispatched yet suppresses up to it."""
    hub = Hub(encode)
    s, _ = sub()
    joined(hub, s, f"service:{S}", after=5)
    hub.dispatch([ev(4), ev(5)], EPOCH)
    hub.dispatch([ev(6)], EPOCH)
    assert [m["cursor"] for m in drain(s)] == ["6@ep"]


def test_skip_ids_are_skipped_once() -> None:
    """Events already in the snapshot but unnumbered then are skipped once they arrive."""
    hub = Hub(encode)
    s, _ = sub()
    joined(hub, s, f"service:{S}", after=10, skip=(100, 101))
    hub.dispatch([ev(11, eid=100), ev(12, eid=102), ev(13, eid=101)], EPOCH)
    hub.dispatch([ev(14, eid=104)], EPOCH)
    assert [m["cursor"] for m in drain(s)] == ["12@ep", "14@ep"]


def test_unsubscribe_while_pending_aborts_the_join() -> None:
    """A subscription that went away before its snapshot arrived is not activated."""
    hub = Hub(encode)
    s, _ = sub()
    hub.begin_join(s, f"service:{S}")
    assert hub.leave(s, f"service:{S}")
    assert not hub.activate(s, f"service:{S}", "{}", 0)
    assert hub.subscribers(f"service:{S}") == 0 and not s.channels


def test_conflicts_coalesce_per_slot_per_batch() -> None:
    """A storm of conflicts on one slot in one batch is one frame, the newest."""
    hub = Hub(encode)
    s, _ = sub()
    joined(hub, s, f"service:{S}")
    batch = [ev(1, "a", 1, "conflict"), ev(2, "a", 1, "conflict"), ev(3, "b", 1, "conflict"),
             ev(4, "a", 2, "booked"), ev(5, "a", 2, "conflict")]
    hub.dispatch(batch, EPOCH)
    msgs = drain(s)
    assert [(m["type"], m["slot"]["id"], m["cursor"]) for m in msgs] == [
        ("conflict:detected", "b", "3@ep"),
        ("availability:updated", "a", "4@ep"),
        ("conflict:detected", "a", "5@ep"),
    ]


def test_one_big_batch_does_not_coalesce_a_reader_that_keeps_up() -> None:
    """A burst larger than the bound, to a reader with nothing pending, arrives whole."""
    hub = Hub(encode)
    s, _ = sub(limit=8)
    joined(hub, s, f"service:{S}")
    hub.dispatch([ev(i, slot="ab"[i % 2], version=i) for i in range(1, 40)], EPOCH)
    assert len(s) == 39 and s.close_code is None
    s.take()
    hub.dispatch([ev(i, slot="ab"[i % 2], version=i) for i in range(40, 200)], EPOCH)
    assert len(s) <= 8 * 8  # the hard bound still holds


def test_slow_reader_is_coalesced_to_newest_state_in_order() -> None:
    """Past the bound, a backlog keeps only the newest frame per slot, cursors still rising."""
    hub = Hub(encode)
    s, _ = sub(limit=8)
    joined(hub, s, f"service:{S}")
    s.send('{"type":"pong","id":"p"}')
    hub.dispatch([ev(1, slot="a", version=1)], EPOCH)  # not taken: the reader is behind
    events = [ev(i, slot="ab"[i % 2], version=i) for i in range(2, 20)]
    hub.dispatch(events, EPOCH)
    assert len(s) <= 8 and s.close_code is None
    msgs = drain(s)
    assert msgs[0]["type"] == "pong"
    updates = msgs[1:]
    assert {m["slot"]["id"]: m["slot"]["version"] for m in updates} == {"a": 18, "b": 19}
    cursors = [int(m["cursor"].split("@")[0]) for m in updates]
    assert cursors == sorted(cursors)


def test_reader_still_behind_after_coalescing_is_closed_1013() -> None:
    """When even one frame per slot is far past the bound, the subscriber is closed 1013."""
    hub = Hub(encode)
    slow, _ = sub(limit=8)
    fast, _ = sub(limit=1000)
    joined(hub, slow, f"service:{S}")
    joined(hub, fast, f"service:{S}")
    for i in range(1, 45):
        hub.dispatch([ev(i, slot=f"slot{i}")], EPOCH)
        fast.take()
    assert slow.close_code == CLOSE_OVERLOAD and len(slow) == 0
    assert fast.close_code is None
    hub.dispatch([ev(30)], EPOCH)
    assert len(slow) == 0


def test_presence_is_sent_on_change_only() -> None:
    """Presence frames go out when a channel's count changed since the last one sent."""
    presence = MemoryPresence()
    hub = Hub(encode, on_count=presence.changed)
    a, _ = sub()
    b, _ = sub()
    joined(hub, a, f"service:{S}")
    joined(hub, b, f"service:{S}")

    async def tick() -> int:
        return hub.presence(await presence.poll())

    assert asyncio.run(tick()) == 1
    assert drain(a) == [{"type": "presence", "channel": f"service:{S}", "count": 2}]
    drain(b)
    assert asyncio.run(tick()) == 0
    hub.drop(b)
    assert asyncio.run(tick()) == 1
    assert drain(a)[0]["count"] == 1
    assert drain(b) == []
    # A newcomer whose join was counted while its snapshot was read still hears the count.
    c, _ = sub()
    hub.begin_join(c, f"service:{S}")
    assert asyncio.run(tick()) == 1
    assert drain(a)[0]["count"] == 2
    hub.activate(c, f"service:{S}", '{"type":"subscribed"}', 0)
    c.take()
    assert asyncio.run(tick()) == 0
    assert drain(c) == [{"type": "presence", "channel": f"service:{S}", "count": 2}]
    assert drain(a) == []


def test_drop_forgets_every_subscription() -> None:
    """A closed socket leaves no trace in any channel."""
    hub = Hub(encode)
    s, _ = sub()
    joined(hub, s, f"service:{S}")
    joined(hub, s, f"vendor:{V}")
    hub.begin_join(s, "service:other")
    hub.drop(s)
    assert hub.channels() == [] and not s.channels
