"""Fixtures of the fault tests: a PostgreSQL cluster of the session's own that tests stop,
crash and start again, a fresh database on it per test, and the server as a real process.

Without the PostgreSQL server binaries (or redis-server, for the Redis test) the tests are
skipped with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.faults.processes import Cluster, missing
from tests.faults.workload import TOTALS
from tests.support.databases import create_database, drop_database

IN_CI = os.environ.get("CI") == "true"


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI: the fault tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL server of the tests' own, for the session; removed at the end."""
    reason = missing()
    if reason:
        unavailable(reason)
    made = Cluster()
    try:
        yield made.init()
    finally:
        made.close()


@pytest_asyncio.fixture(loop_scope="session")
async def fault_db(cluster: Cluster) -> AsyncIterator[str]:
    """A fresh, migrated database on the cluster; the cluster running before and after."""
    if not cluster.running():
        await asyncio.to_thread(cluster.start)
    dsn = await create_database(cluster.dsn())
    yield dsn
    if not cluster.running():
        await asyncio.to_thread(cluster.start)
    await drop_database(cluster.dsn(), dsn)


def realtime_check(dsn: str) -> subprocess.CompletedProcess[str]:
    """`realtime check` run as an operator would, against `dsn`."""
    return subprocess.run([sys.executable, "-m", "realtime", "check"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "DATABASE_URL": dsn})



def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TOTALS["runs"]:
        terminalreporter.write_line(
            f"fault runs: {TOTALS['runs']}, {TOTALS['operations']} client operations and "
            f"{TOTALS['frames']} subscriber frames checked")
