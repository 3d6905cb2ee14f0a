"""Rows of the event log (rt_events) as the channels read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

EVENT_COLUMNS = (
    "pos, id, kind, slot_id::text, service_id::text, vendor_id::text, version, quantity, "
    "slot::text AS slot_json, alternatives::text AS alternatives_json"
)


@dataclass(slots=True, frozen=True)
class Event:
    pos: int
    id: int
    kind: str
    slot_id: str
    service_id: str
    vendor_id: str
    version: int
    quantity: int
    slot_json: str
    alternatives_json: str | None

    @classmethod
    def from_record(cls, r: asyncpg.Record | tuple[Any, ...]) -> Event:
        return cls(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9])


FETCH_AFTER = f"SELECT {EVENT_COLUMNS} FROM rt_events WHERE pos > $1 ORDER BY pos LIMIT $2"


async def fetch_after(conn: asyncpg.Connection, pos: int, limit: int = 1000) -> list[Event]:
    """Numbered events after `pos`, in position order."""
    rows = await conn.fetch(FETCH_AFTER, pos, limit)
    return [Event.from_record(r) for r in rows]


async def fetch_between(conn: asyncpg.Connection, after: int, upto: int) -> list[Event]:
    """Numbered events with `after < pos <= upto`, in position order."""
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM rt_events WHERE pos > $1 AND pos <= $2 ORDER BY pos",
        after, upto)
    return [Event.from_record(r) for r in rows]
