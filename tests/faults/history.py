"""A history of what every client did and saw during a fault run, checked against the database.

Clients record each operation when they invoke it and when it completes (the HTTP status and
body, or no answer at all), and each subscriber records every frame it received, in order,
across its reconnects. `check` then compares the history with the database as it stands
after the run (`read_database`) and names every anomaly:

- `lost-ack`: a booking or hold answered 201 that the database does not have, or a cancel
  answered 200 whose booking is not cancelled;
- `phantom-write`: a booking answered 503 without `"outcome": "unknown"` (which promises that
  nothing was changed) whose Idempotency-Key the database holds anyway, no later attempt
  with that key having been made;
- `double-booking`: two different reservations acknowledged at the same version of one slot,
  or acknowledged bookings still live (never cancelled) that hold more than the capacity;
- `capacity`: a slot whose booked + held exceed its capacity, or whose counters disagree
  with its reservations;
- `stale-view`: a subscriber whose final state of a slot differs from the database's;
- `version-gap`: an update that skips versions of a slot, unless the server coalesced a slow
  reader's backlog (the protocol allows it: the newest state replaces older frames);
- `version-order`: an update whose version is not newer than the one before it, or a snapshot
  older than what the subscriber already had (a subscriber never goes back in time).

A snapshot (the first subscribe, or a resume the server could not honour) may jump ahead:
it replaces the subscriber's state. A resume answered with `events` must continue exactly.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg

# The fields of a slot a subscriber's view must agree on with the database.
SLOT_FIELDS = ("capacity", "booked", "held", "available", "version")


@dataclass
class Op:
    """One client operation: `kind` is book, hold, cancel or release."""

    client: str
    kind: str
    request: dict[str, Any]
    invoked: float
    completed: float | None = None
    status: int | None = None  # None: no answer (the connection failed or timed out)
    body: Any = None
    error: str | None = None  # why there was no answer

    @property
    def ok(self) -> bool:
        return self.status in (200, 201)

    @property
    def code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None

    @property
    def outcome_unknown(self) -> bool:
        """No answer, or an error saying the request may have reached the database."""
        if self.status is None:
            return True
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return isinstance(error, dict) and error.get("outcome") == "unknown"

    @property
    def latency(self) -> float | None:
        return None if self.completed is None else self.completed - self.invoked


@dataclass
class SubscriberLog:
    """Every frame one subscriber received, in order, across its connections."""

    name: str
    frames: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    expects: set[str] = field(default_factory=set)  # slots its view must hold at the end

    def received(self, frame: dict[str, Any]) -> None:
        self.frames.append((time.monotonic(), frame))

    def view(self) -> dict[str, dict[str, Any]]:
        """The slots as this subscriber shows them now: snapshots replace, updates apply
        when newer (the client rule of docs/protocol.md)."""
        slots: dict[str, dict[str, Any]] = {}
        for _, frame in self.frames:
            for slot in _states(frame):
                have = slots.get(slot["id"])
                if frame["type"] == "subscribed" and "snapshot" in frame:
                    slots[slot["id"]] = slot
                elif have is None or slot["version"] > have["version"]:
                    slots[slot["id"]] = slot
        return slots


def _states(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The slot states a frame carries (conflicts carry none: they change nothing)."""
    if frame.get("type") == "subscribed":
        if "snapshot" in frame:
            return list(frame["snapshot"]["slots"])
        return [e["slot"] for e in frame.get("events", ()) if e["type"] == "availability:updated"]
    if frame.get("type") == "availability:updated":
        return [frame["slot"]]
    return []


@dataclass(frozen=True)
class Anomaly:
    kind: str
    detail: str


@dataclass
class Database:
    """What the checks need of the database after a run."""

    slots: dict[str, dict[str, Any]]  # id -> capacity, booked, held, available, version
    reservations: dict[str, dict[str, Any]]  # id -> kind, status, slot_id, quantity
    idempotency_keys: set[str]


