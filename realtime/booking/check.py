"""`realtime check`: verifies the invariants in the database and prints a table.

Each check is one query returning the offending rows, so a violation names its slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class Check:
    name: str
    what: str
    sql: str


CHECKS = [
    Check("capacity", "0 <= booked, held and booked + held <= capacity",
          """SELECT id::text, format('capacity=%s booked=%s held=%s', capacity, booked, held)
             FROM rt_slots WHERE booked < 0 OR held < 0 OR booked + held > capacity"""),
    Check("booked-count", "slot.booked equals its confirmed bookings",
          """SELECT s.id::text, format('booked=%s rows=%s', s.booked, coalesce(r.n, 0))
             FROM rt_slots s LEFT JOIN (
                 SELECT slot_id, sum(quantity) AS n FROM rt_reservations
                 WHERE kind = 'booking' AND status = 'confirmed' GROUP BY slot_id) r
               ON r.slot_id = s.id
             WHERE s.booked <> coalesce(r.n, 0)"""),
    Check("held-count", "slot.held equals its active holds",
          """SELECT s.id::text, format('held=%s rows=%s', s.held, coalesce(r.n, 0))
             FROM rt_slots s LEFT JOIN (
                 SELECT slot_id, sum(quantity) AS n FROM rt_reservations
                 WHERE kind = 'hold' AND status = 'active' GROUP BY slot_id) r
               ON r.slot_id = s.id
             WHERE s.held <> coalesce(r.n, 0)"""),
    Check("exclusive-overlap", "no two live reservations overlap on an exclusive service",
          """SELECT a.slot_id::text, format('%s %s overlaps %s %s', a.kind, a.id, b.kind, b.id)
             FROM rt_reservations a JOIN rt_reservations b
               ON a.service_key = b.service_key AND a.id < b.id
              AND tstzrange(a.starts_at, a.ends_at) && tstzrange(b.starts_at, b.ends_at)
              -- Pairs on exclusive services only (the copies `denormalized` checks): without
              -- this the join pairs every two reservations of a service, seconds on a few
              -- thousand rows.
              AND a.exclusive AND b.exclusive
             JOIN rt_services sv ON sv.key = a.service_key AND sv.exclusive
             WHERE ((a.kind = 'hold' AND a.status = 'active')
                    OR (a.kind = 'booking' AND a.status = 'confirmed'))
               AND ((b.kind = 'hold' AND b.status = 'active')
                    OR (b.kind = 'booking' AND b.status = 'confirmed'))"""),
    Check("denormalized", "reservations and slots agree with their slot and service",
          """SELECT r.id::text, 'reservation copy differs from its slot'
             FROM rt_reservations r JOIN rt_slots s ON s.id = r.slot_id
             WHERE (r.service_key, r.exclusive, r.starts_at, r.ends_at)
                   IS DISTINCT FROM (s.service_key, s.exclusive, s.starts_at, s.ends_at)
             UNION ALL
             SELECT s.id::text, 'slot copy differs from its service'
             FROM rt_slots s JOIN rt_services v ON v.id = s.service_id
             WHERE (s.service_key, s.exclusive, s.vendor_id)
                   IS DISTINCT FROM (v.key, v.exclusive, v.vendor_id)"""),
    Check("events", "every version of every slot has its event (older ones may be pruned)",
          """SELECT s.id::text,
                    format('version=%s events %s..%s (%s)', s.version, e.lo, e.hi, e.n)
             FROM rt_slots s
             LEFT JOIN (SELECT slot_id, min(version) lo, max(version) hi,
                               count(DISTINCT version) n
                        FROM rt_events WHERE kind <> 'conflict' GROUP BY slot_id) e
               ON e.slot_id = s.id
             CROSS JOIN rt_sequencer q
             WHERE (e.hi IS NULL AND q.pruned_pos = 0)
                OR e.hi <> s.version
                OR e.n <> e.hi - e.lo + 1
                OR (e.lo > 1 AND q.pruned_pos = 0)"""),
    Check("audit", "every version of every slot has its audit row",
          """SELECT s.id::text, format('version=%s audit rows=%s', s.version, coalesce(a.n, 0))
             FROM rt_slots s LEFT JOIN (
                 SELECT slot_id, count(*) n FROM rt_audit WHERE outcome = 'ok' GROUP BY slot_id) a
               ON a.slot_id = s.id
             WHERE s.version <> coalesce(a.n, 0)"""),
    # Every change of a hold or a booking (made, released, expired, cancelled; a confirmed
    # hold's change is its booking's 'confirm' row) has its audit row naming it.
    Check("audit-reservations", "every hold and booking has the audit rows of its changes",
          """SELECT r.id::text, format('%s %s: no %s audit row', r.kind, r.status, x.action)
             FROM rt_reservations r
             CROSS JOIN LATERAL (VALUES
                 (CASE WHEN r.kind = 'hold' THEN 'hold'
                       WHEN r.hold_id IS NULL THEN 'book' ELSE 'confirm' END),
                 (CASE r.status WHEN 'released' THEN 'release' WHEN 'expired' THEN 'expire'
                                WHEN 'cancelled' THEN 'cancel' END)) x(action)
             WHERE x.action IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM rt_audit a
                               WHERE a.reservation_id = r.id AND a.action = x.action
                                 AND a.outcome = 'ok')"""),
    # Rows older than migration 0004 predate the audit of vendors and services and the
    # actor and request id columns: they are not held against the database.
    Check("audit-admin", "every vendor and service since the audit trail has its audit row",
          """SELECT v.id::text, 'vendor without its create_vendor audit row'
             FROM rt_vendors v, rt_schema_migrations m
             WHERE m.version = 4 AND v.created_at >= m.applied_at
               AND NOT EXISTS (SELECT 1 FROM rt_audit a WHERE a.action = 'create_vendor'
                               AND a.detail->>'vendor_id' = v.id::text)
             UNION ALL
             SELECT v.id::text, 'service without its create_service audit row'
             FROM rt_services v, rt_schema_migrations m
             WHERE m.version = 4 AND v.created_at >= m.applied_at
               AND NOT EXISTS (SELECT 1 FROM rt_audit a WHERE a.action = 'create_service'
                               AND a.detail->>'service_id' = v.id::text)"""),
    # Endpoints older than migration 0006 predate the audit of webhook changes.
    Check("audit-webhooks", "every webhook endpoint since their audit has its audit row",
          """SELECT w.id::text, 'webhook endpoint without its create_webhook audit row'
             FROM rt_webhooks w, rt_schema_migrations m
             WHERE m.version = 6 AND w.created_at >= m.applied_at
               AND NOT EXISTS (SELECT 1 FROM rt_audit a WHERE a.action = 'create_webhook'
                               AND a.detail->>'webhook_id' = w.id::text)"""),
    Check("audit-attribution", "every audit row since the audit trail names its actor and request",
          """SELECT a.id::text, format('%s: actor=%s request_id=%s', a.action,
                                      coalesce(a.actor, 'NULL'), coalesce(a.request_id, 'NULL'))
             FROM rt_audit a, rt_schema_migrations m
             WHERE m.version = 4 AND a.at >= m.applied_at
               AND (a.actor IS NULL OR a.actor = '' OR a.request_id IS NULL
                    OR a.request_id = '')"""),
    Check("sequencer", "event positions are gap-free up to the last one handed out",
          """SELECT 'rt_events', format('last_pos=%s numbered=%s pruned_pos=%s',
                                       q.last_pos, e.n, q.pruned_pos)
             FROM rt_sequencer q,
                  (SELECT count(*) n, max(pos) m FROM rt_events WHERE pos IS NOT NULL) e
             WHERE e.n <> q.last_pos - q.pruned_pos OR coalesce(e.m, q.last_pos) <> q.last_pos"""),
]


async def run_checks(dsn: str) -> list[tuple[Check, list[tuple[str, str]]]]:
    conn = await asyncpg.connect(dsn)
    try:
        results = []
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            for check in CHECKS:
                rows = await conn.fetch(check.sql + " LIMIT 1000")
                results.append((check, [(r[0], r[1]) for r in rows]))
        return results
    finally:
        await conn.close()


def render(results: list[tuple[Check, list[tuple[str, str]]]]) -> str:
    width = max(len(c.name) for c, _ in results)
    lines = [f"{'check':<{width}}  {'result':<8}  what", f"{'-' * width}  --------  ----"]
    for check, rows in results:
        status = "ok" if not rows else f"FAIL {len(rows)}"
        lines.append(f"{check.name:<{width}}  {status:<8}  {check.what}")
        for subject, detail in rows[:20]:
            lines.append(f"{'':<{width}}  {'':<8}    {subject}: {detail}")
        if len(rows) > 20:
            lines.append(f"{'':<{width}}  {'':<8}    ... and {len(rows) - 20} more")
    failed = sum(1 for _, rows in results if rows)
    lines.append("")
    lines.append("all invariants hold" if not failed else f"{failed} check(s) failed")
    return "\n".join(lines)
