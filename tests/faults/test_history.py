"""The history checker on hand-built histories: each anomaly it exists to catch, and a clean
history that passes."""

from __future__ import annotations

from typing import Any

from tests.faults.history import Database, History, check

SLOT = "00000000-0000-0000-0000-00000000000a"
OTHER = "00000000-0000-0000-0000-00000000000b"


def slot(version: int, booked: int = 0, held: int = 0, capacity: int = 2,
         sid: str = SLOT) -> dict[str, Any]:
    return {"id": sid, "capacity": capacity, "booked": booked, "held": held,
            "available": capacity - booked - held, "version": version}


def booked(history: History, rid: str, after: dict[str, Any], client: str = "c1",
           key: str | None = None) -> None:
    op = history.invoke(client, "book", slot_id=after["id"], idempotency_key=key)
    history.complete(op, 201, {"booking": {"id": rid, "slot_id": after["id"], "quantity": 1,
                                           "status": "confirmed"}, "slot": after})


def database(*slots: dict[str, Any], reservations: dict[str, dict[str, Any]] | None = None,
             keys: set[str] | None = None) -> Database:
    return Database({s["id"]: s for s in slots}, reservations or {}, keys or set())


def booking(status: str = "confirmed", sid: str = SLOT) -> dict[str, Any]:
    return {"kind": "booking", "status": status, "slot_id": sid, "quantity": 1}


def subscribed(*slots: dict[str, Any]) -> dict[str, Any]:
    return {"type": "subscribed", "channel": "service:x", "cursor": "1@e",
            "snapshot": {"slots": list(slots)}}


def updated(state: dict[str, Any], reason: str = "booked") -> dict[str, Any]:
    return {"type": "availability:updated", "channel": "service:x", "cursor": "2@e",
            "reason": reason, "slot": state}


def clean() -> tuple[History, Database]:
    """Two bookings, one cancelled, a refused attempt, a subscriber that saw it all."""
    h = History()
    booked(h, "r1", slot(2, booked=1))
    booked(h, "r2", slot(3, booked=2), client="c2")
    h.complete(h.invoke("c3", "book", slot_id=SLOT), 409,
               {"error": {"code": "BOOKING_CONFLICT", "slot": slot(3, booked=2)}})
    h.complete(h.invoke("c1", "cancel", booking_id="r1"), 200,
               {"booking": {"id": "r1", "status": "cancelled"}, "slot": slot(4, booked=1)})
    sub = h.subscriber("s1")
    sub.expects = {SLOT}
    for frame in (subscribed(slot(1)), updated(slot(2, booked=1)), updated(slot(3, booked=2)),
                  {"type": "conflict:detected", "slot": slot(3, booked=2)},
                  updated(slot(4, booked=1), "cancelled")):
        sub.received(frame)
    db = database(slot(4, booked=1), reservations={"r1": booking("cancelled"), "r2": booking()})
    return h, db


def kinds(history: History, db: Database, coalesced: bool = False) -> list[str]:
    return sorted(a.kind for a in check(history, db, coalesced))


def test_a_clean_history_passes():
    """Acknowledged writes all stored, counters right, the subscriber current: no anomaly."""
    history, db = clean()
    assert check(history, db) == []


def test_a_lost_acknowledged_booking_is_caught():
    """A booking answered 201 that the database does not have is a lost ack."""
    history, db = clean()
    del db.reservations["r2"]
    db.slots[SLOT].update(booked=0, available=2)
    assert "lost-ack" in kinds(history, db)


def test_a_booking_cancelled_by_nobody_is_caught():
    """An acknowledged booking found cancelled though no client cancelled it is a lost ack."""
    history, db = clean()
    db.reservations["r2"]["status"] = "cancelled"
    db.slots[SLOT].update(booked=0, available=2)
    assert "lost-ack" in kinds(history, db)


def test_a_lost_acknowledged_cancel_is_caught():
    """A cancel answered 200 whose booking is still confirmed is a lost ack."""
    history, db = clean()
    db.reservations["r1"]["status"] = "confirmed"
    assert "lost-ack" in kinds(history, db)