class History:
    """Thread- and task-safe enough for clients in one event loop and in threads."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.subscribers: list[SubscriberLog] = []
        self._lock = threading.Lock()

    def invoke(self, client: str, kind: str, **request: Any) -> Op:
        op = Op(client, kind, request, time.monotonic())
        with self._lock:
            self.ops.append(op)
        return op

    @staticmethod
    def complete(op: Op, status: int, body: Any) -> Op:
        op.completed, op.status, op.body = time.monotonic(), status, body
        return op

    @staticmethod
    def no_answer(op: Op, error: str) -> Op:
        op.completed, op.error = time.monotonic(), error
        return op

    def subscriber(self, name: str) -> SubscriberLog:
        log = SubscriberLog(name)
        with self._lock:
            self.subscribers.append(log)
        return log

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for op in self.ops:
            counts[f"{op.kind} {op.status if op.status is not None else 'no answer'}"] += 1
        counts["frames"] = sum(len(s.frames) for s in self.subscribers)
        return dict(sorted(counts.items()))


async def read_database(dsn: str) -> Database:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            slots = await conn.fetch(
                "SELECT id::text, capacity, booked, held, capacity - booked - held AS available, "
                "version FROM rt_slots")
            reservations = await conn.fetch(
                "SELECT id::text, kind, status, slot_id::text, quantity FROM rt_reservations")
            keys = await conn.fetch("SELECT key FROM rt_idempotency_keys")
    finally:
        await conn.close()
    return Database({r["id"]: dict(r) for r in slots},
                    {r["id"]: dict(r) for r in reservations}, {r["key"] for r in keys})


def check(history: History, db: Database, coalesced: bool = False) -> list[Anomaly]:
    """Every anomaly of the history against the database. `coalesced`: the server reported
    coalescing a slow reader's backlog during the run, so version gaps are allowed."""
    return [*_acknowledged(history, db), *_capacity(history, db),
            *(a for s in history.subscribers for a in _subscriber(s, db, coalesced))]


def _acknowledged(history: History, db: Database) -> list[Anomaly]:
    found: list[Anomaly] = []
    cancels: dict[str, list[Op]] = defaultdict(list)
    for op in history.ops:
        if op.kind == "cancel":
            cancels[op.request["booking_id"]].append(op)
    later_keys = defaultdict(list)
    for op in history.ops:
        if (key := op.request.get("idempotency_key")) is not None:
            later_keys[key].append(op)
    for op in history.ops:
        if op.kind in ("book", "hold") and op.status == 201:
            what = "booking" if op.kind == "book" else "hold"
            rid = op.body[what]["id"]
            row = db.reservations.get(rid)
            if row is None or row["kind"] != what:
                found.append(Anomaly("lost-ack", f"{op.client}: {what} {rid} acknowledged, "
                                                 "not in the database"))
            elif what == "booking" and row["status"] == "cancelled" and not cancels[rid]:
                found.append(Anomaly("lost-ack", f"{op.client}: booking {rid} acknowledged, "
                                                 "cancelled in the database by nobody"))
        elif op.kind == "cancel" and op.status == 200:
            row = db.reservations.get(op.request["booking_id"])
            if row is None or row["status"] != "cancelled":
                found.append(Anomaly("lost-ack", f"{op.client}: cancel of "
                                                 f"{op.request['booking_id']} acknowledged, "
                                                 f"the booking is {row and row['status']}"))
        elif (op.kind == "book" and op.status == 503 and not op.outcome_unknown
              and (key := op.request.get("idempotency_key")) in db.idempotency_keys
              and later_keys[key][-1] is op):
            found.append(Anomaly("phantom-write", f"{op.client}: booking with key {key} "
                                                  "answered 503 (nothing changed), yet stored"))
    return found


