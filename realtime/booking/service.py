"""The Python side of booking: calls the database functions and maps their outcomes.

HTTP routes and WebSocket messages both go through `BookingService`, so a booking behaves the
same whichever door it came in by. Inputs reaching this module are already validated for
shape; the database still enforces every invariant.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import asyncpg
import orjson

from realtime import errors, logs
from realtime.access import Acting
from realtime.booking.gate import SlotGates
from realtime.db.errors import DEADLINE, retrying, unavailable
from realtime.db.interface import ConnectionPool

# No customer, no ownership check, no idempotency scope: tools, tests and the demo. The audit
# trail names them "system".
ANYONE = Acting(None, None, "")
# The hold sweeper, as the audit trail names it.
SWEEPER = Acting(None, None, "", actor="sweeper")

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


def audited(acting: Acting) -> tuple[str, str]:
    """(actor, request id) for the audit rows of a change: the request's id, else the one
    the log lines carry, else a new one (a change made outside any request)."""
    return acting.actor, acting.request_id or logs.request_id.get() or logs.new_request_id()


def request_hash(**fields: Any) -> str:
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()


class BookingService:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.gates = SlotGates()

    async def _call(self, sql: str, *args: Any) -> dict[str, Any]:
        """A write through one of the database functions."""
        return _outcome(await retrying(lambda: self.pool.fetchval(sql, *args), write=True))

    # -- admin ------------------------------------------------------------------------------

    async def create_vendor(self, name: str, acting: Acting = ANYONE) -> dict[str, Any]:
        who = audited(acting)
        vendor = await retrying(lambda: self.pool.fetchval(
            "SELECT rt_create_vendor($1, $2, $3)", name, *who), write=True)
        return vendor

    async def create_service(self, vendor_id: str, name: str, exclusive: bool,
                             acting: Acting = ANYONE) -> dict[str, Any]:
        who = audited(acting)
        service = await retrying(lambda: self.pool.fetchval(
            "SELECT rt_create_service($1, $2, $3, $4, $5)", vendor_id, name, exclusive, *who),
            write=True)
        if service is None:
            raise errors.VendorNotFound()
        return service

    async def create_slots(self, service_id: str, slots: list[dict[str, Any]],
                           acting: Acting = ANYONE) -> dict[str, Any]:
        return await self._call("SELECT rt_create_slots($1, $2::jsonb, $3, $4)", service_id,
                                slots, *audited(acting))

    async def set_capacity(self, slot_id: str, capacity: int,
                           acting: Acting = ANYONE) -> dict[str, Any]:
        body = await self._call("SELECT rt_set_capacity($1, $2, $3, $4)", slot_id, capacity,
                                *audited(acting))
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

    # -- customer ---------------------------------------------------------------------------

    async def book(self, slot_id: str, quantity: int | None = None, acting: Acting = ANYONE,
                   hold_id: str | None = None,
                   idempotency_key: str | None = None) -> dict[str, Any]:
        """Book units of a slot, or confirm `hold_id` (`quantity` None: the hold's, else 1)."""
        customer_id = acting.customer_id
        digest = None
        if idempotency_key is not None:
            digest = request_hash(slot_id=slot_id, quantity=quantity, hold_id=hold_id,
                                  customer_id=customer_id)
        return await self._gated(
            slot_id, "SELECT rt_book($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", slot_id,
            quantity, customer_id, hold_id, acting.owner, acting.idempotency_scope,
            idempotency_key, digest, *audited(acting))

    async def hold(self, slot_id: str, quantity: int = 1, ttl_seconds: int = 300,
                   acting: Acting = ANYONE) -> dict[str, Any]:
        return await self._gated(slot_id, "SELECT rt_hold($1, $2, $3, $4, $5, $6)", slot_id,
                                 quantity, acting.customer_id, ttl_seconds, *audited(acting))

    async def _gated(self, slot_id: str, sql: str, *args: Any) -> dict[str, Any]:
        """A write that locks the slot's row, through this process's gate for that slot."""
        try:
            # The wait at the gate counts: behind writes that hang, it would add up.
            async with asyncio.timeout(DEADLINE), self.gates.enter(slot_id):
                result = await retrying(lambda: self.pool.fetchval(sql, *args), write=True)
        except TimeoutError as exc:
            raise unavailable(exc, write=True) from exc
        slot = result.get("slot")
        if slot:  # absent when the slot, or the hold being confirmed, does not exist
            self.gates.seen(slot["id"], slot["available"])
        return _outcome(result)

    async def release(self, hold_id: str, acting: Acting = ANYONE) -> dict[str, Any]:
        return await self._call("SELECT rt_release($1, $2, $3, $4)", hold_id, acting.owner,
                                *audited(acting))

    async def cancel(self, booking_id: str, acting: Acting = ANYONE) -> dict[str, Any]:
        return await self._call("SELECT rt_cancel($1, $2, $3, $4)", booking_id, acting.owner,
                                *audited(acting))

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

    async def expire_holds(self, limit: int = 500, acting: Acting = SWEEPER) -> int:
        """Expires up to `limit` holds whose time is up; the audit rows of one call share one
        request id (the sweep's)."""
        who = audited(acting)
        return int(await retrying(lambda: self.pool.fetchval(
            "SELECT rt_expire_holds($1, $2, $3)", limit, *who)))
