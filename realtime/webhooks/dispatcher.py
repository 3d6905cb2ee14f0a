"""The webhook dispatcher: delivers each endpoint's events in log order, at least once.

Every server process runs one. It wakes when the event reader has read new events (and every
`POLL_SECONDS` for retries that fell due), asks the database which endpoints have something
to deliver, and works on each under a lease (see migration 0003), so that two processes never
deliver to one endpoint at once. For an endpoint it reads a batch of its events after its
cursor, POSTs them one by one (each must be answered 2xx before the next is sent), and records
the batch in one transaction: the cursor moves past what was delivered. A crash between a
delivery and that record sends those events again: at least once, never lost, and receivers
deduplicate by event id.

A failed attempt (not 2xx, a redirect, a timeout of `ATTEMPT_TIMEOUT` s, a refused address)
schedules the same event again with exponential backoff and jitter, capped at
`MAX_BACKOFF`; later events of that endpoint wait behind it, other endpoints do not. An
endpoint failing for `GIVE_UP_AFTER` is disabled, as is one whose next event was pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from typing import Any

from realtime import __version__
from realtime.db.interface import ConnectionPool
from realtime.httpclient import MAX_IDLE, Connection, HttpError, HttpTimeout, connection_for
from realtime.tasks import cancel_all, supervise
from realtime.webhooks import metrics
from realtime.webhooks.events import Delivery, delivery
from realtime.webhooks.signing import sign
from realtime.webhooks.store import WebhookStore
from realtime.webhooks.targets import Refused, check_address

log = logging.getLogger("realtime.webhooks")

ATTEMPT_TIMEOUT = 10.0
LEASE_SECONDS = 60.0  # > one attempt's timeout plus a batch's bookkeeping; renewed per batch
BATCH = 100
POLL_SECONDS = 1.0
WORKERS = 16  # endpoints served at once by this process; a hanging one holds only its own
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 600.0
GIVE_UP_AFTER = 3 * 24 * 3600.0
PRUNE_EVERY = 600.0
USER_AGENT = f"realtime-webhooks/{__version__}"


def backoff(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: doubling from 1 s, capped at 10 min, jittered
    (so that a receiver coming back is not hit by every process at the same instant)."""
    delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** min(attempt - 1, 20))
    return random.uniform(delay / 2, delay)


