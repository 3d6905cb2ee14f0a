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

from .checks import Checker
from .sseclient import SseSubscriber
from .stats import Delivery, Histogram, compare_final
from .wsclient import DIALECTS, Subscriber


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Worker(Checker):
    def __init__(self, conn: Connection, spec: Mapping[str, Any]) -> None:
        super().__init__(DIALECTS[spec["dialect"]]())
        self.conn = conn
        self.spec = spec
        self.host: str = spec["host"]
        self.port: int = spec["port"]
        self.path: str = spec["path"]
        # "websocket" or "sse": what each subscriber is (the checks are the same).
        self.transport: str = spec.get("transport", "websocket")
        source = spec.get("source_address")
        self.local_addr: tuple[str, int] | None = (source, 0) if source else None
        self.connect_timeout: float = spec.get("connect_timeout", 15.0)
        self.sem = asyncio.Semaphore(spec.get("connect_concurrency", 200))
        self.subs: list[Subscriber | SseSubscriber] = []
        self.connect = Histogram()
        self.reconnect = Histogram()
        self.done = asyncio.Event()
        self.storm_seconds: float | None = None
        self.final: dict[str, int] | None = None
        self.started = time.monotonic()

    def on_lost(self, sub: Any, exc: Exception | None) -> None:
        if sub.closing or not sub.subscribed.done() or sub.subscribed.exception() is not None:
            return
        self.counters.unexpected_closes += 1
        self.error(f"connection lost: {exc or 'closed by the server'}"[:200])

    # -- connections ------------------------------------------------------------------------

    async def open(self, channel: str, delivery: Delivery, cursor: str | None,
                   conflicts: int = 0) -> Subscriber | SseSubscriber | None:
        async with self.sem:
            loop = asyncio.get_running_loop()
            sub: Subscriber | SseSubscriber
            if self.transport == "sse":
                # A stream that resumes sends its cursor as Last-Event-ID.
                sub = SseSubscriber(channel=channel, host=f"{self.host}:{self.port}",
                                    path=self.path, on_message=self.on_message,
                                    on_lost=self.on_lost)
            else:
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

        async def again(s: Subscriber | SseSubscriber) -> Subscriber | SseSubscriber:
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

        def is_behind(s: Subscriber | SseSubscriber) -> bool:
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
