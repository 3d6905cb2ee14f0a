"""Wiring of the channels layer: hub, listener, presence and the `/ws` endpoint, with a lifecycle.

The app's lifespan calls `start()` and `stop()`; `/readyz` asks `ready()`; `/ws` is mounted on
`endpoint`. Graceful shutdown has to run before uvicorn's own, because uvicorn closes open
WebSockets with 1012 when it shuts down and the contract promises 1001: `start()` therefore
chains the process's SIGTERM/SIGINT handlers (uvicorn's) so that the sockets are drained and
closed with 1001 first, and then uvicorn proceeds as it always does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Awaitable, Sequence
from types import FrameType
from typing import Any

import uvicorn

from realtime.access import Access
from realtime.booking.service import BookingService
from realtime.channels import gcwatch, metrics, sse
from realtime.channels.connection import Connection
from realtime.channels.handoff import close_paced
from realtime.channels.hub import Hub
from realtime.channels.peraddress import AddressCap
from realtime.channels.protocol import ClientMessage
from realtime.channels.session import Session
from realtime.channels.subscriber import Subscriber
from realtime.channels.writer import PARALLEL_MIN, Sent, write_parallel
from realtime.db.interface import ConnectionPool
from realtime.errors import CLOSE_GOING_AWAY, CLOSE_OVERLOAD
from realtime.eventlog import cursor as cursors
from realtime.eventlog.events import Event
from realtime.eventlog.listener import Listener
from realtime.eventlog.store import EventLog
from realtime.settings import Settings
from realtime.shared.presence import MemoryPresence, PresenceBackend
from realtime.tasks import cancel_all, supervise

log = logging.getLogger("realtime.channels")

PRESENCE_INTERVAL = 1.0
BOOKING_DRAIN_SECONDS = 5.0
CLOSE_DRAIN_SECONDS = 3.0
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ChannelRuntime:
    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool,
        booking: BookingService,
        dsn: str,
        access: Access | None = None,
        presence: PresenceBackend | None = None,
    ) -> None:
        self.settings = settings
        self.access = access or Access(settings)
        self.pool = pool
        self.booking = booking
        self.presence: PresenceBackend = presence or MemoryPresence()
        self.hub = Hub(cursors.encode, on_count=self.presence.changed, on_flush=self._flush)
        self.listener = Listener(settings, pool, dsn, self._on_events, self._on_gap)
        self.session = Session(settings, self.access, self.hub, EventLog(pool), booking,
                               self.listener.sequence_now, self.listener.recent)
        self.connections: set[Connection] = set()
        # Open /ws sockets and /sse streams per client address (both doors count here).
        self.sockets = AddressCap(settings.max_sockets_per_address)
        self.closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._drained: asyncio.Task[None] | None = None
        self._previous_handlers: dict[int, Any] = {}
        # The ASGI app of `/ws`: an object, not a method, so that Starlette's WebSocketRoute
        # mounts it as raw ASGI rather than wrapping it as `func(websocket)`.
        self.endpoint = _Endpoint(self)
        self.sse_endpoint = _SseEndpoint(self)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.listener.start()
        self._tasks.append(supervise("presence", self._presence_loop))
        self._chain_signals()
        gcwatch.install()
        gcwatch.settle()

    async def drain(self) -> None:
        """Stop accepting, let in-flight bookings finish, close every socket with 1001."""
        if self._drained is None:
            self._drained = asyncio.ensure_future(self._drain())
        await asyncio.shield(self._drained)

    async def _drain(self) -> None:
        self.closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.session.idle.wait(), BOOKING_DRAIN_SECONDS)
        connections = list(self.connections)
        log.info("closing %d WebSocket connections with 1001", len(connections))
        # Paced, so that the processes taking the clients over are not hit all at once.
        await close_paced([conn.sub for conn in connections], CLOSE_GOING_AWAY)
        if connections:
            waits = [asyncio.ensure_future(conn.wait_closed()) for conn in connections]
            _, stuck = await asyncio.wait(waits, timeout=CLOSE_DRAIN_SECONDS)
            for task in stuck:
                task.cancel()
            for conn in list(self.connections):
                # A peer that does not read cannot receive its close frame either; it must not
                # hold the shutdown past its deadline.
                conn.abort()

    async def stop(self) -> None:
        await self.drain()
        self._restore_signals()
        await cancel_all(self._tasks)
        self._tasks = []
        await self.listener.stop()
        await self.presence.close()

    def ready(self) -> str | None:
        if self.closing:
            return "shutting down"
        return self.listener.ready()

    # --- glue -----------------------------------------------------------------------------

    def _on_events(self, events: Sequence[Event], epoch: str, stamp: float) -> None:
        with gcwatch.paused():
            self.hub.dispatch(events, epoch, stamp)

    def _flush(self, touched: list[Subscriber]) -> None:
        """Write a dispatch's frames to every socket that got some: in bulk when many.

        Only sockets and SSE streams whose writer is a direct one hand out bulk jobs
        (`take_direct`); the others, TLS ones included, are woken to write through their own
        writer. A job is one chunk of the outbox (`WRITE_CHUNK` frames); a socket whose kernel
        took all of it gets its next chunk in the next round, until its outbox is empty or its
        kernel buffer is full. Left to its writer task instead, a batch bigger than one chunk
        was still partly queued when the next batch came, on every socket at once: the backlog
        coalesced a third of 1,500,000 frames/s owed on one channel while a core stood idle
        (bench/scaleout.py). The rounds stop by themselves: nothing is queued meanwhile."""
        if len(touched) < PARALLEL_MIN:
            for sub in touched:
                sub.wake()
            return
        pending, first = touched, True
        while pending:
            jobs: list[tuple[int, bytes]] = []
            owners: list[Subscriber] = []
            for sub in pending:
                outlet = sub.outlet
                job = outlet.take_direct() if outlet is not None else None
                if job is not None:
                    jobs.append(job)
                    owners.append(sub)
                elif first or sub.frames:
                    sub.wake()
            if not jobs:
                return
            pending, first = [], False
            for sub, (_, data), written in zip(owners, jobs, write_parallel(jobs), strict=True):
                if written == len(data):
                    if sub.frames:
                        pending.append(sub)  # the kernel has room: the next chunk goes too
                    continue
                # Partly written, or not at all (-1: let the transport meet the error).
                assert sub.outlet is not None
                sub.outlet.write_rest(data[max(written, 0):])
                if sub.frames:
                    sub.wake()  # its writer takes the rest when the transport drains
            if len(pending) < PARALLEL_MIN:
                for sub in pending:
                    sub.wake()
                return

    def _on_gap(self) -> None:
        # Subscribers may have missed pruned events: make them resubscribe from their cursors,
        # which then get snapshots. 1013 tells a client to come back shortly.
        for conn in list(self.connections):
            conn.sub.close(CLOSE_OVERLOAD)

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_INTERVAL)
            self.flush_metrics()
            if not gcwatch.maybe_thaw(len(self.connections)):
                gcwatch.maybe_freeze()
            # Always call: besides changed counts, the hub owes the current count to sockets
            # that joined after the tick that counted them (its newcomers).
            self.hub.presence(await self.presence.poll())

    @staticmethod
    def flush_metrics() -> None:
        sent = Sent.since_last()
        if sent:
            metrics.FRAMES_SENT.inc(sent)

    # --- what each connection asks of the layer (connection.Host) ------------------------

    def opened(self, conn: Connection) -> None:
        self.connections.add(conn)

    def closed(self, conn: Connection) -> None:
        self.hub.drop(conn.sub)
        self.connections.discard(conn)

    async def handle(self, conn: Connection, msg: ClientMessage) -> None:
        await self.session.handle(conn, msg)

    # --- signals --------------------------------------------------------------------------

    def _chain_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            previous = signal.getsignal(sig)
            # Only in front of uvicorn's own handler: anywhere else (a test runner, an embedding
            # app) the process's signals are not ours to take.
            if not isinstance(getattr(previous, "__self__", None), uvicorn.Server):
                continue
            self._previous_handlers[sig] = previous

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                if self.closing:
                    previous(signum, frame)  # a second signal: no more waiting
                    return
                self.closing = True
                loop.call_soon_threadsafe(self._drain_then, previous, signum)

            signal.signal(sig, handler)

    def _drain_then(self, previous: Any, signum: int) -> None:
        async def run() -> None:
            try:
                await self.drain()
            finally:
                previous(signum, None)

        self._tasks.append(asyncio.ensure_future(run()))

    def _restore_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous_handlers.items():
            with contextlib.suppress(ValueError):
                signal.signal(sig, previous)
        self._previous_handlers.clear()


class _SseEndpoint:
    """The ASGI app of `/sse` (an object, so that Starlette mounts it as raw ASGI)."""

    def __init__(self, runtime: ChannelRuntime) -> None:
        self._runtime = runtime

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await sse.serve(self._runtime, scope, receive, send)


class _Endpoint:
    def __init__(self, runtime: ChannelRuntime) -> None:
        self._runtime = runtime

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        # Not a coroutine of its own: the connection's is what gets awaited, one frame less
        # held by every open socket.
        return Connection(self._runtime, scope, send).run(receive)
