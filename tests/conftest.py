"""Shared fixtures: real PostgreSQL databases (machine's and embedded) and a real server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.databases import (
    Embedded,
    create_database,
    drop_database,
    reachable,
    system_dsn,
)
from tests.support.server import ServerProcess

IN_CI = os.environ.get("CI") == "true"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", choices=["system", "embedded", "both"], default=None,
                     help="PostgreSQL for database tests (default: both for tests/booking, "
                          "system elsewhere; embedded when no system server answers)")


@pytest.fixture(scope="session")
def embedded() -> Iterator[Embedded]:
    server = Embedded()
    yield server
    server.stop()
    # Nothing of it may stay in the temporary directory, session after session.
    assert server.directory is None or not server.directory.exists(), server.directory


@pytest.fixture(scope="session")
def system_admin_dsn() -> str | None:
    dsn = system_dsn()
    if asyncio.run(reachable(dsn)):
        return dsn
    if IN_CI:
        pytest.fail(f"CI: the machine's PostgreSQL at {dsn} does not answer")
    return None


@pytest.fixture(scope="session")
def admin_dsn(request: pytest.FixtureRequest, system_admin_dsn: str | None,
              embedded: Embedded) -> str:
    """The server for tests that need one PostgreSQL (system, else embedded)."""
    if request.config.getoption("--db") == "embedded" or system_admin_dsn is None:
        return embedded.dsn()
    return system_admin_dsn


@pytest_asyncio.fixture(loop_scope="session")
async def database_url(admin_dsn: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    dsn = await create_database(admin_dsn)
    yield dsn
    await drop_database(admin_dsn, dsn)


def _backends(config: pytest.Config) -> list[str]:
    choice = config.getoption("--db")
    if choice in ("system", "embedded"):
        return [choice]
    return ["system", "embedded"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"any_database_url", "backend_admin_dsn"} & set(metafunc.fixturenames):
        metafunc.parametrize("backend", _backends(metafunc.config), scope="session")


@pytest.fixture(scope="session")
def backend_admin_dsn(backend: str, system_admin_dsn: str | None, embedded: Embedded) -> str:
    if backend == "embedded":
        return embedded.dsn()
    if system_admin_dsn is None:
        pytest.skip("no PostgreSQL answers on the machine; the embedded run covers this test")
    return system_admin_dsn


@pytest_asyncio.fixture(loop_scope="session")
async def any_database_url(backend_admin_dsn: str) -> AsyncIterator[str]:
    """A fresh, migrated database on each backend in turn (PostgreSQL 15 and embedded 18)."""
    dsn = await create_database(backend_admin_dsn)
    yield dsn
    await drop_database(backend_admin_dsn, dsn)


@pytest.fixture
def server(database_url: str, tmp_path) -> Iterator[ServerProcess]:
    """`realtime serve` on a free port against a fresh database."""
    proc = ServerProcess(database_url, log_dir=tmp_path).start()
    yield proc
    proc.stop()


@pytest.fixture
def any_server(any_database_url: str, tmp_path) -> Iterator[ServerProcess]:
    """`realtime serve` against a fresh database on each backend in turn."""
    proc = ServerProcess(any_database_url, log_dir=tmp_path).start()
    yield proc
    proc.stop()


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def _fail_on_loop_errors() -> AsyncIterator[None]:
    """Any exception the event loop reports during a test fails that test."""
    loop = asyncio.get_running_loop()
    seen: list[dict] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
    yield
    loop.set_exception_handler(previous)
    if seen:
        pytest.fail(f"unhandled event-loop exceptions: {[c.get('message') for c in seen]}")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A REALTIME_DATA_DIR outside pytest's temporary tree: the embedded PostgreSQL runs as
    another user, which needs a path it may traverse, and a pytest session starting meanwhile
    (another checkout's, on a shared machine) takes that right away from pytest's tree."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="rt-data-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory) -> Iterator[str]:
    """A Redis: the machine's on 127.0.0.1:6379, else one started here; skipped (failed in
    CI) when neither is possible."""
    import shutil

    from tests.support.server import free_port, start_redis
    from tests.support.server import redis_answers as answers

    if answers(6379):
        yield "redis://127.0.0.1:6379"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if IN_CI:
            pytest.fail("CI: no Redis on 127.0.0.1:6379 and no redis-server to start")
        pytest.skip("no Redis on 127.0.0.1:6379 and redis-server is not installed")
    port = free_port()
    proc = start_redis(binary, port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """A Redis database of its own (flushed) for one test."""
    import random

    import redis

    url = f"{redis_server_url}/{random.randint(1, 15)}"
    redis.Redis.from_url(url).flushdb()
    return url
