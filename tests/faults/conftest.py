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
from pathlib import Path
from typing import Any

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



# The operations the fault runs of one session must check between them, when the whole suite
# runs in CI (docs/reliability.md, "How many operations").
SESSION_TARGET = 20_000
SUITE = Path(__file__).parent
# The suite's workload tests as this session selected them, and whether any was left out.
SELECTED: dict[str, Any] = {"modules": set(), "deselected": False}


def _workload_test(item: pytest.Item) -> bool:
    return item.path.parent == SUITE and item.get_closest_marker("faults") is not None


def _suite_modules() -> set[str]:
    """The suite's modules that run workloads (those marked `faults`)."""
    return {p.name for p in SUITE.glob("test_*.py") if "pytest.mark.faults" in p.read_text()}


def pytest_collection_finish(session: pytest.Session) -> None:
    SELECTED["modules"] = {item.path.name for item in session.items if _workload_test(item)}


def pytest_deselected(items: list[pytest.Item]) -> None:
    if any(_workload_test(item) for item in items):
        SELECTED["deselected"] = True


def whole_suite_ran() -> bool:
    """Every workload test of tests/faults was selected (no -k, -m or file subset)."""
    return not SELECTED["deselected"] and SELECTED["modules"] == _suite_modules()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if IN_CI and whole_suite_ran() and TOTALS["operations"] < SESSION_TARGET:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TOTALS["runs"]:
        return
    terminalreporter.write_line(
        f"fault runs: {TOTALS['runs']}, {TOTALS['operations']} client operations and "
        f"{TOTALS['frames']} subscriber frames checked")
    if IN_CI and whole_suite_ran() and TOTALS["operations"] < SESSION_TARGET:
        terminalreporter.write_line(
            f"FAILED: the fault runs checked {TOTALS['operations']} operations, fewer than "
            f"the {SESSION_TARGET} required of a whole run of tests/faults", red=True)
