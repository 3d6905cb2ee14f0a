"""A lean connection pool for a server whose requests are one statement each.

Two costs of a general-purpose pool matter to such a server:

- **Checkout overhead.** asyncpg's pool costs about 45 µs of Python per checkout even without
  its reset query (an `asyncio.Queue`, a proxy object, and `asyncio.shield` starting a Task per
  release): more than the statement's own client work (`bench/poolcost.py`).
- **Idle connections that are checked out.** When every connection is taken, a released one
  goes to the next waiting task, which runs only on a later turn of the event loop; then it
  sends its statement. With 10 connections all taken and about 20 requests waiting,
  PostgreSQL saw its backends idle in ClientRead in 62% of samples (pg_stat_activity during
  `bench/pair.py uncontended`, with this pool before the job queue below).

So a one-statement call (`fetchval`, `fetchrow`, `fetch`, `execute`) that finds no free
connection is queued as a job, and a connection that finishes a statement takes the next job
**in the same step**, sending its statement before yielding to the loop: under load, each
connection is driven by one worker task that goes from job to job. A call that finds a free
connection runs its statement in its own task, as a plain pool would (no task is started when
nothing waits). Side by side with the hand-over version this gave 9% (uncontended) and 5%
(hot) more bookings/s. It removes one loop turn per hand-over, not the wait for the server to
process the answer: sampled the same way afterwards, the backends were still idle in 68% of
samples, which is the event loop's own turnaround on two shared cores.

`acquire()` still lends a connection for several statements or a transaction; it queues with
the jobs, first come, first served, unless it asks to go first (the event pipeline does: its
calls are short and every subscriber's update waits for them).

The rest is what the server needs and no more:
- at most `size` connections, opened on demand (one at start, so a wrong DSN fails at once);
- a connection that comes back in doubt (its statement failed with anything but an error
  PostgreSQL answered, was cancelled or timed out, or a transaction was left open) is closed,
  never reused, so a half-done session never reaches the next caller; its place is refilled
  on demand;
- no reset query on return: sessions carry no state here (LISTEN has its own connection,
  settings are SET LOCAL, advisory locks are transaction-scoped).

A caller cancelled while its job is queued leaves the queue; one cancelled while a worker runs
its statement stops waiting, and the statement completes (its result is dropped).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from realtime.db.interface import CLOSE_TIMEOUT, PoolClosed
from realtime.db.stats import Queries

__all__ = ["CLOSE_TIMEOUT", "Pool", "PoolClosed"]

log = logging.getLogger("realtime.db.pool")


class _Job:
    """A statement to run (`method` names the Connection method), or, with `method` None, a
    request to borrow a connection (`acquire`)."""

    __slots__ = ("args", "future", "method", "query")

    def __init__(self, method: str | None, query: str, args: tuple[Any, ...],
                 future: asyncio.Future[Any]) -> None:
        self.method = method
        self.query = query
        self.args = args
        self.future = future


def _sound(conn: asyncpg.Connection, exc: BaseException | None) -> bool:
    """Whether a connection can serve the next caller after a statement or a loan."""
    if exc is not None and not isinstance(exc, asyncpg.PostgresError):
        return False  # cancelled, timed out, or the socket failed: its state is unknown
    return not conn.is_closed() and not conn.is_in_transaction()


class Pool:
    """Ours: implements `realtime.db.interface.ConnectionPool` (the module docstring says how)."""

    def __init__(self, dsn: str, size: int,
                 init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
                 **connect_kwargs: Any) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self.dsn = dsn
        self.size = size
        self._init = init
        self._connect_kwargs = connect_kwargs
        self._idle: deque[asyncpg.Connection] = deque()
        self._jobs: deque[_Job] = deque()
        self._open = 0  # connections open or being opened: idle, lent, or running a statement
        self._closed = False
        self._workers: set[asyncio.Task[None]] = set()

    async def start(self) -> Pool:
        self._open += 1
        conn = await self._connect()
        self._idle.append(conn)
        return self

    # -- one statement ----------------------------------------------------------------------

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._statement("fetchval", query, args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._statement("fetchrow", query, args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._statement("fetch", query, args)

    async def execute(self, query: str, *args: Any) -> str:
        return await self._statement("execute", query, args)

    async def _statement(self, method: str, query: str, args: tuple[Any, ...]) -> Any:
        Queries.statements += 1
        conn = await self._free_connection()
        if conn is None:
            job = _Job(method, query, args, asyncio.get_running_loop().create_future())
            self._queue(job)
            return await job.future  # a cancelled future is skipped by whoever pops it
        try:
            result = await getattr(conn, method)(query, *args)
        except BaseException as exc:
            self._release(conn, _sound(conn, exc))
            raise
        self._release(conn, _sound(conn, None))
        return result

    # -- a loan -----------------------------------------------------------------------------

    @asynccontextmanager
    async def acquire(self, first: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """Lends a connection. `first` jumps the queue: for the event pipeline's short,
        latency-bound calls, which must not wait behind a storm of bookings (every event's
        delivery waits for them)."""
        Queries.loans += 1
        conn = await self._free_connection()
        if conn is None:
            job = _Job(None, "", (), asyncio.get_running_loop().create_future())
            self._queue(job, first)
            try:
                conn = await job.future
            except asyncio.CancelledError:
                if (job.future.done() and not job.future.cancelled()
                        and job.future.exception() is None):
                    self._release(job.future.result(), True)  # lent just as it was cancelled
                raise
        try:
            yield conn
        except BaseException as exc:
            self._release(conn, _sound(conn, exc))
            raise
        self._release(conn, _sound(conn, None))

    # -- state ------------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    @property
    def waiting(self) -> int:
        return sum(1 for job in self._jobs if not job.future.done())

    async def close(self) -> None:
        """Refuses new work and fails queued jobs; closes idle connections now, and each busy
        one when its statement or loan ends (workers get CLOSE_TIMEOUT to finish)."""
        self._closed = True
        self._fail_queued()
        idle, self._idle = list(self._idle), deque()
        self._open -= len(idle)
        for conn in idle:
            try:
                await asyncio.wait_for(conn.close(), CLOSE_TIMEOUT)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                conn.terminate()
        if self._workers:
            _, late = await asyncio.wait(set(self._workers), timeout=CLOSE_TIMEOUT)
            for task in late:
                task.cancel()

    # -- internals --------------------------------------------------------------------------

    async def _free_connection(self) -> asyncpg.Connection | None:
        """An idle connection, or a new one if there is room and nobody queues; else None."""
        if self._closed:
            raise PoolClosed("the pool is closed")
        while self._idle:
            conn = self._idle.pop()  # the most recently used: its caches are warm
            if not conn.is_closed():
                return conn
            self._open -= 1  # its backend or socket went away while it was idle
        if self._jobs or self._open >= self.size:
            return None
        self._open += 1
        return await self._connect()

    async def _connect(self) -> asyncpg.Connection:
        """Opens a connection in a place already counted in `_open` (given back on failure)."""
        try:
            conn = await asyncpg.connect(self.dsn, **self._connect_kwargs)
            try:
                if self._init is not None:
                    await self._init(conn)
            except BaseException:
                conn.terminate()
                raise
        except BaseException:
            self._open -= 1
            self._refill()
            raise
        return conn

    def _queue(self, job: _Job, first: bool = False) -> None:
        if first:
            self._jobs.appendleft(job)
        else:
            self._jobs.append(job)
        self._refill()  # a place left free (a connection closed while idle) serves it

    def _next_job(self) -> _Job | None:
        while self._jobs:
            job = self._jobs.popleft()
            if not job.future.done():  # done = its caller was cancelled while it waited
                return job
        return None

    def _release(self, conn: asyncpg.Connection, sound: bool) -> None:
        """A connection is free: it takes the next job, or goes idle, or is closed."""
        if not sound or self._closed:
            conn.terminate()
            self._open -= 1
            self._refill()
            return
        job = self._next_job()
        if job is None:
            self._idle.append(conn)
        elif job.method is None:
            job.future.set_result(conn)
        else:
            self._spawn(self._work(conn, job))

    def _refill(self) -> None:
        """A place came free: if jobs wait, a worker opens a connection for them."""
        if self._closed or self._open >= self.size:
            return
        job = self._next_job()
        if job is not None:
            self._open += 1
            self._spawn(self._work(None, job))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._workers.add(task)
        task.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        self._workers.discard(task)
        # A worker hands every error to its job's caller; one escaping is a bug here, and its
        # connection's place would be lost: say so loudly rather than let the pool shrink.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("pool worker failed", exc_info=exc)

    async def _work(self, conn: asyncpg.Connection | None, job: _Job) -> None:
        """Runs queued jobs on one connection, each sent as soon as the last one answered."""
        while True:
            if conn is None:
                try:
                    conn = await self._connect()  # the place was counted by _refill
                except BaseException as exc:
                    _fail(job, exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    return  # _connect's _refill handed the place to the next job
            if job.method is None:
                if job.future.done():  # the borrower gave up while this connection opened
                    self._release(conn, True)
                else:
                    job.future.set_result(conn)  # a loan: the borrower releases it
                return
            # A done future: its caller was cancelled after the job was handed here but
            # before it ran. Skip it, as if it had still been queued.
            if not job.future.done():
                try:
                    result = await getattr(conn, job.method)(job.query, *job.args)
                except BaseException as exc:
                    _fail(job, exc)
                    if not _sound(conn, exc) or self._closed:
                        self._release(conn, False)
                        if isinstance(exc, asyncio.CancelledError):
                            raise
                        return
                else:
                    if not job.future.done():
                        job.future.set_result(result)
                    if not _sound(conn, None) or self._closed:
                        self._release(conn, False)
                        return
            next_job = self._next_job()
            if next_job is None:
                self._idle.append(conn)
                return
            job = next_job

    def _fail_queued(self) -> None:
        while self._jobs:
            _fail(self._jobs.popleft(), PoolClosed("the pool is closed"))


def _fail(job: _Job, exc: BaseException) -> None:
    if job.future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        # The worker was cancelled (the pool is closing), not the caller: tell it so, rather
        # than make its task look cancelled.
        exc = PoolClosed("the pool closed while the statement ran")
    job.future.set_exception(exc)

