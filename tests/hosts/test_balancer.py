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
from tests.hosts.services import LB_PORT, wait_for

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
    """SIGKILL a server: its clients resume on the other and miss nothing; bookings go on."""
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


async def test_server_cut_off_from_postgres_is_taken_out_and_recovers(cluster: Cluster):
    """Cut from PostgreSQL, app1 leaves rotation, its clients move (1013) losing nothing; it comes back."""
    lb = cluster.haproxy
    world = await make_world(lb_url(lb.host), SERVICES, 10)
    fleet = await _fleet(lb.host, world)
    booker = Booker(lb_url(lb.host), world.all_slots, rate=20)
    stop = asyncio.Event()
    run = asyncio.create_task(booker.run(stop))
    late: Fleet | None = None
    try:
        await asyncio.sleep(2)
        on_app1 = cluster.app1.connections()
        cut_at = time.monotonic()
        cluster.network.cut("app1", "db")
        await asyncio.to_thread(
            wait_for, "app1's /readyz fails", lambda: cluster.app1.readyz() == 503, 10)
        unready = time.monotonic() - cut_at
        await asyncio.to_thread(
            wait_for, "HAProxy marks app1 DOWN", lambda: lb.status()["app1"].startswith("DOWN"), 10)
        down = time.monotonic() - cut_at
        # A server that cannot follow the log does not keep clients believing they are live.
        await asyncio.to_thread(
            wait_for, "app1 holds no socket", lambda: cluster.app1.connections() == 0, 10)
        emptied = time.monotonic() - cut_at
        await fleet.wait("every client live again", fleet.all_live, 10)
        moved = [c for c in fleet.clients if c.connections > 1]
        told = [c for c in fleet.clients if 1013 in c.close_codes]
        # Exactly app1's clients moved, each told to try again later (1013).
        assert len(moved) == len(told) == on_app1 >= SOCKETS * 0.4, (len(moved), len(told), on_app1)
        assert set(map(id, moved)) == set(map(id, told))
        # Out of rotation, app1 gets no new request: HAProxy's session count for it stands.
        sessions = int(lb.servers()["app1"]["stot"])
        await asyncio.sleep(2)
        assert int(lb.servers()["app1"]["stot"]) == sessions
        assert cluster.app2.connections() == SOCKETS

        healed_at = time.monotonic()
        cluster.network.heal("app1", "db")
        ready = await asyncio.to_thread(cluster.app1.wait_ready, 20)
        await asyncio.to_thread(cluster.wait_in_rotation, 10)
        back = time.monotonic() - healed_at
        # Back in rotation it serves again: new sockets land on it and see every update.
        late = Fleet(lb.host, LB_PORT, {ch: 10 for ch in world.channels})
        await late.start()
        assert cluster.app1.connections() >= 10
        await asyncio.sleep(2)
        stop.set()
        await run
        truth = await settle(fleet, cluster.database, world)
        await settle(late, cluster.database, world)
        assert fleet.problems() == [] and late.problems() == []
        assert fleet.mismatches(truth) == [] and late.mismatches(truth) == []
        assert sum(c.updates for c in late.clients) > 0
        assert booker.errors == [], booker.errors
        # Bookings that went to app1 as it was cut waited for an answer, then were retried.
        assert booker.longest() < 12, (booker.longest(), booker.statuses)
        _report("cut from PostgreSQL", readyz_503_after_s=round(unready, 2),
                haproxy_down_after_s=round(down, 2), sockets_moved_after_s=round(emptied, 2),
                moved=len(moved), ready_after_heal_s=round(ready, 2),
                in_rotation_after_heal_s=round(back, 2),
                longest_booking_s=round(booker.longest(), 2), failed_attempts=booker.statuses)
    finally:
        cluster.network.heal("app1", "db")
        stop.set()
        await run
        await fleet.close()
        if late is not None:
            await late.close()


async def test_presence_is_right_again_within_5s_of_a_kill(cluster: Cluster):
    """Presence spans both servers through Redis and is right again within 5 s of a SIGKILL."""
    world = await make_world(lb_url(cluster.haproxy.host), SERVICES, 1)
    fleet = await _fleet(cluster.haproxy.host, world)
    per_channel = SOCKETS // SERVICES
    try:
        await fleet.wait("every client counts both servers' sockets",
                         lambda: all(c.presence == per_channel for c in fleet.clients), 10)
        killed_at = time.monotonic()
        cluster.app1.kill()
        await fleet.wait("every client live again", fleet.all_live, 10)
        await asyncio.sleep(max(0.0, killed_at + 6 - time.monotonic()))
        assert all(c.presence == per_channel for c in fleet.clients)
        # Counts settle: the last frame each client got (or its resubscribe) is the right count.
        after = [[(t, n) for t, n in c.presence_log if t > killed_at] for c in fleet.clients]
        right_again = max(max([c.live_at, *(t for t, _ in log)]) for c, log in zip(fleet.clients, after,
                                                                                     strict=True)) - killed_at
        assert right_again <= 5, right_again
        stale = max((n for log in after for _, n in log), default=per_channel)
        _report("presence after SIGKILL", right_again_s=round(right_again, 2), stale_count_seen=stale)
    finally:
        await fleet.close()
