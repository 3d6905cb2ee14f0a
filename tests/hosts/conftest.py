"""Fixtures of the host network (tests/hosts/netns.py): built once per session, servers per test.

Needs root (network namespaces, iptables) and the programs scripts/install-hosts.sh installs.
Without them the tests are skipped with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio

from tests.hosts.clients import Fleet, SlotState, World, database_truth
from tests.hosts.netns import Network, sweep_stale
from tests.hosts.services import (
    LB_PORT,
    PG_BIN,
    HAProxy,
    Nginx,
    Postgres,
    Realtime,
    Redis,
    wait_for,
)

IN_CI = os.environ.get("CI") == "true"
PROGRAMS = ("ip", "iptables", "haproxy", "nginx", "redis-server", "setpriv")


def missing() -> str | None:
    """Why the host network cannot be built here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, iptables)"
    absent = [p for p in PROGRAMS if shutil.which(p) is None]
    if not (PG_BIN / "postgres").exists():
        absent.append(str(PG_BIN / "postgres"))
    if absent:
        return f"missing {', '.join(absent)} (bash scripts/install-hosts.sh installs them)"
    return None


@pytest.fixture(scope="session")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """The namespaces, bridge and veths (removed at the end even when a test failed)."""
    reason = missing()
    if reason:
        if IN_CI:
            pytest.fail(f"CI: the host tests cannot run: {reason}")
        pytest.skip(reason)
    # Two thousand client sockets, and the servers started from here inherit the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    sweep_stale()
    net = Network()
    try:
        net.up()
        yield net
    finally:
        net.close()


@pytest.fixture(scope="session")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hosts")


@pytest.fixture(scope="session")
def postgres(network: Network, logdir: Path) -> Iterator[Postgres]:
    pg = Postgres(network, logdir)
    try:
        yield pg.start()
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def redis_host(network: Network, logdir: Path) -> Iterator[Redis]:
    redis = Redis(network, logdir)
    try:
        yield redis.start()
    finally:
        redis.stop()


@pytest.fixture(scope="session")
def haproxy(network: Network, logdir: Path) -> Iterator[HAProxy]:
    lb = HAProxy(network, logdir)
    try:
        yield lb.start()
    finally:
        lb.stop()


@pytest.fixture(scope="session")
def nginx(network: Network, logdir: Path) -> Iterator[Nginx]:
    lb = Nginx(network, logdir)
    try:
        yield lb.start()
    finally:
        lb.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def database(postgres: Postgres) -> AsyncIterator[str]:
    """A fresh database on the db host for one test (the servers migrate it as they start)."""
    name = f"rt_hosts_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(postgres.dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield postgres.dsn(name)
    conn = await asyncpg.connect(postgres.dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class Cluster:
    """Two servers behind the balancers, sharing one database and one Redis."""

    network: Network
    app1: Realtime
    app2: Realtime
    haproxy: HAProxy
    database: str

    @property
    def servers(self) -> tuple[Realtime, Realtime]:
        return (self.app1, self.app2)

    def wait_in_rotation(self, timeout: float = 20) -> float:
        """Until HAProxy's health checks have both servers UP."""
        return wait_for("both servers UP in HAProxy",
                        lambda: set(self.haproxy.status().values()) == {"UP"}, timeout)


@pytest.fixture
def cluster(network: Network, database: str, redis_host: Redis, haproxy: HAProxy,
            logdir: Path) -> Iterator[Cluster]:
    """`realtime serve` on app1 and app2 (fresh database, flushed Redis), both in rotation."""
    import redis

    redis.Redis.from_url(redis_host.url).flushdb()
    env = {"DATABASE_URL": database, "REDIS_URL": redis_host.url}
    app1 = Realtime(network, "app1", env, logdir).start()
    app2 = Realtime(network, "app2", env, logdir).start()
    c = Cluster(network, app1, app2, haproxy, database)
    try:
        app1.wait_ready()
        app2.wait_ready()
        c.wait_in_rotation()
        yield c
    finally:
        for host in ("app1", "app2"):
            network.heal(host, "db")
        for app in (app1, app2):
            app.stop(timeout=12)
            print(f"--- {app.host} log (tail) ---\n{app.process.log(3000)}")


async def make_world(base_url: str, services: int, slots_per_service: int) -> World:
    """Creates the vendor, services and slots through `base_url` (a balancer)."""
    start = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    specs = [{"starts_at": (start + timedelta(hours=i)).isoformat().replace("+00:00", "Z"),
              "ends_at": (start + timedelta(hours=i + 1)).isoformat().replace("+00:00", "Z"),
              "capacity": 100_000} for i in range(slots_per_service)]
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        vendor = (await http.post("/api/vendors", json={"name": "hosts"})).json()
        slots: dict[str, list[str]] = {}
        for i in range(services):
            resp = await http.post(f"/api/vendors/{vendor['id']}/services", json={"name": f"s{i}"})
            service = resp.json()
            resp = await http.post(f"/api/services/{service['id']}/slots", json={"slots": specs})
            assert resp.status_code == 201, resp.text
            slots[f"service:{service['id']}"] = [s["id"] for s in resp.json()["slots"]]
    return World(vendor["id"], slots)


def lb_url(host: str) -> str:
    return f"http://{host}:{LB_PORT}"


async def settle(fleet: Fleet, dsn: str, world: World, within: float = 15) -> dict[str, dict[str, SlotState]]:
    """Waits until every client's view equals the database's; returns the database's view."""
    truth = await database_truth(dsn, world.vendor, world.channels)
    # A timeout here is not the verdict: the caller's asserts then name what differs.
    with contextlib.suppress(AssertionError):
        await fleet.wait("every client shows the database's state",
                         lambda: fleet.all_live() and not fleet.mismatches(truth), within)
    return truth
