"""Numbered SQL migrations, applied under an advisory lock and recorded in a version table.

Files live beside this module as `NNNN_name.up.sql` / `NNNN_name.down.sql`. Each runs in its
own transaction with its version row, so a failure leaves the previous version intact; the
advisory lock lets several processes run `realtime migrate` at once safely.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger("realtime.migrate")
LOCK_KEY = (7262454, 0)
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.up\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: str
    down: str


def available() -> list[Migration]:
    folder = resources.files("realtime.db") / "migrations"
    found = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if not m:
            continue
        down = folder / entry.name.replace(".up.sql", ".down.sql")
        found.append(Migration(int(m[1]), m[2], entry.read_text(), down.read_text()))
    return sorted(found, key=lambda mig: mig.version)


async def _prepare(conn: asyncpg.Connection) -> set[int]:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS rt_schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    return {r[0] for r in await conn.fetch("SELECT version FROM rt_schema_migrations")}


async def migrate(dsn: str, down: int = 0, echo=print) -> list[str]:
    """Applies pending migrations (or rolls back the last `down`); returns what it did."""
    done: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET client_min_messages = warning")
        await conn.execute("SELECT pg_advisory_lock($1, $2)", *LOCK_KEY)
        try:
            applied = await _prepare(conn)
            migrations = available()
            if down:
                todo = [m for m in reversed(migrations) if m.version in applied][:down]
                for i, m in enumerate(todo, 1):
                    echo(f"[{i}/{len(todo)}] rolling back {m.version:04d}_{m.name}")
                    async with conn.transaction():
                        await conn.execute(m.down)
                        await conn.execute(
                            "DELETE FROM rt_schema_migrations WHERE version = $1", m.version)
                    done.append(f"down {m.version:04d}_{m.name}")
            else:
                todo = [m for m in migrations if m.version not in applied]
                for i, m in enumerate(todo, 1):
                    echo(f"[{i}/{len(todo)}] applying {m.version:04d}_{m.name}")
                    async with conn.transaction():
                        await conn.execute(m.up)
                        await conn.execute(
                            "INSERT INTO rt_schema_migrations (version, name) VALUES ($1, $2)",
                            m.version, m.name)
                    done.append(f"up {m.version:04d}_{m.name}")
            if not todo:
                echo("nothing to do: the database is " + (
                    "at version 0" if down else f"at version {max(applied | {0})}"))
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1, $2)", *LOCK_KEY)
    finally:
        await conn.close()
    return done


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('rt_schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM rt_schema_migrations"))