def _capacity(history: History, db: Database) -> list[Anomaly]:
    found: list[Anomaly] = []
    for sid, slot in db.slots.items():
        if slot["booked"] + slot["held"] > slot["capacity"] or min(slot["booked"], slot["held"]) < 0:
            found.append(Anomaly("capacity", f"slot {sid}: capacity {slot['capacity']}, "
                                             f"booked {slot['booked']}, held {slot['held']}"))
    live: dict[tuple[str, str], int] = defaultdict(int)
    for row in db.reservations.values():
        active = (row["kind"], row["status"]) in (("booking", "confirmed"), ("hold", "active"))
        if active:
            live[(row["slot_id"], row["kind"])] += row["quantity"]
    for sid, slot in db.slots.items():
        if (slot["booked"], slot["held"]) != (live[(sid, "booking")], live[(sid, "hold")]):
            found.append(Anomaly("capacity", f"slot {sid}: counters booked {slot['booked']} "
                                             f"held {slot['held']} disagree with reservations"))
    # Each acknowledged change of a slot made a version of its own; a replay (same id) aside.
    at_version: dict[tuple[str, int], set[str]] = defaultdict(set)
    cancelled_tried = {op.request["booking_id"] for op in history.ops if op.kind == "cancel"}
    held_by_acks: dict[str, dict[str, int]] = defaultdict(dict)
    for op in history.ops:
        if op.kind in ("book", "hold") and op.status == 201:
            what = "booking" if op.kind == "book" else "hold"
            rid, slot = op.body[what]["id"], op.body["slot"]
            at_version[(slot["id"], slot["version"])].add(rid)
            if what == "booking" and rid not in cancelled_tried:
                held_by_acks[slot["id"]][rid] = op.body[what]["quantity"]
    for (sid, version), ids in at_version.items():
        if len(ids) > 1:
            found.append(Anomaly("double-booking", f"slot {sid}: {len(ids)} reservations "
                                                   f"acknowledged at version {version}"))
    for sid, acked in held_by_acks.items():
        capacity = db.slots[sid]["capacity"] if sid in db.slots else 0
        if sum(acked.values()) > capacity:
            found.append(Anomaly("double-booking", f"slot {sid}: {sum(acked.values())} units "
                                                   f"acknowledged and never cancelled, "
                                                   f"capacity {capacity}"))
    return found


def _subscriber(sub: SubscriberLog, db: Database, coalesced: bool) -> list[Anomaly]:
    found: list[Anomaly] = []
    last: dict[str, int] = {}
    for _, frame in sub.frames:
        snapshot = frame.get("type") == "subscribed" and "snapshot" in frame
        for slot in _states(frame):
            sid, version = slot["id"], slot["version"]
            before = last.get(sid)
            if before is not None:
                if snapshot:
                    if version < before:
                        found.append(Anomaly("version-order", f"{sub.name}: snapshot of slot "
                                             f"{sid} at version {version} after {before}"))
                elif version <= before:
                    found.append(Anomaly("version-order", f"{sub.name}: slot {sid} version "
                                         f"{version} after {before}"))
                elif version > before + 1 and not coalesced:
                    found.append(Anomaly("version-gap", f"{sub.name}: slot {sid} version "
                                         f"{version} after {before}"))
            last[sid] = max(version, before or 0)
    view = sub.view()
    for sid in sorted(sub.expects - view.keys()):
        found.append(Anomaly("stale-view", f"{sub.name}: slot {sid} never received"))
    for sid, slot in view.items():
        want = db.slots.get(sid)
        if want is None:
            found.append(Anomaly("stale-view", f"{sub.name}: slot {sid} is not in the database"))
            continue
        got = {k: slot.get(k) for k in SLOT_FIELDS}
        expected = {k: want[k] for k in SLOT_FIELDS}
        if got != expected:
            found.append(Anomaly("stale-view", f"{sub.name}: slot {sid} shows {got}, "
                                               f"the database has {expected}"))
    return found
