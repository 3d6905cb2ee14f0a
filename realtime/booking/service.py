"""The Python side of booking: calls the database functions and maps their outcomes.

HTTP routes and WebSocket messages both go through `BookingService`, so a booking behaves the
same whichever door it came in by. Inputs reaching this module are already validated for
shape (realtime.validation); the database still enforces every invariant.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
import orjson

from realtime import errors
from realtime.booking import cursor
from realtime.booking.events import EVENT_COLUMNS, Event
from realtime.booking.gate import SlotGates
from realtime.db import retrying
from realtime.pool import Pool

ChannelKind = Literal["vendor", "service"]
SNAPSHOT_LIMIT = 10_000  # slots in one snapshot; documented in docs/protocol.md
RESUME_LIMIT = 10_000  # events in one resume; past it the client gets a snapshot


@dataclass(frozen=True)
class Snapshot:
    slots: list[dict[str, Any]]
    pos: int
    epoch: str
    pending_ids: list[int]

    @property
    def cursor(self) -> str:
        return cursor.encode(self.pos, self.epoch)


@dataclass(frozen=True)
class EventsPage:
    events: list[Event]
    pos: int
    epoch: str


_SUCCESS = {"booked", "held", "released", "cancelled", "changed", "created"}


def _outcome(result: dict[str, Any]) -> dict[str, Any]:
    """Turns a function's jsonb outcome into the success body, or raises the contract error."""
    outcome = result.get("outcome")
    if outcome in _SUCCESS:
        return {k: v for k, v in result.items() if k not in ("outcome", "changed")}
    if outcome == "conflict":
        raise errors.BookingConflict(
            slot=result["slot"], alternatives=result["alternatives"], reason=result["reason"])
    if outcome == "slot_not_found":
        raise errors.SlotNotFound()
    if outcome == "service_not_found":
        raise errors.ServiceNotFound()
    if outcome == "hold_not_found":
        raise errors.HoldNotFound()
    if outcome == "booking_not_found":
        raise errors.BookingNotFound()
    if outcome == "hold_expired":
        raise errors.HoldExpired(f"the hold is {result.get('hold_status', 'expired')}",
                                 hold_status=result.get("hold_status"), slot=result.get("slot"))
    if outcome == "capacity_below_usage":
        raise errors.CapacityBelowUsage(slot=result["slot"])
    if outcome == "idempotency_key_reused":
        raise errors.IdempotencyKeyReused()
    if outcome == "invalid":
        raise errors.ValidationError(result["field"], result["message"])
    raise RuntimeError(f"unexpected outcome from the database: {outcome!r}")


def request_hash(**fields: Any) -> str:
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()


