"""Fixtures of the read-replica tests: a primary and a hot standby of the tests' own, a fresh
database on it per test (the standby gets it by replication), and checks of what clients saw.

Without the PostgreSQL server binaries the tests are skipped with the reason, except under
CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from tests.channels.conftest import Client
from tests.replicas.cluster import Pair, missing
from tests.support.databases import create_database, drop_database, with_database

IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def pair() -> Iterator[Pair]:
    """One primary and its streaming standby for the session, removed at the end."""
    reason = missing()
    if reason:
        if IN_CI:
            pytest.fail(f"CI: the replica tests cannot run: {reason}")
        pytest.skip(reason)
    made = Pair()
    try:
        yield made.start()
    finally:
        made.close()


@dataclass
class Replicated:
    primary: str  # a fresh, migrated database on the primary
    standby: str  # the same database, on the standby
    pair: Pair


async def position(dsn: str) -> int:
    """`rt_sequencer.last_pos` where `dsn` points: the log position that copy stands at."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return int(await conn.fetchval("SELECT last_pos FROM rt_sequencer WHERE id = 1"))
    finally:
        await conn.close()


async def _lsn(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return int(await conn.fetchval(f"SELECT ({sql}) - '0/0'::pg_lsn"))
    finally:
        await conn.close()


async def caught_up(db: Replicated, within: float = 30) -> int:
    """Until the standby has replayed all the WAL the primary has written (not only the log
    positions: a transaction half replayed holds its locks on the standby); the position."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        want = await position(db.primary)
        wal = await _lsn(db.primary, "pg_current_wal_lsn()")
        try:
            if (await _lsn(db.standby, "pg_last_wal_replay_lsn()") >= wal
                    and await position(db.standby) >= want):
                return want
        except (OSError, asyncpg.PostgresError):
            pass  # the database (or its migration) is not replayed yet
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the standby did not reach position {want}")
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture(loop_scope="session")
async def replicated(pair: Pair) -> AsyncIterator[Replicated]:
    """A fresh database on the primary, replayed on the standby; dropped after the test, and
    the standby left running and replaying whatever the test did to it."""
    await pair.heal()
    admin = pair.primary.dsn()
    dsn = await create_database(admin)
    db = Replicated(dsn, with_database(pair.standby.dsn(), dsn.rsplit("/", 1)[1]), pair)
    try:
        await caught_up(db)
        yield db
    finally:
        await pair.heal()
        await drop_database(admin, dsn)


def cursor_pos(cursor: str) -> int:
    return int(cursor.split("@")[0])


class Timeline:
    """Every log position a client was handed, per channel, in the order it got them: the
    `subscribed` cursor (after the positions of the events it carried), each update's cursor.
    One client's positions on one channel must only go up: a lower one is an older state."""

    def __init__(self, client: Client) -> None:
        self.positions: dict[str, list[int]] = defaultdict(list)
        self.cursors: dict[str, list[str]] = defaultdict(list)
        self.versions: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        client.listeners.append(self.take)

    def take(self, msg: dict[str, Any]) -> None:
        channel = msg.get("channel", "")
        if msg["type"] == "subscribed":
            for event in msg.get("events", ()):
                self.take(event)
            for slot in msg.get("snapshot", {}).get("slots", ()):
                self.versions[channel][slot["id"]].append(slot["version"])
            self._cursor(channel, msg["cursor"])
        elif msg["type"] == "availability:updated":
            self.versions[channel][msg["slot"]["id"]].append(msg["slot"]["version"])
            self._cursor(channel, msg["cursor"])

    def _cursor(self, channel: str, cursor: str) -> None:
        self.cursors[channel].append(cursor)
        self.positions[channel].append(cursor_pos(cursor))

    def last(self, channel: str) -> int:
        return self.positions[channel][-1]

    def last_cursor(self, channel: str) -> str:
        """The last cursor sent on the channel, as sent (for a resume)."""
        return self.cursors[channel][-1]

    def assert_forward(self, channel: str) -> None:
        """Never an older state: positions never go down (a page's last event and its
        `subscribed` cursor may be equal)."""
        seen = self.positions[channel]
        assert all(a <= b for a, b in itertools.pairwise(seen)), (channel, seen)

    def assert_complete(self, channel: str, final: dict[str, int]) -> None:
        """Each slot's versions go up by one from where the client started, to `final`."""
        got = self.versions[channel]
        for slot, last in final.items():
            seen = got[slot]
            assert seen, f"{channel}: nothing for slot {slot}"
            assert seen == list(range(seen[0], last + 1)), f"{channel} slot {slot}: {seen}"

    async def wait_for(self, channel: str, final: dict[str, int], within: float = 20) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            got = self.versions[channel]
            if all(got.get(s) and got[s][-1] >= v for s, v in final.items()):
                return
            await asyncio.sleep(0.02)
        have = {s: (self.versions[channel].get(s, [None])[-1], v) for s, v in final.items()}
        raise AssertionError(f"{channel}: not every final version arrived: {have}")
