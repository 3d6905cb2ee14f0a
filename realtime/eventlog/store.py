"""Reads of the log for a channel: a snapshot with its exact position, or the events missed
since a cursor. HTTP availability and WebSocket subscribes both read through here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from realtime import errors
from realtime.db.errors import retrying
from realtime.db.interface import ConnectionPool
from realtime.eventlog import cursor
from realtime.eventlog.events import EVENT_COLUMNS, Event
from realtime.schema.channels import Channel

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
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    async def snapshot(self, channel: Channel, from_: datetime | None = None,
                       to: datetime | None = None) -> Snapshot:
        """The channel's slots and the log position they correspond to, with no hole.

        One statement (one snapshot of the database) reads the slots, the last numbered
        position and the events that are committed but not yet numbered: the slots are exactly
        the state at `pos` plus those events, which the hub skips once when they arrive
        numbered. Raises VendorNotFound / ServiceNotFound for a channel that does not exist.
        """
        column, owner = _tables(channel)
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
        row = await retrying(lambda: self.pool.fetchrow(sql, channel.id, from_, to))
        assert row is not None  # rt_sequencer's one row exists from the first migration
        if not row["found"]:
            raise _not_found(channel)
        return Snapshot(row["slots"], row["last_pos"], row["epoch"], list(row["pending"]))

    async def availability(self, channel: Channel, from_: datetime | None,
                           to: datetime | None) -> dict[str, Any]:
        """The body of `GET .../availability`: the slots and a cursor to subscribe from."""
        snap = await self.snapshot(channel, from_, to)
        return {"channel": channel.name, "cursor": snap.cursor, "slots": snap.slots}

    async def exists(self, channel: Channel) -> bool:
        """Whether the channel's vendor or service exists."""
        _, owner = _tables(channel)
        return bool(await retrying(lambda: self.pool.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {owner} WHERE id = $1)", channel.id)))

    async def events_since(self, channel: Channel, pos: int, epoch: str) -> EventsPage | None:
        """Exactly the channel's events after `pos`, or None when they are no longer all kept.

        Raises VendorNotFound / ServiceNotFound for a channel that does not exist.
        """
        column, owner = _tables(channel)
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
        rows = await retrying(lambda: self.pool.fetch(sql, channel.id, pos))
        state = rows[0]
        if not state["q_found"]:
            raise _not_found(channel)
        if epoch != state["q_epoch"] or pos < state["q_pruned"] or pos > state["q_last"]:
            return None
        if len(rows) > RESUME_LIMIT:
            return None
        events = [Event.from_record(tuple(r)[4:]) for r in rows if r["pos"] is not None]
        return EventsPage(events, state["q_last"], state["q_epoch"])
