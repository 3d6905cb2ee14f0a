"""Scratch databases on a loopback PostgreSQL, and what PostgreSQL counts for one."""

from __future__ import annotations

import datetime as dt
import json
import os

import asyncpg

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_dsn() -> str:
    """A PostgreSQL where scratch databases may be created: $BENCH_ADMIN_DSN or the default."""
    return os.environ.get("BENCH_ADMIN_DSN", DEFAULT_ADMIN_DSN)


async def admin_execute(admin: str, *statements: str) -> None:
    """Statements that cannot run inside a transaction (CREATE / DROP DATABASE), in order."""
    conn = await asyncpg.connect(admin)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(admin: str, name: str, template: str | None = None) -> None:
    suffix = f' TEMPLATE "{template}"' if template else ""
    await admin_execute(admin, f'CREATE DATABASE "{name}"{suffix}')


async def drop_databases(admin: str, *names: str) -> None:
    """Drops them even with sessions still connected (a server that did not stop)."""
    await admin_execute(admin, *(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names))


async def transactions(admin: str, name: str) -> int:
    """Transactions committed or rolled back in a database so far."""
    conn = await asyncpg.connect(admin)
    try:
        return int(await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def backends(admin: str, name: str) -> set[int]:
    """The pids of the backends serving a database now."""
    conn = await asyncpg.connect(admin)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name)
        return {r[0] for r in rows}
    finally:
        await conn.close()


async def seed_slots(dsn: str, count: int, capacity: int) -> list[str]:
    """One vendor, one service and `count` consecutive hourly slots of `capacity` from
    2030-01-01 in a migrated database; the slots' ids in time order."""
    conn = await asyncpg.connect(dsn)
    try:
        vendor = await conn.fetchval(
            "INSERT INTO rt_vendors (name) VALUES ('bench vendor') RETURNING id")
        service = await conn.fetchval(
            "INSERT INTO rt_services (vendor_id, name) VALUES ($1, 'bench service') "
            "RETURNING id", vendor)
        start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        hour = dt.timedelta(hours=1)

        def slot(i: int) -> dict[str, object]:
            return {"starts_at": (start + i * hour).isoformat(),
                    "ends_at": (start + (i + 1) * hour).isoformat(), "capacity": capacity}

        for first in range(0, count, 2_000):
            batch = [slot(i) for i in range(first, min(first + 2_000, count))]
            out = json.loads(await conn.fetchval(
                "SELECT rt_create_slots($1, $2::jsonb)", service, json.dumps(batch)))
            assert out["outcome"] == "created", out
        rows = await conn.fetch(
            "SELECT id::text FROM rt_slots WHERE service_id = $1 ORDER BY starts_at", service)
        return [r[0] for r in rows]
    finally:
        await conn.close()
