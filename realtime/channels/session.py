"""What a socket's messages do: subscribe (snapshot or resume), unsubscribe, ping, auth, and
book / hold / cancel, each answered on the socket's own outbox.

The connection (connection.py) parses frames and hands messages here; this module never
touches a socket, only the subscriber's outbox and the hub.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from msgspec import UNSET

from realtime import logs
from realtime.access import Access, Caller, counted
from realtime.booking.service import BookingService
from realtime.channels.hub import Hub
from realtime.channels.protocol import (
    Auth,
    Book,
    Cancel,
    ClientMessage,
    HoldRequest,
    MessageError,
    Ping,
    Subscribe,
    Unsubscribe,
    encode_pong,
    encode_result,
    encode_result_error,
    encode_subscribed_events,
    encode_subscribed_snapshot,
    encode_unsubscribed,
)
from realtime.channels.subscriber import Subscriber
from realtime.errors import (
    NotFound,
    NotSubscribed,
    RealtimeError,
    TooManySubscriptions,
    Unauthorized,
    UnknownChannel,
    ValidationError,
)
from realtime.eventlog import cursor as cursors
from realtime.eventlog.recent import RecentEvents
from realtime.eventlog.store import EventLog, EventsPage, Snapshot
from realtime.schema.channels import Channel
from realtime.settings import Settings

log = logging.getLogger("realtime.channels.session")

KNOWN_CHANNELS = 100_000

# The operation labels of realtime_bookings_total, the same as HTTP's.
_OPERATIONS: dict[type, str] = {Book: "book", HoldRequest: "hold", Cancel: "cancel"}


class Peer(Protocol):
    """The side of a connection that messages act on."""

    sub: Subscriber
    caller: Caller | None

    def reply_error(self, exc: MessageError) -> None: ...

    def request_id(self, msg_id: str | None) -> str: ...


def _cursor_pos(since: str) -> int:
    """The position a cursor names (0 for one that is not a cursor: it gets a snapshot)."""
    try:
        return cursors.decode(since)[0]
    except ValidationError:
        return 0


class Session:
    """Message handling shared by every socket of the process."""

    def __init__(self, settings: Settings, access: Access, hub: Hub, events: EventLog,
                 booking: BookingService, sequence_now: Callable[[], Awaitable[int | None]],
                 recent: RecentEvents | None = None) -> None:
        self.settings = settings
        self.recent = recent
        # Channels known to exist (bounded, oldest forgotten first), in-flight existence
        # checks, and in-flight snapshot reads by (channel, from, to) with the hub's position
        # when each began.
        self._known: dict[str, None] = {}
        self._lookups: dict[str, asyncio.Future[bool]] = {}
        self._snapshots: dict[tuple[str, datetime | None, datetime | None],
                              tuple[int, asyncio.Future[Snapshot]]] = {}
        self.access = access
        self.hub = hub
        self.events = events
        self.booking = booking
        self._sequence_now = sequence_now
        self._inflight = 0
        # Set while no booking operation is in flight: shutdown waits for it.
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle(self, peer: Peer, msg: ClientMessage) -> None:
        if isinstance(msg, Ping):
            peer.sub.send(encode_pong(msg.reply_id))
        elif isinstance(msg, Subscribe):
            await self._subscribe(peer, msg)
        elif isinstance(msg, Unsubscribe):
            if self.hub.leave(peer.sub, msg.channel):
                peer.sub.send(encode_unsubscribed(msg.reply_id, msg.channel))
            else:
                peer.reply_error(MessageError(NotSubscribed(), msg.reply_id))
        elif isinstance(msg, Auth):
            await self._auth(peer, msg)
        else:
            await self._counted(self._book(peer, msg))

    async def _counted(self, op: Awaitable[None]) -> None:
        """Run a booking operation, counted so that shutdown can wait for it to finish."""
        self._inflight += 1
        self.idle.clear()
        try:
            await op
        finally:
            self._inflight -= 1
            if not self._inflight:
                self.idle.set()

    async def _auth(self, peer: Peer, msg: Auth) -> None:
        try:
            peer.caller = await self.access.renewed(peer.caller, msg.token)
        except Unauthorized as exc:
            peer.reply_error(MessageError(exc, msg.reply_id))
            return
        peer.sub.send(encode_result(msg.reply_id, {}))

    async def _subscribe(self, peer: Peer, msg: Subscribe) -> None:
        sub = peer.sub
        reply_id = msg.reply_id
        if msg.channel not in sub.channels and (
                len(sub.channels) >= self.settings.ws_max_subscriptions):
            peer.reply_error(MessageError(TooManySubscriptions(), reply_id))
            return
        try:
            await self.join(sub, msg.target, None if msg.since is UNSET else msg.since,
                            None if msg.from_ is UNSET else msg.from_,
                            None if msg.to is UNSET else msg.to, reply_id)
        except RealtimeError as exc:
            peer.reply_error(MessageError(exc, reply_id))

    async def join(self, sub: Subscriber, channel: Channel, since: str | None,
                   from_: datetime | None, to: datetime | None,
                   reply_id: str | None = None) -> None:
        """Subscribe `sub` to `channel`: its `subscribed` frame (the events missed since the
        cursor `since` when they can be had, else a snapshot of the window), then the live
        stream, with nothing missed or repeated in between. Raises UnknownChannel (the
        subscription is not kept) or another RealtimeError."""
        hub = self.hub
        name = channel.name
        # Join first, read second: whatever the hub dispatches while we read is buffered and
        # filtered against the position of what we read (see hub.py).
        hub.begin_join(sub, name)
        try:
            page = None
            # A client is never handed a state older than a cursor it was sent: what is read
            # stands at its cursor or later (only a lagging read replica could be behind it;
            # EventLog adds this process's own position, replica.py waits or asks the primary).
            floor = 0
            if since is not None:
                floor = _cursor_pos(since)
                page = await self._events_since(channel, since)
            if page is not None:
                cursor = cursors.encode(page.pos, page.epoch)
                frames = [hub.encode_event(name, ev, page.epoch) for ev in page.events]
                first = encode_subscribed_events(reply_id, name, cursor, frames)
                hub.activate(sub, name, first, page.pos)
            else:
                snap = await self._snapshot(channel, from_, to, floor)
                first = encode_subscribed_snapshot(reply_id, name, snap.cursor, snap.slots)
                hub.activate(sub, name, first, snap.pos, snap.pending_ids)
        except NotFound:
            hub.leave(sub, name)
            raise UnknownChannel(f"channel: no such channel {name}", field="channel") from None
        except RealtimeError:
            hub.leave(sub, name)
            raise
        except Exception:
            hub.leave(sub, name)
            log.exception("subscribe to %s failed", name)
            raise RealtimeError() from None

    async def _snapshot(self, channel: Channel, from_: datetime | None,
                        to: datetime | None, floor: int) -> Snapshot:
        """A snapshot of the channel's window at position `floor` or later; subscribers of one
        channel and window joining while the hub stands at one position share one read (a
        reconnect storm costs the database a read per channel, not per client)."""
        pos = self.hub.pos
        if floor > pos:
            # For a client whose cursor is ahead of this process: a read of its own.
            return await self._read_snapshot(channel, from_, to, floor)
        key = (channel.name, from_, to)
        flight = self._snapshots.get(key)
        # Shared only if nothing was dispatched since the read began: a reader that started
        # earlier could be behind what this subscriber's join already let go by.
        if flight is None or flight[0] != pos or flight[1].done():
            flight = (pos, asyncio.ensure_future(self._read_snapshot(channel, from_, to, 0)))
            self._snapshots[key] = flight
        try:
            return await asyncio.shield(flight[1])
        finally:
            if flight[1].done() and self._snapshots.get(key) is flight:
                del self._snapshots[key]

    async def _read_snapshot(self, channel: Channel, from_: datetime | None,
                             to: datetime | None, floor: int) -> Snapshot:
        """A snapshot whose cursor is exact, so that a resume from it replays nothing it holds.

        Events committed but not yet numbered are in the snapshot yet will be numbered after
        its position: the hub skips them live, but a client resuming from this cursor would get
        them again. So number them and read again (twice at most); under a storm of writes the
        last read stands and the hub's skip list keeps the live stream exact.
        """
        for attempt in range(3):
            snap = await self.events.snapshot(channel, from_, to, floor)
            self._remember(channel.name)
            if not snap.pending_ids or attempt == 2:
                break
            numbered = await self._sequence_now()
            if numbered is None:
                break
            floor = max(floor, numbered)  # a replica must have replayed the numbering
        return snap

    async def _events_since(self, channel: Channel, since: str) -> EventsPage | None:
        """The events missed since the cursor: from the recent events this process holds
        when they cover it (no query), else from the database; None when neither has them all
        (the caller answers with a snapshot)."""
        try:
            pos, epoch = cursors.decode(since)
        except ValidationError:
            return None  # not a cursor we can use: the snapshot path answers it
        recent = self.recent
        if recent is not None and await self._exists(channel):
            # No await between this read and the caller's activate: the hub stands at
            # `recent.top` until then.
            held = recent.since(channel.name, pos, epoch)
            if held is not None:
                return EventsPage(held, recent.top, recent.epoch)
        # Raises NotFound (caught by the caller) for a channel that does not exist. A replica
        # must have replayed the cursor to judge it (EventLog adds the process's position).
        page = await self.events.events_since(channel, pos, epoch, pos)
        self._remember(channel.name)
        return page

    async def _exists(self, channel: Channel) -> bool:
        """Whether the channel's vendor or service exists (one shared query per channel)."""
        name = channel.name
        if name in self._known or (self.recent is not None and name in self.recent):
            return True
        flight = self._lookups.get(name)
        if flight is None:
            flight = self._lookups[name] = asyncio.ensure_future(self.events.exists(channel))
        try:
            found = await asyncio.shield(flight)
        finally:
            if flight.done() and self._lookups.get(name) is flight:
                del self._lookups[name]
        if not found:
            raise NotFound()
        self._remember(name)
        return True

    def _remember(self, name: str) -> None:
        self._known[name] = None
        while len(self._known) > KNOWN_CHANNELS:
            del self._known[next(iter(self._known))]

    async def _book(self, peer: Peer, msg: Book | HoldRequest | Cancel) -> None:
        booking = self.booking
        operation = _OPERATIONS[type(msg)]
        body: dict[str, Any]
        # The message's request id is on its log lines too, as an HTTP request's is.
        request_id = peer.request_id(msg.reply_id)
        token = logs.request_id.set(request_id)
        try:
            acting = self.access.booking_caller(peer.caller).acting(request_id=request_id)
            if isinstance(msg, Book):
                body = await counted(operation, booking.book(
                    msg.slot_id, None if msg.quantity is UNSET else msg.quantity, acting,
                    hold_id=None if msg.hold_id is UNSET else msg.hold_id,
                    idempotency_key=None if msg.idempotency_key is UNSET else msg.idempotency_key))
            elif isinstance(msg, HoldRequest):
                body = await counted(operation, booking.hold(
                    msg.slot_id, msg.quantity, msg.ttl_seconds, acting))
            else:
                body = await counted(operation, booking.cancel(msg.booking_id, acting))
        except RealtimeError as exc:
            peer.sub.send(encode_result_error(msg.reply_id, exc))
            return
        except Exception:
            log.exception("%s over the socket failed", operation)
            peer.sub.send(encode_result_error(msg.reply_id, RealtimeError()))
            return
        finally:
            logs.request_id.reset(token)
        peer.sub.send(encode_result(msg.reply_id, body))