class BookingService:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.gates = SlotGates()

    async def _call(self, sql: str, *args: Any) -> dict[str, Any]:
        return _outcome(await retrying(lambda: self.pool.fetchval(sql, *args)))

    # -- admin ------------------------------------------------------------------------------

    async def create_vendor(self, name: str) -> dict[str, Any]:
        row = await retrying(lambda: self.pool.fetchrow(
            "INSERT INTO rt_vendors (name) VALUES ($1) RETURNING id::text, name", name))
        assert row is not None  # INSERT ... RETURNING without a WHERE always returns it
        return dict(row)

    async def create_service(self, vendor_id: str, name: str, exclusive: bool) -> dict[str, Any]:
        row = await retrying(lambda: self.pool.fetchrow(
            """INSERT INTO rt_services (vendor_id, name, exclusive)
               SELECT id, $2, $3 FROM rt_vendors WHERE id = $1
               RETURNING id::text, vendor_id::text, name, exclusive""",
            vendor_id, name, exclusive))
        if row is None:
            raise errors.VendorNotFound()
        return dict(row)

    async def create_slots(self, service_id: str, slots: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._call("SELECT rt_create_slots($1, $2::jsonb)", service_id, slots)

    async def set_capacity(self, slot_id: str, capacity: int) -> dict[str, Any]:
        body = await self._call("SELECT rt_set_capacity($1, $2)", slot_id, capacity)
        return body["slot"]

    # -- reads ------------------------------------------------------------------------------

    async def get_vendor(self, vendor_id: str) -> dict[str, Any]:
        async def op() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:
                vendor = await conn.fetchrow(
                    "SELECT id::text, name FROM rt_vendors WHERE id = $1", vendor_id)
                if vendor is None:
                    return []
                services = await conn.fetch(
                    """SELECT id::text, vendor_id::text, name, exclusive FROM rt_services
                       WHERE vendor_id = $1 ORDER BY created_at, id""", vendor_id)
                return [vendor, *services]

        rows = await retrying(op)
        if not rows:
            raise errors.VendorNotFound()
        return {**dict(rows[0]), "services": [dict(r) for r in rows[1:]]}

    async def get_service(self, service_id: str) -> dict[str, Any]:
        row = await retrying(lambda: self.pool.fetchrow(
            "SELECT id::text, vendor_id::text, name, exclusive FROM rt_services WHERE id = $1",
            service_id))
        if row is None:
            raise errors.ServiceNotFound()
        return dict(row)

    async def snapshot(self, kind: ChannelKind, id_: str, from_: datetime | None = None,
                       to: datetime | None = None) -> Snapshot:
        """The channel's slots and the log position they correspond to, with no hole.

        One REPEATABLE READ transaction reads the slots, the last numbered position and the
        events that are committed but not yet numbered: the slots are exactly the state at
        `pos` plus those events, which the hub skips once when they arrive numbered.
        """
        column = "vendor_id" if kind == "vendor" else "service_id"
        owner = "rt_vendors" if kind == "vendor" else "rt_services"
        # One statement is one snapshot: no explicit transaction, one round trip.
        sql = f"""
            SELECT EXISTS (SELECT 1 FROM {owner} WHERE id = $1) AS found,
                   (SELECT coalesce(jsonb_agg(rt_slot_json(s) ORDER BY s.starts_at, s.id), '[]')
                    FROM (SELECT * FROM rt_slots s
                          WHERE s.{column} = $1
                            AND ($2::timestamptz IS NULL OR s.ends_at > $2)
                            AND ($3::timestamptz IS NULL OR s.starts_at < $3)
                          ORDER BY s.starts_at, s.id LIMIT {SNAPSHOT_LIMIT}) s) AS slots,
                   q.epoch, q.last_pos,
                   ARRAY(SELECT e.id FROM rt_events e
                         WHERE e.pos IS NULL AND e.{column} = $1 ORDER BY e.id) AS pending
            FROM rt_sequencer q WHERE q.id = 1"""
        row = await retrying(lambda: self.pool.fetchrow(sql, id_, from_, to))
        assert row is not None  # rt_sequencer's one row exists from the first migration
        if not row["found"]:
            raise errors.VendorNotFound() if kind == "vendor" else errors.ServiceNotFound()
        return Snapshot(row["slots"], row["last_pos"], row["epoch"], list(row["pending"]))

    async def availability(self, kind: ChannelKind, id_: str, from_: datetime | None,
                           to: datetime | None) -> dict[str, Any]:
        snap = await self.snapshot(kind, id_, from_, to)
        return {"channel": f"{kind}:{id_}", "cursor": snap.cursor, "slots": snap.slots}

    async def events_since(self, kind: ChannelKind, id_: str, pos: int,
                           epoch: str) -> EventsPage | None:
        """Exactly the channel's events after `pos`, or None when they are no longer all kept.

        Raises VendorNotFound / ServiceNotFound for a channel that does not exist.
        """
        column = "vendor_id" if kind == "vendor" else "service_id"
        owner = "rt_vendors" if kind == "vendor" else "rt_services"
        # One statement is one snapshot: the state row and the events agree.
        sql = f"""
            SELECT EXISTS (SELECT 1 FROM {owner} WHERE id = $1) AS q_found,
                   q.epoch AS q_epoch, q.last_pos AS q_last, q.pruned_pos AS q_pruned, e.*
            FROM rt_sequencer q
            LEFT JOIN LATERAL (
                SELECT {EVENT_COLUMNS} FROM rt_events
                WHERE {column} = $1 AND pos > $2 AND pos <= q.last_pos
                ORDER BY pos LIMIT {RESUME_LIMIT + 1}) e ON true
            WHERE q.id = 1"""
        rows = await retrying(lambda: self.pool.fetch(sql, id_, pos))
        state = rows[0]
        if not state["q_found"]:
            raise errors.VendorNotFound() if kind == "vendor" else errors.ServiceNotFound()
        if epoch != state["q_epoch"] or pos < state["q_pruned"] or pos > state["q_last"]:
            return None
        if len(rows) > RESUME_LIMIT:
            return None
        events = [Event.from_record(tuple(r)[4:]) for r in rows if r["pos"] is not None]
        return EventsPage(events, state["q_last"], state["q_epoch"])

    # -- customer ---------------------------------------------------------------------------

    async def book(self, slot_id: str, quantity: int | None = None,
                   customer_id: str | None = None, hold_id: str | None = None,
                   owner: str | None = None, idempotency_key: str | None = None,
                   idempotency_scope: str = "") -> dict[str, Any]:
        digest = None
        if idempotency_key is not None:
            digest = request_hash(slot_id=slot_id, quantity=quantity, hold_id=hold_id,
                                  customer_id=customer_id)
        return await self._gated(
            slot_id, "SELECT rt_book($1, $2, $3, $4, $5, $6, $7, $8)", slot_id, quantity,
            customer_id, hold_id, owner, idempotency_scope, idempotency_key, digest)

    async def hold(self, slot_id: str, quantity: int = 1, ttl_seconds: int = 300,
                   customer_id: str | None = None) -> dict[str, Any]:
        return await self._gated(slot_id, "SELECT rt_hold($1, $2, $3, $4)", slot_id, quantity,
                                 customer_id, ttl_seconds)

    async def _gated(self, slot_id: str, sql: str, *args: Any) -> dict[str, Any]:
        """A write that locks the slot's row, through this process's gate for that slot."""
        async with self.gates.enter(slot_id):
            result = await retrying(lambda: self.pool.fetchval(sql, *args))
        slot = result.get("slot")
        if slot:  # absent when the slot, or the hold being confirmed, does not exist
            self.gates.seen(slot["id"], slot["available"])
        return _outcome(result)

    async def release(self, hold_id: str, owner: str | None = None) -> dict[str, Any]:
        return await self._call("SELECT rt_release($1, $2)", hold_id, owner)

    async def cancel(self, booking_id: str, owner: str | None = None) -> dict[str, Any]:
        return await self._call("SELECT rt_cancel($1, $2)", booking_id, owner)

    async def get_booking(self, booking_id: str, owner: str | None = None) -> dict[str, Any]:
        row = await retrying(lambda: self.pool.fetchrow(
            """SELECT rt_booking_json(r) AS booking, rt_slot_json(s) AS slot
               FROM rt_reservations r JOIN rt_slots s ON s.id = r.slot_id
               WHERE r.id = $1 AND r.kind = 'booking'
                 AND ($2::text IS NULL OR r.customer_id = $2)""", booking_id, owner))
        if row is None:
            raise errors.BookingNotFound()
        return {"booking": row["booking"], "slot": row["slot"]}

    # -- maintenance ------------------------------------------------------------------------

    async def expire_holds(self, limit: int = 500) -> int:
        return int(await retrying(lambda: self.pool.fetchval(
            "SELECT rt_expire_holds($1)", limit)))

    async def demo_vendor_id(self) -> str | None:
        from realtime.booking.demo import DEMO_VENDOR_NAME

        return await retrying(lambda: self.pool.fetchval(
            "SELECT id::text FROM rt_vendors WHERE name = $1 ORDER BY created_at LIMIT 1",
            DEMO_VENDOR_NAME))