def test_two_bookings_acknowledged_at_one_version_are_a_double_booking():
    """Two reservations acknowledged with the same slot version: one of them was not counted."""
    h = History()
    booked(h, "r1", slot(2, booked=1, capacity=1))
    booked(h, "r2", slot(2, booked=1, capacity=1), client="c2")
    db = database(slot(2, booked=1, capacity=1), reservations={"r1": booking()})
    assert "double-booking" in kinds(h, db)


def test_more_acknowledged_live_bookings_than_capacity_are_a_double_booking():
    """Bookings acknowledged and never cancelled beyond the slot's capacity are caught even
    when the database's counters look consistent."""
    h = History()
    booked(h, "r1", slot(2, booked=1, capacity=1))
    booked(h, "r2", slot(3, booked=1, capacity=1), client="c2")
    db = database(slot(3, booked=1, capacity=1),
                  reservations={"r1": booking(), "r2": booking("cancelled")})
    assert "double-booking" in kinds(h, db)


def test_capacity_exceeded_in_the_database_is_caught():
    """booked + held over capacity, and counters that disagree with the rows, are caught."""
    history, db = clean()
    db.slots[SLOT].update(booked=3, available=-1)
    assert kinds(history, db).count("capacity") == 2
    assert "stale-view" in kinds(history, db)


def test_a_stale_final_view_is_caught():
    """A subscriber that missed the last change shows an older state than the database."""
    history, db = clean()
    history.subscribers[0].frames.pop()
    assert kinds(history, db) == ["stale-view"]


def test_a_slot_never_received_is_a_stale_view():
    """A subscriber expected to show a slot that it never got is stale."""
    history, db = clean()
    history.subscribers[0].expects.add(OTHER)
    db.slots[OTHER] = slot(1, sid=OTHER)
    assert kinds(history, db) == ["stale-view"]


def test_a_version_gap_is_caught_unless_the_server_coalesced():
    """An update skipping a version is a gap; allowed only when the server coalesced."""
    history, db = clean()
    del history.subscribers[0].frames[2]  # version 3 never arrived; 4 did
    assert kinds(history, db) == ["version-gap"]
    assert kinds(history, db, coalesced=True) == []


def test_versions_out_of_order_are_caught():
    """An update older than one already received, or a repeated one, is out of order."""
    history, db = clean()
    frames = history.subscribers[0].frames
    frames[1], frames[2] = frames[2], frames[1]
    assert "version-order" in kinds(history, db)
    history, db = clean()
    history.subscribers[0].frames.insert(3, history.subscribers[0].frames[2])
    assert kinds(history, db) == ["version-order"]


def test_a_snapshot_may_jump_ahead_but_not_back():
    """A fresh snapshot after a reconnect may skip versions; one older than what the
    subscriber had is going back in time."""
    history, db = clean()
    sub = history.subscribers[0]
    sub.frames[2:] = []
    sub.received(subscribed(slot(4, booked=1)))
    assert check(history, db) == []
    sub.received(subscribed(slot(3, booked=2)))
    assert "version-order" in kinds(history, db)


def test_a_resume_with_events_must_continue_exactly():
    """A resume answered with `events` continues the versions; a gap in it is caught."""
    history, db = clean()
    sub = history.subscribers[0]
    sub.frames[2:] = []
    sub.received({"type": "subscribed", "channel": "service:x", "cursor": "5@e",
                  "events": [updated(slot(4, booked=1), "cancelled")]})
    assert kinds(history, db) == ["version-gap"]


def test_a_503_that_changed_something_is_a_phantom_write():
    """A booking answered 503 without `outcome: unknown` promised nothing changed; its key
    stored in the database says otherwise. With `outcome: unknown` it is allowed."""
    history, db = clean()
    op = history.invoke("c4", "book", slot_id=SLOT, idempotency_key="k1")
    history.complete(op, 503, {"error": {"code": "DATABASE_UNAVAILABLE"}})
    db.idempotency_keys.add("k1")
    assert kinds(history, db) == ["phantom-write"]
    op.body["error"]["outcome"] = "unknown"
    assert check(history, db) == []


def test_an_operation_without_answer_counts_as_unknown():
    """No answer at all (a timeout) is an unknown outcome, not a phantom write."""
    history, db = clean()
    history.no_answer(history.invoke("c4", "book", slot_id=SLOT, idempotency_key="k2"), "timeout")
    db.idempotency_keys.add("k2")
    assert check(history, db) == []
    assert history.summary()["book no answer"] == 1
