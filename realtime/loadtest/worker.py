"""A load-generator process: holds a share of the sockets and checks every frame they get.

The coordinator talks to each worker over a `multiprocessing` pipe:

- coordinator -> worker: `("refs", [(slot_id, version, t_sent, t_answered), ...])` for every
  booking that succeeded, `("reconnect",)`, `("final", expected, drain_timeout, conflicts)`,
  `("stop",)`;
- worker -> coordinator: `("connected", info)`, `("progress", info)` each second,
  `("storm", info)`, `("report", info)`.

Times are `time.monotonic()`, which is CLOCK_MONOTONIC on Linux: one clock for every process
of the machine, so a booker's send time and a worker's receive time can be subtracted.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from .stats import Counters, Delivery, Histogram, classify, compare_final
from .wsclient import (
    CONFLICT,
    CONTROL,
    DIALECTS,
    ERROR,
    SUBSCRIBED,
    UPDATE,
    Dialect,
    Parsed,
    Subscriber,
    parse_message,
)

# Frames identical across subscribers parse once; the bound keeps memory flat on long runs.
_CACHE_MAX = 4096
# Receive times waiting for their booking's send time; past this, samples are dropped and
# counted as `unmatched_latency` rather than growing memory without bound.
_PENDING_MAX = 2_000_000
_PENDING_AGE = 30.0
_REFS_AGE = 120.0
_MAX_ERROR_KINDS = 20


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Worker:
    def __init__(self, conn: Connection, spec: Mapping[str, Any]) -> None:
        self.conn = conn
        self.spec = spec
        self.host: str = spec["host"]
        self.port: int = spec["port"]
        self.path: str = spec["path"]
        self.dialect: Dialect = DIALECTS[spec["dialect"]]()
        source = spec.get("source_address")
        self.local_addr: tuple[str, int] | None = (source, 0) if source else None
        self.connect_timeout: float = spec.get("connect_timeout", 15.0)
        self.sem = asyncio.Semaphore(spec.get("connect_concurrency", 200))
        self.subs: list[Subscriber] = []
        self.counters = Counters()
        self.latency = Histogram()
        self.connect = Histogram()
        self.reconnect = Histogram()
        self.before_response = 0
        self.cache: dict[bytes, Parsed] = {}
        self.refs: dict[tuple[str, int], tuple[float, float]] = {}
        self.pending: dict[tuple[str, int], list[float]] = {}
        self.pending_count = 0
        self.errors: dict[str, int] = {}
        self.done = asyncio.Event()
        self.storm_seconds: float | None = None
        self.final: dict[str, int] | None = None
        self.started = time.monotonic()

    # -- bookkeeping ----------------------------------------------------------------------

    def error(self, text: str) -> None:
        if text in self.errors or len(self.errors) < _MAX_ERROR_KINDS:
            self.errors[text] = self.errors.get(text, 0) + 1
        else:
            self.errors["(other errors)"] = self.errors.get("(other errors)", 0) + 1

    def _sample(self, key: tuple[str, int], now: float) -> None:
        ref = self.refs.get(key)
        if ref is not None:
            self.latency.add(now - ref[0])
            if now < ref[1]:
                self.before_response += 1
            return
        if self.pending_count >= _PENDING_MAX:
            self.counters.unmatched_latency += 1
            return
        samples = self.pending.get(key)
        if samples is None:
            self.pending[key] = [now]
        else:
            samples.append(now)
        self.pending_count += 1

    def _on_refs(self, batch: list[tuple[str, int, float, float]]) -> None:
        for slot_id, version, sent, answered in batch:
            key = (slot_id, version)
            self.refs[key] = (sent, answered)
            samples = self.pending.pop(key, None)
            if samples:
                self.pending_count -= len(samples)
                for t in samples:
                    self.latency.add(t - sent)
                    if t < answered:
                        self.before_response += 1

    def _prune(self) -> None:
        # Both dicts are in insertion order, which is time order: stop at the first young key.
        now = time.monotonic()
        old: list[tuple[str, int]] = []
        for k, (sent, _) in self.refs.items():
            if now - sent <= _REFS_AGE:
                break
            old.append(k)
        for k in old:
            del self.refs[k]
        stale: list[tuple[str, int]] = []
        for k, samples in self.pending.items():
            if now - samples[0] <= _PENDING_AGE:
                break
            stale.append(k)
        for k in stale:
            n = len(self.pending.pop(k))
            self.pending_count -= n
            self.counters.unmatched_latency += n

    # -- frames ---------------------------------------------------------------------------

    def on_message(self, sub: Subscriber, payload: bytes) -> None:
        parsed = self.cache.get(payload)
        if parsed is None:
            try:
                parsed, cacheable = self.dialect.parse(sub, payload)
            except Exception as exc:  # a frame we cannot read is an error to report, not a crash
                self.counters.error_frames += 1
                self.error(f"unreadable frame: {exc!r}"[:200])
                return
            if cacheable:
                if len(self.cache) >= _CACHE_MAX:
                    self.cache.clear()
                self.cache[payload] = parsed
        kind = parsed[0]
        if kind == UPDATE:
            if classify(sub.delivery, parsed[1], parsed[2], parsed[3], self.counters):
                self._sample((parsed[1], parsed[2]), time.monotonic())
            if parsed[4] is not None:
                sub.cursor = parsed[4]
        elif kind == CONFLICT:
            self.counters.conflicts_seen += 1
            sub.conflicts += 1
            if parsed[4] is not None:
                sub.cursor = parsed[4]
        elif kind == SUBSCRIBED:
            self._on_subscribed(sub, parsed[5])
        elif kind == ERROR:
            self.counters.error_frames += 1
            err = parsed[5] if isinstance(parsed[5], dict) else {}
            text = f"error frame {err.get('code')}: {err.get('message')}"
            self.error(text[:200])
            if not sub.subscribed.done():
                sub.subscribed.set_exception(ConnectionError(text))
        elif kind != CONTROL:
            self.counters.other_frames += 1

    def _on_subscribed(self, sub: Subscriber, msg: dict[str, Any]) -> None:
        delivery: Delivery = sub.delivery
        snapshot = msg.get("snapshot")
        if sub.cursor is not None or delivery.versions:
            # A resubscribe (after a reconnect): did the server resume or resend the state?
            if isinstance(snapshot, dict):
                self.counters.resynced_by_snapshot += 1
            else:
                self.counters.resumed_from_cursor += 1
        if isinstance(snapshot, dict):
            for s in snapshot.get("slots", []):
                slot_id = str(s["id"])
                version = int(s["version"])
                seen = delivery.versions.get(slot_id)
                if seen is not None and version < seen:
                    # A snapshot older than what this socket already saw: a stale state.
                    self.counters.out_of_order += 1
                    continue
                delivery.versions[slot_id] = version
                delivery.states[slot_id] = (int(s["booked"]), int(s["held"]), int(s["available"]))
        now = time.monotonic()
        for event in msg.get("events") or []:
            p = parse_message(event)
            if p[0] == UPDATE:
                if classify(delivery, p[1], p[2], p[3], self.counters):
                    self._sample((p[1], p[2]), now)
            elif p[0] == CONFLICT:
                self.counters.conflicts_seen += 1
                sub.conflicts += 1
        if msg.get("cursor") is not None:
            sub.cursor = msg["cursor"]
        if not sub.subscribed.done():
            sub.subscribed.set_result(None)

    def on_lost(self, sub: Subscriber, exc: Exception | None) -> None:
        if sub.closing or not sub.subscribed.done() or sub.subscribed.exception() is not None:
            return
        self.counters.unexpected_closes += 1
        self.error(f"connection lost: {exc or 'closed by the server'}"[:200])

    # -- connections ------------------------------------------------------------------------

    async def open(self, channel: str, delivery: Delivery, cursor: str | None,
                   conflicts: int = 0) -> Subscriber | None:
        async with self.sem:
            loop = asyncio.get_running_loop()
            sub = Subscriber(
                channel=channel,
                host=f"{self.host}:{self.port}",
                path=self.path,
                dialect=self.dialect,
                on_message=self.on_message,
                on_lost=self.on_lost,
            )
            sub.delivery = delivery
            sub.cursor = cursor
            sub.conflicts = conflicts  # a reconnect carries the count over
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await loop.create_connection(
                        lambda: sub, self.host, self.port, local_addr=self.local_addr
                    )
                    await sub.subscribed
            except Exception as exc:
                sub.abort()
                self.counters.connect_errors += 1
                text = "timed out" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
                self.error(f"connect: {text}"[:200])
                return None
            return sub

    async def connect_all(self) -> None:
        plan: list[str] = []
        queues = [[ch] * n for ch, n in self.spec["channels"]]
        # Interleave channels so that a partial failure spreads over all of them.
        for i in range(max((len(q) for q in queues), default=0)):
            plan.extend(q[i] for q in queues if i < len(q))
        t0 = time.monotonic()

        async def one(channel: str) -> None:
            start = time.monotonic()
            delivery = Delivery()
            sub = await self.open(channel, delivery, None)
            if sub is not None:
                self.connect.add(time.monotonic() - start)
                self.subs.append(sub)
            else:
                # Keep its (empty) view: a subscriber that never connected saw nothing.
                self.failed.append((channel, delivery))

        self.failed: list[tuple[str, Delivery]] = []
        await asyncio.gather(*(one(ch) for ch in plan))
        self.ramp_seconds = time.monotonic() - t0

    async def storm(self) -> None:
        """Every socket drops at once and reconnects, resuming from its last cursor."""
        t0 = time.monotonic()
        old = list(self.subs)
        for s in old:
            s.abort()

        async def again(s: Subscriber) -> Subscriber:
            start = time.monotonic()
            new = await self.open(s.channel, s.delivery, s.cursor, s.conflicts)
            if new is None:
                return s
            self.reconnect.add(time.monotonic() - start)
            return new

        self.subs = list(await asyncio.gather(*(again(s) for s in old)))
        self.storm_seconds = time.monotonic() - t0
        self.send(("storm", {"seconds": self.storm_seconds, "reconnect": self.reconnect.to_dict()}))

    async def finish(self, expected: Mapping[str, Mapping[str, Any]], drain: float,
                     conflicts: Mapping[str, int]) -> None:
        """Wait until every live socket shows the database's final state, then compare.

        Conflicts do not change a slot's version, so the versions alone do not wait for the
        last `conflict:detected` frames: after the versions, wait up to one more second for
        each socket to have seen every conflict of its channel (the booker counted them as 409
        answers). Only up to a second, because a server may legitimately coalesce a burst of
        conflicts on one slot; what did not arrive is reported as `conflicts_missed`.
        """
        exp = {
            ch: {sid: (int(v[0]), tuple(v[1])) for sid, v in slots.items()}
            for ch, slots in expected.items()
        }
        deadline = time.monotonic() + drain

        def is_behind(s: Subscriber) -> bool:
            versions = s.delivery.versions
            return any(versions.get(k, -1) < v for k, (v, _) in exp.get(s.channel, {}).items())

        # Only sockets still behind are checked again; a closed one will not catch up.
        waiting = list(self.subs)
        while time.monotonic() < deadline:
            waiting = [s for s in waiting if s.open and is_behind(s)]
            if not waiting:
                break
            await asyncio.sleep(0.05)
        self.drain_seconds = drain - max(0.0, deadline - time.monotonic())
        grace = min(deadline, time.monotonic() + 1.0)
        waiting = list(self.subs)
        while time.monotonic() < grace:
            waiting = [s for s in waiting if s.open and s.conflicts < conflicts.get(s.channel, 0)]
            if not waiting:
                break
            await asyncio.sleep(0.05)
        lost = behind = mismatched = 0
        views = [(s.channel, s.delivery) for s in self.subs] + self.failed
        for channel, delivery in views:
            l_, b, m = compare_final(delivery, exp.get(channel, {}))
            lost += l_
            behind += b
            mismatched += m
        missed = sum(max(0, conflicts.get(s.channel, 0) - s.conflicts) for s in self.subs)
        self.final = {"lost": lost, "behind": behind, "mismatched": mismatched,
                      "conflicts_missed": missed}
        self.send(("report", self.info(final=True)))
        for s in self.subs:
            s.close()
        self.done.set()

    # -- reporting ------------------------------------------------------------------------------

    def info(self, final: bool = False) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out: dict[str, Any] = {
            "index": self.spec["index"],
            "connected": sum(1 for s in self.subs if s.open),
            "counters": self.counters.to_dict(),
            "latency": self.latency.to_dict(),
            "before_response": self.before_response,
            "pending": self.pending_count,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "max_rss_kib": usage.ru_maxrss,
            "errors": dict(self.errors),
        }
        if final:
            out["connect"] = self.connect.to_dict()
            out["reconnect"] = self.reconnect.to_dict()
            out["final"] = self.final
            out["drain_seconds"] = getattr(self, "drain_seconds", None)
            out["ramp_seconds"] = getattr(self, "ramp_seconds", None)
            out["storm_seconds"] = self.storm_seconds
        return out

    def send(self, msg: Any) -> None:
        try:
            self.conn.send(msg)
        except (BrokenPipeError, OSError):
            self.done.set()  # the coordinator is gone: nothing left to work for

    def _on_pipe(self) -> None:
        try:
            while self.conn.poll():
                msg = self.conn.recv()
                self._dispatch(msg)
        except (EOFError, OSError):
            self.done.set()

    def _dispatch(self, msg: Any) -> None:
        kind = msg[0]
        if kind == "refs":
            self._on_refs(msg[1])
        elif kind == "reconnect":
            self._tasks.add(asyncio.ensure_future(self.storm()))
        elif kind == "final":
            self._tasks.add(asyncio.ensure_future(self.finish(msg[1], msg[2], msg[3])))
        elif kind == "stop":
            self.done.set()

    async def _progress(self) -> None:
        while not self.done.is_set():
            await asyncio.sleep(1.0)
            self._prune()
            if self.final is None:
                self.send(("progress", self.info()))

    async def run(self) -> None:
        self._tasks: set[asyncio.Future[None]] = set()
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._on_pipe)
        progress = asyncio.ensure_future(self._progress())
        await self.connect_all()
        self.send(("connected", {"index": self.spec["index"], **self.info(final=False),
                                 "connect": self.connect.to_dict(),
                                 "ramp_seconds": self.ramp_seconds}))
        # The worker's own bound: it never outlives the run it was started for.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), self.spec.get("max_seconds", 3600))
        progress.cancel()
        loop.remove_reader(self.conn.fileno())
        for s in self.subs:
            s.abort()


def worker_main(conn: Connection, spec: dict[str, Any]) -> None:
    """Entry point of a worker process (multiprocessing, spawn)."""
    _raise_fd_limit()
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # uvloop is optional: asyncio's loop is slower but correct
        factory = None

    async def main() -> None:
        await Worker(conn, spec).run()

    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        pass
