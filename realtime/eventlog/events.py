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


# The same read on a replica, with the copy's own state: which database it is (epoch) and the
# last position it has replayed, so that the reader knows how far behind it stands.
FETCH_AFTER_WITH_STATE = f"""
    SELECT q.epoch AS q_epoch, q.last_pos AS q_last, e.*
    FROM rt_sequencer q
    LEFT JOIN LATERAL (
        SELECT {EVENT_COLUMNS} FROM rt_events WHERE pos > $1 ORDER BY pos LIMIT $2) e ON true
    WHERE q.id = 1"""


async def fetch_after_with_state(conn: asyncpg.Connection, pos: int, limit: int = 1000
                                 ) -> tuple[str, int, list[Event]]:
    """(epoch, last_pos, numbered events after `pos` in position order), in one snapshot."""
    rows = await conn.fetch(FETCH_AFTER_WITH_STATE, pos, limit)
    state = rows[0]
    events = [Event.from_record(tuple(r)[2:]) for r in rows if r["pos"] is not None]
    return state["q_epoch"], state["q_last"], events


async def drain(conn: asyncpg.Connection, after: int, limit: int = 1000,
                within: float | None = None) -> tuple[int, list[Event]]:
    """Numbers what is committed and reads the events after `after` in one call
    (`rt_drain_events`): (how many this call numbered, the events in position order); raises
    TimeoutError after `within` seconds."""
    rows = await conn.fetch("SELECT * FROM rt_drain_events($1, $2)", after, limit,
                            timeout=within)
    return rows[0][0], [Event.from_record(tuple(r)[1:]) for r in rows if r[1] is not None]