class Dispatcher:
    def __init__(self, pool: ConnectionPool, allow_private: bool = False) -> None:
        self.store = WebhookStore(pool)
        self.allow_private = allow_private
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._active = 0  # active endpoints, as of `_counted_at`
        self._counted_at = 0.0
        self._busy: set[str] = set()
        self._workers: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        """New events were read: look for endpoints with something to deliver."""
        self._wake.set()

    def start(self) -> None:
        self._tasks = [supervise("webhooks", self._run), supervise("webhook-pruner", self._prune)]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        workers = list(self._workers)
        await cancel_all(workers)

    def endpoints_changed(self) -> None:
        """An endpoint was registered here: look at once rather than at the next poll."""
        self._counted_at = 0.0
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()
            free = WORKERS - len(self._busy)
            if free <= 0:
                continue
            # New events wake this loop after every read of the log (up to 100 a second under
            # load). Whether any endpoint is active at all is read at most once per poll, so
            # that a server without webhooks pays a query a second, not one per batch; one
            # registered by another process is seen within a poll.
            try:
                if loop.time() - self._counted_at >= POLL_SECONDS:
                    self._active = await self.store.active_count()
                    self._counted_at = loop.time()
                if not self._active and not self._busy:
                    continue
                due = await self.store.due(free + len(self._busy))
            except Exception as exc:  # the database is away: try again at the next poll
                log.warning("webhooks: cannot read due endpoints: %s", type(exc).__name__)
                continue
            for webhook_id in due:
                if webhook_id in self._busy or len(self._busy) >= WORKERS:
                    continue
                self._busy.add(webhook_id)
                task = asyncio.create_task(self._serve(webhook_id))
                self._workers.add(task)
                task.add_done_callback(self._workers.discard)

    async def _serve(self, webhook_id: str) -> None:
        try:
            await self._deliver(webhook_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook %s: delivery failed unexpectedly", webhook_id)
        finally:
            self._busy.discard(webhook_id)
            with contextlib.suppress(Exception):
                await self.store.release(webhook_id, self.owner)
            self._wake.set()  # it may have more, or others may be waiting for a worker

    async def _deliver(self, webhook_id: str) -> None:
        target = _Target()
        try:
            await self._deliver_to(webhook_id, target)
        finally:
            target.close()

    async def _deliver_to(self, webhook_id: str, target: _Target) -> None:
        store, owner = self.store, self.owner
        while True:
            ep = await store.claim(webhook_id, owner, LEASE_SECONDS)
            if ep is None:
                return  # another process holds it, or it was disabled or deleted
            events, last_pos, pruned_pos, epoch = await store.batch(
                ep["cursor"], ep["vendor_id"], list(ep["events"]), BATCH)
            if ep["cursor"] < pruned_pos:
                await store.disable(webhook_id, owner, "events it had not received were pruned "
                                    "(it failed for longer than the log keeps them)")
                return
            if not events:
                await store.skip_to(webhook_id, owner, last_pos)
                return
            done: list[tuple[int, str, str, int]] = []  # (pos, event id, type, status code)
            failure: tuple[Delivery, int | None, str] | None = None
            for row in events:
                item = delivery(row, epoch)
                status, error = await self._attempt(target, ep["url"], ep["secret"], item)
                if error is None and status is not None:
                    done.append((item.pos, item.event_id, item.type, status))
                    continue
                failure = (item, status, error or f"HTTP {status}")
                break
            cursor = done[-1][0] if done else ep["cursor"]
            if failure is None and len(events) < BATCH:
                cursor = max(cursor, last_pos)  # nothing else of this endpoint's up to there
            if done or cursor > ep["cursor"]:
                if not await store.delivered(webhook_id, owner, cursor, done):
                    return
                metrics.DELIVERED.inc(len(done))
            if failure is not None:
                await self._failed(ep, *failure, first_of_batch=not done)
                return
            if len(events) < BATCH:
                return

    async def _attempt(self, target: _Target, url: str, secret: str,
                       item: Delivery) -> tuple[int | None, str | None]:
        """(status code, error or None when delivered)."""
        try:
            conn, path = await target.connect(url, self.allow_private)
            response = await conn.request("POST", path, item.body, {
                "Content-Type": "application/json", "User-Agent": USER_AGENT,
                "Realtime-Signature": sign(secret, item.body),
                "Realtime-Event-Id": item.event_id})
        except Refused as exc:
            return None, str(exc)
        except HttpTimeout:
            target.close()
            return None, f"no answer within {ATTEMPT_TIMEOUT:g} s"
        except (HttpError, OSError, ValueError) as exc:
            target.close()
            return None, type(exc).__name__
        if 200 <= response.status < 300:
            return response.status, None
        return response.status, f"HTTP {response.status}"

    async def _failed(self, ep: Any, item: Delivery, status: int | None, error: str,
                      first_of_batch: bool) -> None:
        metrics.FAILED.inc()
        # Attempts count failures of the event after the cursor; a batch that delivered some
        # events first has a new head event, whose first failure this is.
        attempts = (ep["attempts"] if first_of_batch else 0) + 1
        since = ep["failing_since"] if first_of_batch else None
        failing_for = time.time() - since.timestamp() if since is not None else 0.0
        reason = None
        if failing_for >= GIVE_UP_AFTER:
            reason = f"failing for more than 3 days (last: {error})"
        log.info("webhook delivery failed", extra={
            "webhook": ep["id"], "event": item.event_id, "attempt": attempts, "error": error})
        await self.store.failed(ep["id"], self.owner, item.pos, item.event_id, item.type, status,
                                None if reason else backoff(attempts), reason)

    async def _prune(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            with contextlib.suppress(Exception):
                await self.store.prune_deliveries()


class _Target:
    """One endpoint's keep-alive connection for the events of one lease: the address checks
    and the TLS handshake happen once per connection, not once per event."""

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._path = ""

    async def connect(self, url: str, allow_private: bool) -> tuple[Connection, str]:
        conn = self._conn
        # A connection idle past MAX_IDLE is replaced by the client itself: check again first.
        if conn is None or not conn.is_open or (
                asyncio.get_running_loop().time() - conn.last_used > MAX_IDLE):
            self.close()
            await check_address(url, allow_private)
            conn, self._path = connection_for(url, ATTEMPT_TIMEOUT)
            self._conn = conn
        return conn, self._path

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
