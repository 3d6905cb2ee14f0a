"""The events a webhook endpoint receives: types, and the JSON body of one delivery."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

# Event log kinds -> webhook event types.
TYPES = {
    "booked": "booking.confirmed",  # booked directly, or by confirming a hold
    "cancelled": "booking.cancelled",
    "held": "hold.created",
    "released": "hold.released",
    "expired": "hold.expired",
    "created": "slot.created",
    "changed": "slot.changed",
    "conflict": "booking.conflict",
}
KINDS_OF = {t: k for k, t in TYPES.items()}

# The columns a delivery needs: the event, and the reservation it names as it is now (its
# status is set from the event's type, so a booking later cancelled still reads "confirmed" in
# its booking.confirmed event).
EVENT_SQL = """
    SELECT e.pos, e.id, e.kind, e.quantity, e.customer_id, e.slot::text AS slot_json,
           e.created_at, r.id::text AS reservation_id, r.slot_id::text AS reservation_slot,
           r.quantity AS reservation_quantity, r.created_at AS reservation_created_at,
           r.expires_at
    FROM rt_events e LEFT JOIN rt_reservations r ON r.id = e.reservation_id
"""


@dataclass(frozen=True, slots=True)
class Delivery:
    pos: int
    event_id: str
    type: str
    body: bytes  # the exact bytes that are signed and sent


def _ts(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z and milliseconds, as the database's own rt_ts writes them."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def delivery(row: Any, epoch: str) -> Delivery:
    """The body of one event, built once per endpoint attempt from an EVENT_SQL row."""
    kind = row["kind"]
    event_type = TYPES[kind]
    event_id = f"evt_{row['id']}"
    data: dict[str, Any] = {"slot": orjson.Fragment(row["slot_json"])}
    if row["customer_id"] is not None:
        data["customer_id"] = row["customer_id"]
    if kind != "created" and kind != "changed":
        data["quantity"] = row["quantity"]
    if row["reservation_id"] is not None:
        if event_type.startswith("booking."):
            data["booking"] = {
                "id": row["reservation_id"], "slot_id": row["reservation_slot"],
                "customer_id": row["customer_id"], "quantity": row["reservation_quantity"],
                "status": "cancelled" if kind == "cancelled" else "confirmed",
                "created_at": _ts(row["reservation_created_at"]),
            }
        else:
            data["hold"] = {
                "id": row["reservation_id"], "slot_id": row["reservation_slot"],
                "quantity": row["reservation_quantity"], "expires_at": _ts(row["expires_at"]),
            }
    body = orjson.dumps({
        "id": event_id, "type": event_type, "created_at": _ts(row["created_at"]),
        "cursor": f"{row['pos']}@{epoch}", "data": data,
    })
    return Delivery(row["pos"], event_id, event_type, body)
