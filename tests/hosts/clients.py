"""Subscribers that behave like the protocol's clients, through a balancer only.

Each keeps what it saw per slot (version and counts), its last cursor, and every irregularity:
a version that is not the previous one plus one (lost, duplicated or reordered update), a
resume answered with a snapshot instead of the missed events, an error frame. When its socket
goes away it reconnects with jittered exponential backoff and resumes with its last cursor, as
docs/protocol.md tells clients to, and records how long it was not live.

The sockets are the load tester's lightweight client (realtime/loadtest/wsclient.py): a few
thousand of them share the test's event loop on two cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from realtime.loadtest.wsclient import NativeDialect, Subscriber

BACKOFF_BASE = 0.05
BACKOFF_CAP = 1.0
CONNECT_TIMEOUT = 5.0
SlotState = tuple[int, int, int, int]  # version, booked, held, available


def _state(slot: dict[str, Any]) -> SlotState:
    return (int(slot["version"]), int(slot["booked"]), int(slot["held"]), int(slot["available"]))


@dataclass(eq=False)
class Client:
    fleet: Fleet
    channel: str
    slots: dict[str, SlotState] = field(default_factory=dict)
    cursor: str | None = None
    live: bool = False
    connections: int = 0
    attempts: int = 0
    problems: list[str] = field(default_factory=list)
    close_codes: list[int] = field(default_factory=list)
    snapshot_resumes: int = 0
    lost_at: float | None = None
    live_at: float = 0.0
    outages: list[float] = field(default_factory=list)  # seconds from a loss to live again
    presence: int | None = None
    presence_log: list[tuple[float, int]] = field(default_factory=list)  # (time, count)
    updates: int = 0
    sub: Subscriber | None = None
    first_live: asyncio.Event = field(default_factory=asyncio.Event)

    # --- messages ---------------------------------------------------------------------

    def on_message(self, sub: Subscriber, payload: bytes) -> None:
        if sub is not self.sub:
            return  # a socket this client gave up on (see connect): not its view any more
        msg = orjson.loads(payload)
        kind = msg.get("type")
        if kind == "availability:updated":
            self._update(msg)
        elif kind == "conflict:detected":
            self.cursor = msg["cursor"]
        elif kind == "presence":
            self.presence = msg["count"]
            self.presence_log.append((time.monotonic(), msg["count"]))
        elif kind == "subscribed":
            self._subscribed(sub, msg)
        elif kind == "error":
            self.problems.append(f"error frame: {msg.get('error')}")

    def _subscribed(self, sub: Subscriber, msg: dict[str, Any]) -> None:
        if "snapshot" in msg:
            if self.cursor is not None:
                self.snapshot_resumes += 1
            self.slots = {s["id"]: _state(s) for s in msg["snapshot"]["slots"]}
        else:
            for event in msg["events"]:
                if event["type"] == "availability:updated":
                    self._update(event)
        self.cursor = msg["cursor"]
        if not self.live:
            self.fleet.live += 1
        self.live = True
        self.live_at = time.monotonic()
        self.first_live.set()
        self.attempts = 0
        if self.lost_at is not None:
            self.outages.append(self.live_at - self.lost_at)
            self.lost_at = None
        if not sub.subscribed.done():
            sub.subscribed.set_result(None)

    def _update(self, msg: dict[str, Any]) -> None:
        slot = msg["slot"]
        new = _state(slot)
        old = self.slots.get(slot["id"])
        if old is None:
            self.problems.append(f"update of slot {slot['id']} that the snapshot did not hold")
        elif new[0] != old[0] + 1:
            self.problems.append(f"slot {slot['id']}: version {new[0]} after {old[0]}")
        self.slots[slot["id"]] = new
        self.cursor = msg["cursor"]
        self.updates += 1

    # --- the connection ---------------------------------------------------------------

    async def connect(self) -> None:
        """One attempt: open a socket through the balancer and subscribe (resuming if we can)."""
        self.attempts += 1
        self.connections += 1
        loop = asyncio.get_running_loop()
        sub = Subscriber(channel=self.channel, host=f"{self.fleet.host}:{self.fleet.port}",
                         path="/ws", dialect=NativeDialect(), on_message=self.on_message,
                         on_lost=self.on_lost)
        sub.cursor = self.cursor
        self.sub = sub
        try:
            await asyncio.wait_for(loop.create_connection(lambda: sub, self.fleet.host,
                                                          self.fleet.port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            # The connection may still come up (asyncio.wait_for can time out just as it is
            # made): the socket is closed when it does, and never read.
            sub.abort()
            self._lost(None)

    def on_lost(self, sub: Subscriber, exc: Exception | None) -> None:
        # Its future may hold the loss: retrieve it so the loop does not report it unread.
        if sub.subscribed.done() and not sub.subscribed.cancelled():
            sub.subscribed.exception()
        if sub is not self.sub or sub.closing:
            return  # a socket we replaced or closed ourselves
        found = re.search(r"code (\d+)", str(exc or ""))
        if found:
            self.close_codes.append(int(found.group(1)))
        self._lost(exc)

    def _lost(self, exc: Exception | None) -> None:
        if self.lost_at is None:
            self.lost_at = time.monotonic()
        if self.live:
            self.fleet.live -= 1
        self.live = False
        if self.fleet.stopping:
            return
        delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** self.attempts))
        self.fleet.later(delay, self)

    def close(self) -> None:
        if self.sub is not None:
            self.sub.abort()


class Fleet:
    """Many clients, each subscribed to one channel, through one balancer address."""

    def __init__(self, host: str, port: int, channels: dict[str, int]) -> None:
        self.host, self.port = host, port
        self.clients = [Client(self, ch) for ch, n in channels.items() for _ in range(n)]
        self.stopping = False
        self.live = 0  # clients subscribed right now: counted, not scanned, 20 times a second
        self._tasks: set[asyncio.Task[None]] = set()

    def later(self, delay: float, client: Client) -> None:
        async def reconnect() -> None:
            await asyncio.sleep(delay)
            if not self.stopping:
                await client.connect()

        task = asyncio.create_task(reconnect())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, within: float = 60, concurrency: int = 100) -> float:
        """Connect every client (at most `concurrency` handshakes at once); seconds taken."""
        began = time.monotonic()
        gate = asyncio.Semaphore(concurrency)

        async def one(client: Client) -> None:
            async with gate:
                await client.connect()
                await client.first_live.wait()

        await asyncio.wait_for(asyncio.gather(*(one(c) for c in self.clients)), within)
        return time.monotonic() - began

    def all_live(self) -> bool:
        return self.live == len(self.clients)

    async def wait(self, what: str, predicate: Any, within: float) -> float:
        """Awaits `predicate()`; returns the seconds it took, or fails naming `what`."""
        began = time.monotonic()
        while not predicate():
            if time.monotonic() - began > within:
                raise AssertionError(f"{what}: not within {within:g} s")
            await asyncio.sleep(0.05)
        return time.monotonic() - began

    def problems(self) -> list[str]:
        out = []
        for i, c in enumerate(self.clients):
            out += [f"client {i} ({c.channel}): {p}" for p in c.problems]
            if c.snapshot_resumes:
                out.append(f"client {i}: {c.snapshot_resumes} resume(s) answered with a snapshot")
        return out

    def mismatches(self, truth: dict[str, dict[str, SlotState]]) -> list[str]:
        """Where a client's view differs from the database's (`truth`: channel -> slots)."""
        out = []
        for i, c in enumerate(self.clients):
            if c.slots != truth[c.channel]:
                wrong = [s for s in truth[c.channel] if c.slots.get(s) != truth[c.channel][s]]
                out.append(f"client {i} ({c.channel}): {len(wrong)} slot(s) differ, e.g. "
                           f"{wrong[:1]}: saw {c.slots.get(wrong[0]) if wrong else None}, "
                           f"database {truth[c.channel][wrong[0]] if wrong else None}")
        return out

    def by_channel(self) -> dict[str, list[Client]]:
        out: dict[str, list[Client]] = {}
        for c in self.clients:
            out.setdefault(c.channel, []).append(c)
        return out

    async def close(self) -> None:
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for c in self.clients:
            c.close()
        await asyncio.sleep(0.1)  # let the transports finish closing inside this loop


@dataclass
class World:
    """What the tests book: one vendor, `services` channels, their slots (ample capacity)."""

    vendor: str
    slots: dict[str, list[str]]  # channel -> slot ids

    @property
    def channels(self) -> list[str]:
        return list(self.slots)

    @property
    def all_slots(self) -> list[str]:
        return [s for ids in self.slots.values() for s in ids]


async def database_truth(dsn: str, vendor: str,
                         channels: Iterable[str]) -> dict[str, dict[str, SlotState]]:
    """Each channel's slots as the database holds them (`channels`: the vendor's services):
    the truth clients must end up with."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT id::text, service_id::text, version, booked, held, capacity - booked - held "
            "AS available FROM rt_slots WHERE vendor_id = $1", uuid.UUID(vendor))
    finally:
        await conn.close()
    truth: dict[str, dict[str, SlotState]] = {ch: {} for ch in channels}
    for r in rows:
        truth[f"service:{r['service_id']}"][r["id"]] = (r["version"], r["booked"], r["held"],
                                                        r["available"])
    return truth


def expected_totals(clients: Iterable[Client]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in clients:
        counts[c.channel] = counts.get(c.channel, 0) + 1
    return counts
