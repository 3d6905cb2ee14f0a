"""Webhook endpoints and their deliveries in PostgreSQL: the admin routes' reads and writes,
and the dispatcher's lease, batches and bookkeeping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from realtime import errors
from realtime.db.errors import retrying
from realtime.db.interface import ConnectionPool
from realtime.webhooks.events import EVENT_SQL, KINDS_OF, TYPES
from realtime.webhooks.signing import new_secret

PUBLIC_COLUMNS = """id::text, url, events, vendor_id::text, created_at, status, disabled_reason,
    attempts, next_attempt_at, last_status_code"""
DELIVERIES_SHOWN = 100
DELIVERIES_KEPT = 1000  # per endpoint, newest; older rows are pruned
# Who changes an endpoint and in which request, for the audit row its trigger writes (0006):
# transaction-local settings, read by rt_audit's column defaults as 0004's overloads set them.
SET_WHO = """SELECT set_config('realtime.actor', left($1::text, 200), true),
                    set_config('realtime.request_id', left($2::text, 200), true)"""


def _public(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["created_at"] = _ts(out["created_at"])
    out["next_attempt_at"] = _ts(out["next_attempt_at"])
    return out


def _ts(value: datetime | None) -> str | None:
    from realtime.webhooks.events import _ts as ts

    return ts(value)


class WebhookStore:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    # -- admin ------------------------------------------------------------------------------

    async def create(self, url: str, types: list[str], vendor_id: str | None,
                     who: tuple[str, str]) -> dict[str, Any]:
        """A new endpoint; it receives the events committed after this call. `who`: (actor,
        request id) for its audit row (migration 0006)."""
        secret = new_secret()

        async def op() -> Any:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(SET_WHO, *who)
                return await conn.fetchrow(
                    f"""INSERT INTO rt_webhooks (url, events, vendor_id, secret, cursor)
                        SELECT $1, $2, $3::uuid, $4, q.last_pos FROM rt_sequencer q
                        WHERE q.id = 1 AND ($3::uuid IS NULL OR EXISTS (
                            SELECT 1 FROM rt_vendors v WHERE v.id = $3::uuid))
                        RETURNING {PUBLIC_COLUMNS}""", url, types, vendor_id, secret)

        row = await retrying(op)
        if row is None:
            raise errors.ValidationError("vendor_id", "names no vendor")
        body = _public(row)
        return {"id": body["id"], "url": body["url"], "events": body["events"],
                "vendor_id": body["vendor_id"], "secret": secret,
                "created_at": body["created_at"]}

    async def endpoints(self) -> list[dict[str, Any]]:
        rows = await retrying(lambda: self.pool.fetch(
            f"SELECT {PUBLIC_COLUMNS} FROM rt_webhooks ORDER BY created_at, id"))
        return [_public(r) for r in rows]

    async def delete(self, webhook_id: str, who: tuple[str, str]) -> None:
        async def op() -> Any:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(SET_WHO, *who)
                return await conn.fetchval(
                    "DELETE FROM rt_webhooks WHERE id = $1 RETURNING id", webhook_id)

        if await retrying(op) is None:
            raise errors.WebhookNotFound()

    async def deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        async def op() -> tuple[bool, list[Any]]:
            async with self.pool.acquire() as conn:
                found = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM rt_webhooks WHERE id = $1)",
                                            webhook_id)
                rows = await conn.fetch(
                    """SELECT event_id, type, status, attempts, last_status_code, next_attempt_at
                       FROM rt_webhook_deliveries WHERE webhook_id = $1
                       ORDER BY event_pos DESC LIMIT $2""", webhook_id, DELIVERIES_SHOWN)
                return found, rows

        found, rows = await retrying(op)
        if not found:
            raise errors.WebhookNotFound()
        return [{**dict(r), "next_attempt_at": _ts(r["next_attempt_at"])} for r in rows]

    # -- the dispatcher ---------------------------------------------------------------------

    async def active_count(self) -> int:
        return int(await self.pool.fetchval(
            "SELECT count(*) FROM rt_webhooks WHERE status = 'active'"))

    async def due(self, limit: int) -> list[str]:
        """Endpoints that may have something to deliver now and that nobody holds."""
        rows = await self.pool.fetch(
            """SELECT w.id::text FROM rt_webhooks w, rt_sequencer q
               WHERE q.id = 1 AND w.status = 'active' AND w.cursor < q.last_pos
                 AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= now())
                 AND (w.lease_until IS NULL OR w.lease_until < now())
               ORDER BY w.next_attempt_at NULLS FIRST LIMIT $1""", limit)
        return [r[0] for r in rows]

    async def claim(self, webhook_id: str, owner: str, seconds: float) -> Any:
        """Take (or renew) the endpoint's lease; its row, or None if another process holds it."""
        return await self.pool.fetchrow(
            """UPDATE rt_webhooks SET lease_owner = $2,
                      lease_until = now() + make_interval(secs => $3)
               WHERE id = $1 AND status = 'active'
                 AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $2)
               RETURNING id::text, url, events, vendor_id::text, secret, cursor, attempts,
                         failing_since""", webhook_id, owner, seconds)

    async def release(self, webhook_id: str, owner: str) -> None:
        await self.pool.execute(
            """UPDATE rt_webhooks SET lease_owner = NULL, lease_until = NULL
               WHERE id = $1 AND lease_owner = $2""", webhook_id, owner)

    async def batch(self, cursor: int, vendor_id: str | None, types: list[str],
                    limit: int) -> tuple[list[Any], int, int, str]:
        """(the endpoint's events after `cursor`, the log's last and pruned positions, epoch):
        one statement, so every event up to that last position is among the rows or not
        one of the endpoint's."""
        kinds = [KINDS_OF[t] for t in types if t in KINDS_OF]
        rows = await self.pool.fetch(
            f"""SELECT q.last_pos AS q_last, q.pruned_pos AS q_pruned, q.epoch AS q_epoch, x.*
                FROM rt_sequencer q LEFT JOIN LATERAL (
                    {EVENT_SQL}
                    WHERE e.pos > $1 AND e.pos <= q.last_pos
                      AND ($2::uuid IS NULL OR e.vendor_id = $2::uuid)
                      AND e.kind = ANY($3::text[])
                    ORDER BY e.pos LIMIT $4) x ON true
                WHERE q.id = 1""", cursor, vendor_id, kinds, limit)
        head = rows[0]
        events = [r for r in rows if r["pos"] is not None]
        return events, head["q_last"], head["q_pruned"], head["q_epoch"]

    async def delivered(self, webhook_id: str, owner: str, cursor: int,
                        done: list[tuple[int, str, str, int]]) -> bool:
        """Record delivered events and move the cursor; False if the lease was lost."""
        async with self.pool.acquire() as conn, conn.transaction():
            moved = await conn.fetchval(
                """UPDATE rt_webhooks SET cursor = greatest(cursor, $3), attempts = 0,
                          failing_since = NULL, next_attempt_at = NULL
                   WHERE id = $1 AND lease_owner = $2 RETURNING id""", webhook_id, owner, cursor)
            if moved is None:
                return False
            if done:
                await conn.executemany(
                    """INSERT INTO rt_webhook_deliveries (webhook_id, event_pos, event_id, type,
                                                         status, attempts, last_status_code)
                       VALUES ($1, $2, $3, $4, 'delivered', 1, $5)
                       ON CONFLICT (webhook_id, event_pos) DO UPDATE
                       SET status = 'delivered', attempts = rt_webhook_deliveries.attempts + 1,
                           last_status_code = EXCLUDED.last_status_code,
                           next_attempt_at = NULL, updated_at = now()""",
                    [(webhook_id, *row) for row in done])
        return True

    async def failed(self, webhook_id: str, owner: str, pos: int, event_id: str, type_: str,
                     status_code: int | None, retry_in: float | None, reason: str | None) -> None:
        """Record a failed attempt at the head event: retry later, or (reason) disable."""
        async with self.pool.acquire() as conn, conn.transaction():
            attempts = await conn.fetchval(
                """UPDATE rt_webhooks SET attempts = attempts + 1,
                          failing_since = coalesce(failing_since, now()),
                          last_status_code = $3,
                          next_attempt_at = CASE WHEN $4::float8 IS NULL THEN NULL
                                                 ELSE now() + make_interval(secs => $4) END,
                          status = CASE WHEN $5::text IS NULL THEN status ELSE 'disabled' END,
                          disabled_reason = coalesce($5, disabled_reason)
                   WHERE id = $1 AND lease_owner = $2 RETURNING attempts""",
                webhook_id, owner, status_code, retry_in, reason)
            if attempts is None:
                return
            await conn.execute(
                """INSERT INTO rt_webhook_deliveries (webhook_id, event_pos, event_id, type,
                       status, attempts, last_status_code, next_attempt_at)
                   SELECT $1, $2, $3, $4, CASE WHEN $7::text IS NULL THEN 'retrying' ELSE 'failed' END,
                          $5, $6, w.next_attempt_at FROM rt_webhooks w WHERE w.id = $1
                   ON CONFLICT (webhook_id, event_pos) DO UPDATE
                   SET status = EXCLUDED.status, attempts = EXCLUDED.attempts,
                       last_status_code = EXCLUDED.last_status_code,
                       next_attempt_at = EXCLUDED.next_attempt_at, updated_at = now()""",
                webhook_id, pos, event_id, type_, attempts, status_code, reason)

    async def disable(self, webhook_id: str, owner: str, reason: str) -> None:
        await self.pool.execute(
            """UPDATE rt_webhooks SET status = 'disabled', disabled_reason = $3,
                      next_attempt_at = NULL
               WHERE id = $1 AND lease_owner = $2""", webhook_id, owner, reason)

    async def skip_to(self, webhook_id: str, owner: str, cursor: int) -> None:
        """Nothing of this endpoint's up to `cursor`: move past it without a delivery."""
        await self.pool.execute(
            "UPDATE rt_webhooks SET cursor = greatest(cursor, $3) WHERE id = $1 AND lease_owner = $2",
            webhook_id, owner, cursor)

    async def prune_deliveries(self) -> int:
        return int(await self.pool.fetchval(
            """WITH ranked AS (
                   SELECT webhook_id, event_pos, row_number() OVER (
                       PARTITION BY webhook_id ORDER BY event_pos DESC) AS n
                   FROM rt_webhook_deliveries)
               DELETE FROM rt_webhook_deliveries d USING ranked r
               WHERE d.webhook_id = r.webhook_id AND d.event_pos = r.event_pos AND r.n > $1
               RETURNING 1""", DELIVERIES_KEPT) or 0)


__all__ = ["TYPES", "WebhookStore"]
