"""Reads of the log for a channel: a snapshot with its exact position, or the events missed
since a cursor. HTTP availability and WebSocket subscribes both read through here.

With a read replica (realtime/eventlog/replica.py) each read names the log position it must
not be behind (`at_least`): a copy that has not replayed it returns no row (`Behind`), and the
replica's rules decide whether to wait for it or to ask the primary.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from realtime import errors
from realtime.db.errors import retrying
from realtime.db.interface import ConnectionPool
from realtime.eventlog import cursor
from realtime.eventlog.events import EVENT_COLUMNS, Event
from realtime.eventlog.replica import Behind, ReadReplica
from realtime.schema.channels import Channel

R = TypeVar("R")

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


def _not_found(channel: Channel) -> errors.NotFound:
    return errors.VendorNotFound() if channel.kind == "vendor" else errors.ServiceNotFound()


def _tables(channel: Channel) -> tuple[str, str]:
    """(the events' and slots' column naming the channel's owner, the owner's table)"""
    if channel.kind == "vendor":
        return "vendor_id", "rt_vendors"
    return "service_id", "rt_services"


class EventLog:
    def __init__(self, pool: ConnectionPool, replica: ReadReplica | None = None,
                 floor: Callable[[], int] | None = None) -> None:
        self.pool = pool
        self.replica = replica
        # The position this process has read the log up to (the listener's): the hub dispatches
        # only what comes after it, so no read may stand before it.
        self.floor = floor or (lambda: 0)

    async def _read(self, run: Callable[[ConnectionPool, int], Awaitable[R]],
                    at_least: int) -> R:
        """`run(pool, at_least)` on the replica if there is one (replica.py says when), else
        on the primary with `at_least` 0 (the primary is never behind what was numbered).

        On the replica a read stands at `at_least` or later, and at the process's own position
        or later: a subscriber joins the hub there (frames after it are buffered for it, those
        before went by), so a snapshot before it would miss what lies between. Taken when the
        read starts, which is after the join began: a stricter floor, never a looser one."""
        replica = self.replica
        if replica is None:
            return await retrying(lambda: run(self.pool, 0))
        return await retrying(lambda: replica.read(run, max(at_least, self.floor())))

    async def snapshot(self, channel: Channel, from_: datetime | None = None,
                       to: datetime | None = None, at_least: int = 0) -> Snapshot:
        """The channel's slots and the log position they correspond to, with no hole, at
        position `at_least` (a client's cursor) or later.

        One statement (one snapshot of the database) reads the slots, the last numbered
        position and the events that are committed but not yet numbered: the slots are exactly
        the state at `pos` plus those events, which the hub skips once when they arrive
        numbered. Raises VendorNotFound / ServiceNotFound for a channel that does not exist.
        """
        column, owner = _tables(channel)
        # A copy behind `at_least` ($4) returns no row, before the slots are aggregated.
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
            FROM rt_sequencer q WHERE q.id = 1 AND q.last_pos >= $4"""

        async def run(pool: ConnectionPool, floor: int) -> Snapshot:
            row = await pool.fetchrow(sql, channel.id, from_, to, floor)
            if row is None:
                raise Behind()
            if not row["found"]:
                raise _not_found(channel)
            return Snapshot(row["slots"], row["last_pos"], row["epoch"], list(row["pending"]))

        return await self._read(run, at_least)

    async def availability(self, channel: Channel, from_: datetime | None,
                           to: datetime | None) -> dict[str, Any]:
        """The body of `GET .../availability`: the slots and a cursor to subscribe from."""
        snap = await self.snapshot(channel, from_, to)
        return {"channel": channel.name, "cursor": snap.cursor, "slots": snap.slots}

    async def exists(self, channel: Channel) -> bool:
        """Whether the channel's vendor or service exists."""
        _, owner = _tables(channel)
        sql = f"SELECT EXISTS (SELECT 1 FROM {owner} WHERE id = $1)"

        async def run(pool: ConnectionPool, _floor: int) -> bool:
            if not await pool.fetchval(sql, channel.id):
                raise _not_found(channel)  # on a replica: maybe not replayed yet, ask the primary
            return True

        try:
            return await self._read(run, 0)
        except errors.NotFound:
            return False

    async def events_since(self, channel: Channel, pos: int, epoch: str,
                           at_least: int = 0) -> EventsPage | None:
        """Exactly the channel's events after `pos`, up to a position at `at_least` or later, or
        None when they are no longer all kept.

        Raises VendorNotFound / ServiceNotFound for a channel that does not exist.
        """
        column, owner = _tables(channel)
        # One statement is one snapshot: the state row and the events agree. A copy behind
        # `at_least` ($3) returns no row.
        sql = f"""
            SELECT EXISTS (SELECT 1 FROM {owner} WHERE id = $1) AS q_found,
                   q.epoch AS q_epoch, q.last_pos AS q_last, q.pruned_pos AS q_pruned, e.*
            FROM rt_sequencer q
            LEFT JOIN LATERAL (
                SELECT {EVENT_COLUMNS} FROM rt_events
                WHERE {column} = $1 AND pos > $2 AND pos <= q.last_pos
                ORDER BY pos LIMIT {RESUME_LIMIT + 1}) e ON true
            WHERE q.id = 1 AND q.last_pos >= $3"""

        async def run(pool: ConnectionPool, floor: int) -> EventsPage | None:
            rows = await pool.fetch(sql, channel.id, pos, floor)
            if not rows:
                raise Behind()
            state = rows[0]
            if not state["q_found"]:
                raise _not_found(channel)
            if (epoch != state["q_epoch"] or pos < state["q_pruned"]
                    or pos > state["q_last"]):
                return None
            if len(rows) > RESUME_LIMIT:
                return None
            events = [Event.from_record(tuple(r)[4:]) for r in rows if r["pos"] is not None]
            return EventsPage(events, state["q_last"], state["q_epoch"])

        return await self._read(run, at_least)
