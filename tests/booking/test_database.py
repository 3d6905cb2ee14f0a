"""Invariants held by the database itself, migrations, the sequencer and `realtime check`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import asyncpg
import pytest

from realtime.db.migrate import available, migrate
from tests.support.databases import create_database, drop_database


async def _service_with_slots(conn: asyncpg.Connection, exclusive: bool, spans: list[tuple[str, str, int]]):
    vendor = await conn.fetchval("INSERT INTO rt_vendors (name) VALUES ('v') RETURNING id")
    service = await conn.fetchval(
        "INSERT INTO rt_services (vendor_id, name, exclusive) VALUES ($1, 's', $2) RETURNING id",
        vendor, exclusive)
    body = [{"starts_at": a, "ends_at": b, "capacity": c} for a, b, c in spans]
    result = json.loads(await conn.fetchval("SELECT rt_create_slots($1, $2::jsonb)", service,
                                            json.dumps(body)))
    return service, [s["id"] for s in result["slots"]]


async def test_raw_sql_cannot_overlap_exclusive_bookings(any_database_url):
    """Raw INSERTs that bypass the functions still cannot overlap on an exclusive service."""
    conn = await asyncpg.connect(any_database_url)
    try:
        _, (day, three_days) = await _service_with_slots(conn, True, [
            ("2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z", 1),
            ("2030-01-01T00:00:00Z", "2030-01-04T00:00:00Z", 1)])
        insert = """INSERT INTO rt_reservations (kind, slot_id, service_key, exclusive, starts_at,
                        ends_at, quantity, status)
                    SELECT 'booking', id, service_key, exclusive, starts_at, ends_at, 1, 'confirmed'
                    FROM rt_slots WHERE id = $1"""
        await conn.execute(insert, day)
        with pytest.raises(asyncpg.exceptions.ExclusionViolationError):
            await conn.execute(insert, three_days)
        # Lying about the slot's times or service to dodge the constraint is refused too.
        with pytest.raises(asyncpg.exceptions.ForeignKeyViolationError):
            await conn.execute(
                """INSERT INTO rt_reservations (kind, slot_id, service_key, exclusive, starts_at,
                       ends_at, quantity, status)
                   SELECT 'booking', id, service_key, false, starts_at, ends_at, 1, 'confirmed'
                   FROM rt_slots WHERE id = $1""", three_days)
    finally:
        await conn.close()


async def test_concurrent_raw_inserts_cannot_overlap(any_database_url):
    """100 concurrent raw INSERT transactions on overlapping periods: at most one commits."""
    setup = await asyncpg.connect(any_database_url)
    try:
        _, slots = await _service_with_slots(setup, True, [
            (f"2030-02-0{d}T00:00:00Z", f"2030-02-0{d + 2}T00:00:00Z", 1) for d in range(1, 4)])
    finally:
        await setup.close()
    # Deadlocks are expected here (~1% with exclusion constraints, docs/design-notes.md); detect them fast.
    pool = await asyncpg.create_pool(any_database_url, min_size=10, max_size=10,
                                     server_settings={"deadlock_timeout": "20ms"})
    outcomes: list[str] = []

    async def insert(i: int) -> None:
        try:
            await pool.execute(
                """INSERT INTO rt_reservations (kind, slot_id, service_key, exclusive, starts_at,
                       ends_at, quantity, status)
                   SELECT 'booking', id, service_key, exclusive, starts_at, ends_at, 1, 'confirmed'
                   FROM rt_slots WHERE id = $1""", slots[i % 3])
            outcomes.append("ok")
        except (asyncpg.exceptions.ExclusionViolationError,
                asyncpg.exceptions.DeadlockDetectedError):
            outcomes.append("refused")

    try:
        await asyncio.gather(*[insert(i) for i in range(100)])
        live = await pool.fetchval("SELECT count(*) FROM rt_reservations WHERE status = 'confirmed'")
    finally:
        await pool.close()
    # Slots 1 and 3 overlap slot 2 but not each other: at most two can coexist.
    assert live == outcomes.count("ok") and 1 <= live <= 2


async def test_check_constraints_refuse_overbooking_by_raw_sql(any_database_url):
    """UPDATE rt_slots SET booked beyond capacity fails: the CHECK holds, not only the code."""
    conn = await asyncpg.connect(any_database_url)
    try:
        _, (slot,) = await _service_with_slots(conn, False, [
            ("2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z", 2)])
        with pytest.raises(asyncpg.exceptions.CheckViolationError):
            await conn.execute("UPDATE rt_slots SET booked = 2, held = 1 WHERE id = $1", slot)
        with pytest.raises(asyncpg.exceptions.CheckViolationError):
            await conn.execute("UPDATE rt_slots SET held = -1 WHERE id = $1", slot)
    finally:
        await conn.close()


async def test_sequencer_numbers_events_in_commit_order(any_database_url):
    """An event inserted first but committed last gets a later position; none is skipped."""
    a = await asyncpg.connect(any_database_url)
    b = await asyncpg.connect(any_database_url)
    try:
        _, (s1, s2) = await _service_with_slots(a, False, [
            ("2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z", 5),
            ("2030-01-01T02:00:00Z", "2030-01-01T03:00:00Z", 5)])
        await a.fetchval("SELECT rt_sequence_events(1000)")
        before = await a.fetchval("SELECT last_pos FROM rt_sequencer")
        late = a.transaction()
        await late.start()
        await a.fetchval("SELECT rt_book($1, 1, 'late', NULL, NULL, '', NULL, NULL)", s1)
        late_id = await a.fetchval("SELECT max(id) FROM rt_events")
        await b.fetchval("SELECT rt_book($1, 1, 'early', NULL, NULL, '', NULL, NULL)", s2)
        assert await b.fetchval("SELECT rt_sequence_events(1000)") == 1
        await late.commit()
        assert await b.fetchval("SELECT rt_sequence_events(1000)") == 1
        rows = await b.fetch("SELECT id, pos FROM rt_events WHERE pos > $1 ORDER BY pos", before)
    finally:
        await a.close()
        await b.close()
    assert [r["pos"] for r in rows] == [before + 1, before + 2]
    assert rows[1]["id"] == late_id and rows[0]["id"] > late_id


async def test_doorbell_rings_once_per_drain_not_per_booking(any_database_url):
    """100 bookings between two drains produce one NOTIFY, not 100."""
    listener = await asyncpg.connect(any_database_url)
    conn = await asyncpg.connect(any_database_url)
    rings: list[str] = []
    try:
        _, (slot,) = await _service_with_slots(conn, False, [
            ("2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z", 1000)])
        await conn.fetchval("SELECT rt_sequence_events(1000)")
        await listener.add_listener("rt_doorbell", lambda *args: rings.append(args[3]))
        for _ in range(100):
            await conn.fetchval("SELECT rt_book($1, 1, NULL, NULL, NULL, '', NULL, NULL)", slot)
        await asyncio.sleep(0.3)
        assert len(rings) == 1
        assert await conn.fetchval("SELECT rt_sequence_events(1000)") == 100
        await conn.fetchval("SELECT rt_book($1, 1, NULL, NULL, NULL, '', NULL, NULL)", slot)
        await asyncio.sleep(0.3)
    finally:
        await listener.close()
        await conn.close()
    assert len(rings) == 2


async def test_migrations_go_down_and_up_on_a_populated_database(backend_admin_dsn):
    """Up, populate, down to 0001 (the functions and what follows), up, down all, up again:
    each step leaves a working schema and keeps the data."""
    dsn = await create_database(backend_admin_dsn)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            _, (slot,) = await _service_with_slots(conn, False, [
                ("2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z", 3)])
            await conn.fetchval("SELECT rt_book($1, 1, NULL, NULL, NULL, '', NULL, NULL)", slot)
        finally:
            await conn.close()
        later = [f"{m.version:04d}_{m.name}" for m in available() if m.version >= 2]
        assert await migrate(dsn, down=len(later), echo=lambda _: None) == [
            f"down {name}" for name in reversed(later)]
        assert await migrate(dsn, echo=lambda _: None) == [f"up {name}" for name in later]
        assert await migrate(dsn, echo=lambda _: None) == []
        conn = await asyncpg.connect(dsn)
        try:
            result = json.loads(await conn.fetchval(
                "SELECT rt_book($1, 1, NULL, NULL, NULL, '', NULL, NULL)", slot))
            assert result["slot"]["booked"] == 2  # data survived the round trip
        finally:
            await conn.close()
        assert len(await migrate(dsn, down=99, echo=lambda _: None)) == len(available())
        assert len(await migrate(dsn, echo=lambda _: None)) == len(available())
    finally:
        await drop_database(backend_admin_dsn, dsn)


async def test_concurrent_migrate_processes_apply_once(backend_admin_dsn):
    """Four `realtime migrate` processes at once: one applies, all succeed."""
    dsn = await create_database(backend_admin_dsn, migrated=False)
    try:
        env = {**os.environ, "DATABASE_URL": dsn}
        procs = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "realtime", "migrate", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT) for _ in range(4)]
        outputs = [(await p.communicate())[0].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
        assert sum("applying 0001_schema" in o for o in outputs) == 1
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM rt_schema_migrations") == len(available())
        finally:
            await conn.close()
    finally:
        await drop_database(backend_admin_dsn, dsn)


def _check(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "realtime", "check"], capture_output=True,
                          text=True, env={**os.environ, "DATABASE_URL": dsn}, timeout=60)


async def test_check_passes_then_catches_a_corrupted_row(any_database_url):
    """`realtime check` exits 0 on a healthy database and 1 naming a corrupted slot."""
    conn = await asyncpg.connect(any_database_url)
    try:
        _, (slot, other) = await _service_with_slots(conn, False, [
            ("2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z", 3),
            ("2030-01-01T01:00:00Z", "2030-01-01T02:00:00Z", 3)])
        for s in (slot, other):
            await conn.fetchval("SELECT rt_book($1, 1, NULL, NULL, NULL, '', NULL, NULL)", s)
        await conn.fetchval("SELECT rt_hold($1, 1, NULL, 60)", other)
        await conn.fetchval("SELECT rt_sequence_events(1000)")
        healthy = await asyncio.to_thread(_check, any_database_url)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert "all invariants hold" in healthy.stdout
        # A booking row changed behind the functions' back: the counter no longer matches.
        await conn.execute("UPDATE rt_reservations SET status = 'cancelled' WHERE slot_id = $1",
                           slot)
    finally:
        await conn.close()
    broken = await asyncio.to_thread(_check, any_database_url)
    assert broken.returncode == 1
    assert "booked-count" in broken.stdout and str(slot) in broken.stdout
    assert "FAIL" in broken.stdout


async def test_check_catches_a_missing_event(any_database_url):
    """Deleting an event row (a change without its event) fails the events check."""
    conn = await asyncpg.connect(any_database_url)
    try:
        _, (slot,) = await _service_with_slots(conn, False, [
            ("2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z", 3)])
        await conn.fetchval("SELECT rt_book($1, 1, NULL, NULL, NULL, '', NULL, NULL)", slot)
        await conn.execute("DELETE FROM rt_events WHERE slot_id = $1 AND version = 2", slot)
    finally:
        await conn.close()
    result = await asyncio.to_thread(_check, any_database_url)
    assert result.returncode == 1 and "events" in result.stdout
