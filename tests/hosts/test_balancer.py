"""Two servers behind HAProxy (and nginx), on hosts of their own: what clients see when a
server dies or loses its database. Clients reach the servers through a balancer only."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from realtime.settings import Settings
from tests.hosts.booker import Booker
from tests.hosts.clients import Fleet
from tests.hosts.conftest import Cluster, World, lb_url, make_world, settle
from tests.hosts.services import LB_PORT

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

SOCKETS = 200
SERVICES = 4


async def _fleet(host: str, world: World) -> Fleet:
    fleet = Fleet(host, LB_PORT, {ch: SOCKETS // len(world.channels) for ch in world.channels})
    await fleet.start()
    return fleet


def _report(name: str, **figures: object) -> None:
    print(f"[hosts] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


async def test_every_client_sees_every_update_in_order(cluster: Cluster):
    """200 sockets through HAProxy, spread over both servers; every update, in version order."""
    world = await make_world(lb_url(cluster.haproxy.host), SERVICES, 10)
    fleet = await _fleet(cluster.haproxy.host, world)
    try:
        spread = [app.connections() for app in cluster.servers]
        # Round robin and no stickiness: each server holds about half of the sockets.
        assert min(spread) >= SOCKETS * 0.4, spread
        booker = Booker(lb_url(cluster.haproxy.host), world.all_slots, rate=30)
        stop = asyncio.Event()
        run = asyncio.create_task(booker.run(stop))
        await asyncio.sleep(4)
        stop.set()
        await run
        truth = await settle(fleet, cluster.database, world)
        assert booker.errors == [] and booker.booked >= 100, (booker.errors, booker.booked)
        assert fleet.problems() == []
        assert fleet.mismatches(truth) == []
        assert sum(c.updates for c in fleet.clients) == booker.booked * SOCKETS // SERVICES
        # Each process stays within its connection budget: the pool plus one LISTEN connection.
        conn = await asyncpg.connect(cluster.database)
        try:
            used = {app.host: await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE client_addr = $1::inet",
                cluster.network.ip(app.host)) for app in cluster.servers}
        finally:
            await conn.close()
        assert all(0 < n <= Settings().pool_size + 1 for n in used.values()), used
        _report("fan-out", sockets_per_server=spread, bookings=booker.booked,
                db_connections=used)
    finally:
        await fleet.close()


@pytest.fixture(params=["haproxy", "nginx"])
def balancer(request: pytest.FixtureRequest, cluster: Cluster) -> tuple[str, str]:
    """(name, address) of a balancer in front of the cluster: HAProxy, then nginx."""
    return request.param, str(request.getfixturevalue(request.param).host)


async def test_killed_server_clients_resume_elsewhere(cluster: Cluster, balancer: tuple[str, str]):
    """SIGKILL one server: its clients resume on the other through the balancer and miss
    nothing; bookings through the balancer keep succeeding after a short blip."""
    name, address = balancer
    world = await make_world(lb_url(address), SERVICES, 10)
    fleet = await _fleet(address, world)
    booker = Booker(lb_url(address), world.all_slots, rate=20)
    stop = asyncio.Event()
    run = asyncio.create_task(booker.run(stop))
    try:
        await asyncio.sleep(2)
        before = booker.booked
        on_app1 = cluster.app1.connections()
        killed_at = time.monotonic()
        cluster.app1.kill()
        await fleet.wait("the killed server's clients notice", lambda: not fleet.all_live(), 5)
        await fleet.wait("every client live again", fleet.all_live, 10)
        await asyncio.sleep(3)
        stop.set()
        await run
        truth = await settle(fleet, cluster.database, world)
        moved = [c for c in fleet.clients if c.connections > 1]
        assert len(moved) == on_app1 >= SOCKETS * 0.4, (len(moved), on_app1)
        assert cluster.app2.connections() == SOCKETS
        assert fleet.problems() == []  # no update lost, duplicated or reordered
        assert fleet.mismatches(truth) == []
        # Each moved client was live again within 2 s of losing its server.
        outage = max(o for c in moved for o in c.outages)
        assert outage < 2, outage
        assert booker.errors == [] and booker.booked > before + 40, (booker.errors, booker.booked)
        # A booking in flight on the killed server is retried; none waits long.
        assert booker.longest() < 5, (booker.longest(), booker.statuses)
        _report(f"SIGKILL behind {name}", moved=len(moved), longest_outage_s=round(outage, 2),
                all_live_after_kill_s=round(max(c.live_at for c in moved) - killed_at, 2),
                longest_booking_s=round(booker.longest(), 2), failed_attempts=booker.statuses)
    finally:
        stop.set()
        await run
        await fleet.close()
