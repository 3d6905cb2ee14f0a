"""A rolling restart behind HAProxy: 2,000 clients, a steady booking stream, each of the two
servers restarted in turn with SIGTERM. Nothing may be lost, and every client is live again
within 5 s of losing its server."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from realtime.errors import CLOSE_GOING_AWAY
from tests.hosts.booker import Booker
from tests.hosts.clients import Fleet
from tests.hosts.conftest import Cluster, lb_url, make_world, settle
from tests.hosts.services import LB_PORT

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

CLIENTS = 2000
SERVICES = 40
LIVE_AGAIN_WITHIN = 5.0


async def test_rolling_restart_loses_nothing(cluster: Cluster):
    """SIGTERM each server in turn: clients get 1001, are live again within 5 s, miss nothing."""
    lb = cluster.haproxy
    world = await make_world(lb_url(lb.host), SERVICES, 5)
    fleet = Fleet(lb.host, LB_PORT, {ch: CLIENTS // SERVICES for ch in world.channels})
    booker = Booker(lb_url(lb.host), world.all_slots, rate=20)
    stop = asyncio.Event()
    run: asyncio.Task[None] | None = None
    figures: dict[str, object] = {}
    watching = True
    seen: list[tuple[float, dict[str, str]]] = []

    def watch() -> None:
        # HAProxy's view of the servers, every 250 ms, while the restarts go on.
        while watching:
            status = lb.status()
            if not seen or seen[-1][1] != status:
                seen.append((time.monotonic(), status))
            time.sleep(0.25)

    watcher = asyncio.create_task(asyncio.to_thread(watch))
    try:
        figures["connect_s"] = round(await fleet.start(within=120), 1)
        run = asyncio.create_task(booker.run(stop))
        await asyncio.sleep(2)
        for app in cluster.servers:
            before = {id(c): c.connections for c in fleet.clients}
            held = app.connections()
            sigterm_at = time.monotonic()
            code = await asyncio.to_thread(app.stop, signal.SIGTERM, 15)
            exited = time.monotonic() - sigterm_at
            assert code == 0, app.process.log()
            await fleet.wait("every client live again", fleet.all_live, LIVE_AGAIN_WITHIN)
            moved = [c for c in fleet.clients if c.connections > before[id(c)]]
            assert len(moved) >= held > 0, (len(moved), held)
            assert all(CLOSE_GOING_AWAY in c.close_codes for c in moved)
            all_live = max(c.live_at for c in moved) - sigterm_at
            app.start()
            await asyncio.to_thread(app.wait_ready)
            await asyncio.to_thread(cluster.wait_in_rotation)
            outages = sorted(c.outages[-1] for c in moved)
            figures[app.host] = {"sockets": held, "exited_s": round(exited, 2),
                                 "all_live_again_s": round(all_live, 2),
                                 "outage_p50_p90_max_s": [round(outages[int(len(outages) * q)], 2)
                                                          for q in (0.5, 0.9)] + [round(outages[-1], 2)],
                                 "attempts_max": max(c.connections - before[id(c)] for c in moved),
                                 "bounced": sum(c.connections - before[id(c)] > 1 for c in moved),
                                 "back_in_rotation_s": round(time.monotonic() - sigterm_at, 2)}
        await asyncio.sleep(2)
        stop.set()
        await run
        watching = False
        await watcher
        figures["haproxy"] = [(round(t - seen[0][0], 1), st) for t, st in seen]
        truth = await settle(fleet, cluster.database, world, within=30)
        problems = fleet.problems()
        outage = max((o for c in fleet.clients for o in c.outages), default=0.0)
        figures |= {"bookings": booker.booked, "updates_received": sum(c.updates for c in fleet.clients),
                    "updates_lost_or_out_of_order": len(problems), "longest_outage_s": round(outage, 2),
                    "longest_booking_s": round(booker.longest(), 2), "failed_attempts": booker.statuses}
        print("[hosts] rolling restart:", figures)
        # At every moment HAProxy had a server to send clients to.
        assert all(any(v.startswith("UP") for v in st.values()) for _, st in seen), seen
        assert problems == []
        assert fleet.mismatches(truth) == []
        assert outage <= LIVE_AGAIN_WITHIN, outage
        assert booker.errors == [] and booker.booked > 100, (booker.errors, booker.booked)
        assert booker.longest() < 5, (booker.longest(), booker.statuses)
    finally:
        watching = False
        stop.set()
        if run is not None:
            await run
        await fleet.close()
