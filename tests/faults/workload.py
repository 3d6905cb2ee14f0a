"""Clients that book, hold, confirm, release and cancel over HTTP (some of them by WebSocket
messages), and subscribers that watch over WebSocket, all recorded in a `History` while a test
breaks something under them.

A client behaves as a careful one should: every booking carries an Idempotency-Key, and a
booking or cancel whose outcome it could not learn (no answer, or a 503 with
`"outcome": "unknown"`) is sent again, the same key and body, until it gets a definite answer
(a plain 503 to a retry is not one: that attempt changed nothing, the first one may have).
A subscriber that loses its socket reconnects and resumes from the last cursor it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from realtime.httpclient import Connection, HttpError, get
from tests.faults.history import (
    Anomaly,
    Database,
    History,
    Op,
    SubscriberLog,
    check,
    read_database,
)

# A client's wait after an answer that says the database or the server is away: it does not
# hammer it, yet keeps trying often enough for an outage to be many checked operations.
BACKOFF = 0.05
# The HTTP status of a WebSocket `result` error, so that both doors make one history.
WS_STATUS = {"DATABASE_UNAVAILABLE": 503, "BOOKING_CONFLICT": 409, "SLOT_NOT_FOUND": 404,
             "HOLD_NOT_FOUND": 404, "BOOKING_NOT_FOUND": 404, "HOLD_EXPIRED": 410,
             "RATE_LIMITED": 429, "INTERNAL_ERROR": 500}
# Booking clients of a run, and how many of them book by WebSocket messages. Many clients, one
# request in flight each: the server's answers (201, 409, and during an outage quick 503s) are
# what bounds the rate, so the runs check several thousand operations each without lasting
# longer (docs/reliability.md, "How many operations").
CLIENTS = 32
WS_CLIENTS = 8
# Seconds of load in every run before its fault and after its recovery: work checked on a
# server that has not yet been hurt, and on one that should have healed.
STEADY = 4.0
# Operations and frames of every checked run of the session (printed at the end of it).
TOTALS = {"operations": 0, "frames": 0, "runs": 0}


@dataclass
class World:
    service_id: str
    vendor_id: str
    slot_ids: list[str]


async def seed(url: str, slots: int = 12, capacity: int = 2) -> World:
    """A vendor, one service and `slots` slots of `capacity`, through the HTTP API."""
    host, port = url.removeprefix("http://").split(":")
    conn = await Connection(host, int(port), 30).open()
    try:
        vendor = (await conn.request("POST", "/api/vendors", {"name": "faults"})).json()
        service = (await conn.request("POST", f"/api/vendors/{vendor['id']}/services",
                                      {"name": "faults"})).json()
        start = datetime(2031, 1, 6, 8, tzinfo=UTC)
        body = {"slots": [{"starts_at": (start + timedelta(hours=i)).isoformat(),
                           "ends_at": (start + timedelta(hours=i, minutes=45)).isoformat(),
                           "capacity": capacity} for i in range(slots)]}
        made = (await conn.request("POST", f"/api/services/{service['id']}/slots", body)).json()
    finally:
        conn.close()
    return World(service["id"], vendor["id"], [s["id"] for s in made["slots"]])


@dataclass
class Client:
    """One customer: a keep-alive connection, its bookings and holds, what it still owes."""

    name: str
    conn: Connection
    over_ws: bool = False  # book, hold and cancel as WebSocket messages (release: HTTP)
    ws: ClientConnection | None = None
    sent: int = 0
    bookings: list[str] = field(default_factory=list)
    holds: list[tuple[str, str]] = field(default_factory=list)  # (hold id, slot id)
    # (kind, path, body, headers, what else the history records of it)
    unresolved: tuple[str, str, dict[str, Any], dict[str, str], dict[str, Any]] | None = None


@dataclass
class Subscriber:
    log: SubscriberLog
    channel: str
    cursor: str | None = None
    connects: int = 0
    drops: list[float] = field(default_factory=list)  # when its socket closed under it
    resumed_with_events: int = 0
    live: asyncio.Event = field(default_factory=asyncio.Event)


class Workload:
    """`clients` booking clients and `subscribers` subscribers of one world, until `stop()`."""

    def __init__(self, history: History, url: str, world: World, clients: int = CLIENTS,
                 subscribers: int = 4, ws_clients: int = WS_CLIENTS, timeout: float = 10.0,
                 seed_: int = 1) -> None:
        self.history = history
        self.url = url
        self.world = world
        self.random = random.Random(seed_)
        self.timeout = timeout
        host, port = url.removeprefix("http://").split(":")
        self.clients = [Client(f"c{i}", Connection(host, int(port), timeout),
                               over_ws=i >= clients - ws_clients) for i in range(clients)]
        channels = [f"service:{world.service_id}", f"vendor:{world.vendor_id}"]
        self.subscribers = [Subscriber(history.subscriber(f"s{i}"), channels[i % 2])
                            for i in range(subscribers)]
        for sub in self.subscribers:
            sub.log.expects = set(world.slot_ids)
        self.running = True
        self.booking = True
        self._tasks: list[asyncio.Task[None]] = []
        self.converge = 0.0
        self.db: Database | None = None
        self.coalesced = False

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    async def start(self) -> Workload:
        """Subscribers first, each live before the first booking, then the clients."""
        self._tasks += [asyncio.create_task(self._watch(s)) for s in self.subscribers]
        await asyncio.wait_for(asyncio.gather(*(s.live.wait() for s in self.subscribers)), 30)
        self._tasks += [asyncio.create_task(self._client(c)) for c in self.clients]
        return self

    async def stop_booking(self, settle: float = 30) -> None:
        """Clients finish: each sends what it still owes until the answer is definite."""
        self.booking = False
        clients = self._tasks[len(self.subscribers):]
        await asyncio.wait_for(asyncio.gather(*clients), settle)

    async def close(self) -> None:
        self.running = self.booking = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self.clients:
            client.conn.close()
            if client.ws is not None:
                client.ws.transport.abort()

    # -- clients ----------------------------------------------------------------------------

    async def _client(self, client: Client) -> None:
        while client.unresolved is not None or (self.booking and self.running):
            if client.unresolved is not None:
                kind, path, body, headers, extra = client.unresolved
                op = await self._send(client, kind, path, body, headers, **extra)
            else:
                op = await self._next(client)
            if op is None:
                continue
            if op.outcome_unknown:
                client.unresolved = (op.kind, op.request["path"], op.request["body"],
                                     op.request["headers"],
                                     {k: v for k, v in op.request.items()
                                      if k in ("hold_id", "slot_id") and op.kind == "release"})
            elif client.unresolved is None or op.status is None or op.status < 500:
                client.unresolved = None
            # (A retry refused with a plain 503 changed nothing, but says nothing of the first
            # attempt either: the doubt stands, and the retries go on until a real answer.)
            if op.status is None or op.status >= 500:
                await asyncio.sleep(BACKOFF)

    async def _next(self, client: Client) -> Op | None:
        roll = self.random.random()
        if roll < 0.25 and client.bookings:
            booking = client.bookings.pop(self.random.randrange(len(client.bookings)))
            return await self._send(client, "cancel", f"/api/bookings/{booking}/cancel", None, {},
                                    booking_id=booking)
        if roll < 0.35 and client.holds:
            hold, slot = client.holds.pop(self.random.randrange(len(client.holds)))
            if self.random.random() < 0.5:
                return await self._send(client, "release", f"/api/holds/{hold}", None, {},
                                        hold_id=hold, slot_id=slot)
            return await self._book(client, {"slot_id": slot, "hold_id": hold,
                                             "customer_id": client.name})
        slot = self.random.choice(self.world.slot_ids)
        if roll < 0.5:
            return await self._send(client, "hold", "/api/holds",
                                    {"slot_id": slot, "customer_id": client.name}, {},
                                    slot_id=slot)
        return await self._book(client, {"slot_id": slot, "customer_id": client.name})

    async def _book(self, client: Client, body: dict[str, Any]) -> Op:
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        return await self._send(client, "book", "/api/bookings", body, headers)

    async def _send(self, client: Client, kind: str, path: str, body: dict[str, Any] | None,
                    headers: dict[str, str], **request: Any) -> Op:
        if body is not None and "slot_id" in body:
            request["slot_id"] = body["slot_id"]
        if "Idempotency-Key" in headers:
            request["idempotency_key"] = headers["Idempotency-Key"]
        if kind == "cancel":
            request["booking_id"] = path.split("/")[3]
        door = "ws" if client.over_ws and kind != "release" else "http"
        op = self.history.invoke(client.name, kind, path=path, body=body, headers=headers,
                                 door=door, **request)
        if door == "ws":
            return await self._send_ws(client, op)
        method = "DELETE" if kind == "release" else "POST"
        try:
            answer = await client.conn.request(method, path, body, headers)
        except HttpError as exc:
            return self.history.no_answer(op, str(exc))
        try:
            data = answer.json()
        except orjson.JSONDecodeError:
            data = answer.body.decode(errors="replace")
        return self._answered(client, op, answer.status, data)

    async def _send_ws(self, client: Client, op: Op) -> Op:
        """The operation as a WebSocket message; its `result` recorded as HTTP would answer."""
        client.sent += 1
        message: dict[str, Any] = {"type": op.kind, "id": str(client.sent)}
        if op.kind == "cancel":
            message["booking_id"] = op.request["booking_id"]
        else:
            message.update({k: v for k, v in op.request["body"].items()
                            if k in ("slot_id", "hold_id", "quantity")})
            if "idempotency_key" in op.request:
                message["idempotency_key"] = op.request["idempotency_key"]
        try:
            async with asyncio.timeout(self.timeout):
                if client.ws is None:
                    client.ws = await connect(self.ws_url, ping_interval=None, max_queue=None)
                await client.ws.send(orjson.dumps(message).decode())
                while (frame := orjson.loads(await client.ws.recv())).get("id") != message["id"]:
                    pass
        except (OSError, WebSocketException, TimeoutError) as exc:
            if client.ws is not None:
                client.ws.transport.abort()
                client.ws = None
            return self.history.no_answer(op, repr(exc))
        if frame["ok"]:
            status = 200 if op.kind == "cancel" else 201
            return self._answered(client, op, status, {k: v for k, v in frame.items()
                                                       if k in ("booking", "hold", "slot")})
        return self._answered(client, op, WS_STATUS.get(frame["error"]["code"], 400),
                              {"error": frame["error"]})

    def _answered(self, client: Client, op: Op, status: int, data: Any) -> Op:
        self.history.complete(op, status, data)
        if op.kind == "book" and status == 201:
            client.bookings.append(data["booking"]["id"])
        elif op.kind == "hold" and status == 201:
            client.holds.append((data["hold"]["id"], data["hold"]["slot_id"]))
        elif status != 503 or op.outcome_unknown or client.unresolved is not None:
            pass  # (a retry in doubt goes on being retried by `_client`)
        elif op.kind == "cancel":
            # Nothing changed: the booking is still the client's to cancel later. Forgotten,
            # an outage would leave every unit booked by nobody who could free it.
            client.bookings.append(op.request["booking_id"])
        elif op.kind == "release":
            client.holds.append((op.request["hold_id"], op.request["slot_id"]))
        return op

    # -- subscribers ------------------------------------------------------------------------

    async def _watch(self, sub: Subscriber) -> None:
        while self.running:
            try:
                async with connect(self.ws_url, open_timeout=10, ping_interval=None,
                                   max_queue=None) as ws:
                    sub.connects += 1
                    message: dict[str, Any] = {"type": "subscribe", "channel": sub.channel}
                    if sub.cursor is not None:
                        message["since"] = sub.cursor
                    await ws.send(orjson.dumps(message).decode())
                    async for raw in ws:
                        frame = orjson.loads(raw)
                        if frame.get("type") not in ("subscribed", "availability:updated",
                                                     "conflict:detected"):
                            continue
                        sub.log.received(frame)
                        sub.cursor = frame.get("cursor", sub.cursor)
                        if frame["type"] == "subscribed":
                            sub.resumed_with_events += "events" in frame
                            sub.live.set()
                sub.drops.append(time.monotonic())
            except (OSError, WebSocketException, TimeoutError):
                if sub.connects:
                    sub.drops.append(time.monotonic())
            if self.running:
                await asyncio.sleep(0.1 + self.random.random() * 0.2)

    # -- the end ----------------------------------------------------------------------------

    async def converged(self, dsn: str, within: float = 5.0) -> tuple[float, Database]:
        """Seconds until every subscriber shows what the database has (AssertionError after
        `within`), and the database as it was then."""
        start = time.monotonic()
        db = await read_database(dsn)
        while not all(_shows(s.log, db) for s in self.subscribers):
            if time.monotonic() - start > within:
                late = [s.log.name for s in self.subscribers if not _shows(s.log, db)]
                raise AssertionError(f"subscribers {late} did not converge within {within}s")
            await asyncio.sleep(0.05)
            db = await read_database(dsn)
        return time.monotonic() - start, db

    async def caught_up(self, dsn: str, since: float, within: float = 5.0) -> float:
        """Seconds from `since` until every subscriber shows each slot at least at the version
        the database has now (the load may go on meanwhile); AssertionError past `within`."""
        versions = {sid: slot["version"] for sid, slot in (await read_database(dsn)).slots.items()}

        def current(log: SubscriberLog) -> bool:
            view = log.view()
            return all(sid in view and view[sid]["version"] >= versions[sid] for sid in log.expects)

        while not all(current(s.log) for s in self.subscribers):
            assert time.monotonic() - since < within, \
                f"subscribers not caught up within {within}s: " \
                f"{[s.log.name for s in self.subscribers if not current(s.log)]}"
            await asyncio.sleep(0.02)
        return time.monotonic() - since

    def check(self) -> list[Anomaly]:
        """The history's anomalies against the database as it was at convergence; its
        operations and frames count in the session's totals (only checked ones count)."""
        assert self.db is not None, "the run did not end normally"
        found = check(self.history, self.db, self.coalesced)
        TOTALS["runs"] += 1
        TOTALS["operations"] += len(self.history.ops)
        TOTALS["frames"] += sum(len(s.frames) for s in self.history.subscribers)
        return found


def _shows(log: SubscriberLog, db: Database) -> bool:
    view = log.view()
    return all(sid in view and all(view[sid][k] == db.slots[sid][k]
                                   for k in ("capacity", "booked", "held", "available", "version"))
               for sid in log.expects)


def ops_between(history: History, start: float, end: float, kinds: tuple[str, ...] = ("book",)
                ) -> list[Op]:
    """The operations invoked in [start, end] (monotonic times)."""
    return [op for op in history.ops if op.kind in kinds and start <= op.invoked <= end]


@contextlib.asynccontextmanager
async def under_load(url: str, dsn: str, **options: Any) -> AsyncIterator[Workload]:
    """A world seeded through the server at `url` and a workload on it for the block; after a
    block that ended normally the clients finish what they owe, and `converge`, `db` and
    `coalesced` are set: seconds until every subscriber showed the database, the database
    then, and whether the server coalesced any backlog (version gaps are then allowed)."""
    world = await seed(url)
    load = await Workload(History(), url, world, **options).start()
    try:
        yield load
        await load.stop_booking()
        load.converge, load.db = await load.converged(dsn)
        load.coalesced = await coalesced(url)
    finally:
        await load.close()


async def coalesced(url: str) -> bool:
    """Whether the server coalesced any reader's backlog (then version gaps are allowed)."""
    text = (await get(url + "/metrics")).body.decode()
    for line in text.splitlines():
        if line.startswith("realtime_ws_frames_coalesced_total"):
            return float(line.split()[-1]) > 0
    return False
