"""Scale-out on one 2-core machine: fan-out with 2 workers against 1, a reconnect storm on 1
and 2 processes, and a rolling restart of 2 processes; all in one run.

    python bench/scaleout.py            # ~10 minutes
    python bench/scaleout.py --quick    # smaller and shorter; the doc is not rewritten
    python bench/scaleout.py --render   # rewrite the doc from bench/results/scaleout.json

1. fan-out: two servers side by side, `realtime serve --workers 1` and `--workers 2`, each on
   its own scratch database with the same subscribers on one channel (bench/lib/subscribers.py:
   plain asyncio protocols in 4 processes, counting update frames and nothing else). They take
   turns: bookings on that channel for a few seconds at a rate neither can fan out (`rt_book`
   called directly), frames counted at the subscribers until they stop coming; frames/s is
   those frames over the time from the first booking to the last frame. Rounds alternate
   which goes first; the ratio is the median round's. The CPU of the server processes, of the
   load generator (the subscriber processes and this one, which books) and of PostgreSQL is
   read from /proc in each window.
2. reconnect storm, on `--workers 1` then `--workers 2`: 5,000 clients (tests/hosts/clients.py:
   they track every slot, their cursor, and any gap) on 10 channels; all their sockets drop,
   bookings change every channel meanwhile, then all 5,000 resume with `since` at once (the
   servers run with the sequencer's and the sweeper's backstop polls an hour apart). Counted:
   the database's transactions (pg_stat_database; pg_stat_statements is not loaded on the shared
   server), the same over an idle window of the same length (the server's background work),
   the servers' own `realtime_db_queries_total` (each worker's, see `queries_by_worker`), and
   the seconds until every client shows the database's state.
3. rolling restart: 2 separate `realtime serve` processes behind bench/lib/relay.py (a TCP
   balancer of this bench's own; uvicorn's supervisor cannot restart one worker alone), 2,000
   clients on 40 channels, bookings at 20/s through the relay; each process in turn gets
   SIGTERM (its clients get 1001 and resume through the relay on the other) and is started
   again. Counted: updates lost, duplicated or out of order, and seconds until every client
   of the stopped process is live again.

Writes bench/results/scaleout.json and docs/benchmarks-scaleout.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lib import pg, server  # noqa: E402
from bench.lib.cpu import CpuWindow  # noqa: E402
from bench.lib.net import free_port, require_loopback  # noqa: E402
from bench.lib.scaleout_doc import write_doc  # noqa: E402
from bench.lib.scaleout_parts import (  # noqa: E402
    BOOK_SQL,
    LOGS,
    Served,
    book,
    make_world,
    queries_by_worker,
    scratch_database,
    spawn,
    start_serve,
)
from bench.lib.subscribers import Workers  # noqa: E402
from tests.hosts.booker import Booker  # noqa: E402
from tests.hosts.clients import Fleet, World, database_truth  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scaleout.json"
BEGAN = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - BEGAN:6.1f} s] {msg}", flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- 1. fan-out ---------------------------------------------------------------------------

OWED = 3_000_000
DRIVERS = 8  # connections booking, each one booking at a time


async def drive(pool: Any, slots: list[str], seconds: float, rate: float) -> int:
    """Bookings at `rate` per second (at most) for `seconds`; how many were made."""
    done = 0
    began = time.monotonic()

    async def booker(k: int) -> None:
        nonlocal done
        i = k
        while (now := time.monotonic()) - began < seconds:
            await asyncio.sleep(max(0.0, began + i / rate - now))
            await pool.fetchval(BOOK_SQL, slots[i % len(slots)])
            done += 1
            i += DRIVERS

    await asyncio.gather(*(booker(k) for k in range(DRIVERS)))
    return done


async def delivered(subs: Workers, label: str, before: int) -> tuple[int, float]:
    """Frames of `label` received since `before`, once they stop coming (none for 1 s; at most
    60 s), and when the last of them came (within 0.25 s). On a starved machine the server and
    the readers fall seconds behind the bookings: counting until the window's end would count
    part of this window's frames in the next one."""
    total, last = before, time.monotonic()
    deadline = last + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now = sum(c.get(label, 0) for c in subs.call("counts"))
        if now > total:
            total, last = now, time.monotonic()
        elif time.monotonic() - last >= 1.0:
            break
    return total - before, last


async def fanout_phase(quick: bool, subscribers: int, owed: int) -> dict[str, Any]:
    subscribers = subscribers or (2000 if quick else 5000)
    rounds = 2 if quick else 5
    seconds = 3.0 if quick else 5.0
    # Frames owed per second: more than either server sends on this machine (on a quiet one,
    # one process sent about 1,000,000 a second, two about 1,300,000), not so much more that
    # the bookings themselves compete with the fan-out for the cores.
    rate = max(5.0, owed / subscribers)
    import asyncpg

    names: list[str] = []
    servers: dict[int, Served] = {}
    pools: dict[int, Any] = {}
    subs = None
    out: dict[str, Any] = {"subscribers_per_server": subscribers, "booking_rate": rate,
                           "seconds": seconds, "rounds": []}
    try:
        for count in (1, 2):
            name, dsn = await scratch_database(f"fan{count}")
            names.append(name)
            pools[count] = await asyncpg.create_pool(dsn, min_size=DRIVERS, max_size=DRIVERS)
            world = await make_world(dsn, 1, 8)
            # The counting reader answers no ping (see bench/lib/subscribers.py).
            servers[count] = await start_serve(dsn, free_port(), count, f"fanout-{count}w",
                                               {"REALTIME_WS_PING_INTERVAL": "3600"})
            servers[count].world = world  # type: ignore[attr-defined]
        subs = Workers(servers[1].port, "/ws")
        for count, served in servers.items():
            world = served.world  # type: ignore[attr-defined]
            took = sum(subs.call("open-on", f"w{count}", "ws-count", served.port, world.channels[0],
                                 split=subscribers)) / len(subs.procs)
            say(f"fan-out: {subscribers:,} subscribers on --workers {count} in {took:.1f} s; "
                f"sockets per worker: {sorted(served.split().values())}")
        out["sockets_per_worker"] = {str(c): sorted(s.split().values()) for c, s in servers.items()}
        generator = [p.pid for p in subs.procs if p.pid is not None] + [os.getpid()]
        for r in range(rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            row: dict[str, Any] = {"round": r + 1, "first": order[0]}
            for count in order:
                served = servers[count]
                world = served.world  # type: ignore[attr-defined]
                backends = await pg.backends(pg.admin_dsn(), names[count - 1])
                window = CpuWindow({"server": served.pids(), "generator": generator}, backends)
                before = sum(c.get(f"w{count}", 0) for c in subs.call("counts"))
                window.start()
                began = time.monotonic()
                bookings = await drive(pools[count], world.all_slots, seconds, rate)
                frames, last = await delivered(subs, f"w{count}", before)
                elapsed = last - began
                cores = window.stop()
                still = sum(subs.call("open-sockets", f"w{count}"))
                row[f"w{count}"] = {"bookings": bookings, "frames": frames,
                                    "owed": bookings * subscribers,
                                    "frames_per_s": round(frames / elapsed), "cores": cores,
                                    "open_sockets": still, "load": load()}
                if still < subscribers:
                    # A process that cannot follow the event log sheds its sockets (they would
                    # resume elsewhere); these readers do not come back: the round does not count.
                    say(f"  --workers {count} closed {subscribers - still:,} sockets: "
                        f"reopening them; the round does not count")
                    subs.call("close")
                    for c2, s2 in servers.items():
                        subs.call("open-on", f"w{c2}", "ws-count", s2.port,
                                  s2.world.channels[0], split=subscribers)  # type: ignore[attr-defined]
                say(f"fan-out round {r + 1}, --workers {count}: {frames / elapsed:,.0f} frames/s "
                    f"({bookings} bookings); cores: server {cores['server']}, generator "
                    f"{cores['generator']}, postgres {cores['postgres']}, machine "
                    f"{cores['machine']} (steal {cores['steal']})")
            row["valid"] = all(row[f"w{c}"]["open_sockets"] == subscribers for c in (1, 2))
            row["ratio"] = round(row["w2"]["frames_per_s"] / max(1, row["w1"]["frames_per_s"]), 2)
            out["rounds"].append(row)
        valid = [x for x in out["rounds"] if x["valid"]] or out["rounds"]
        median = sorted(valid, key=lambda x: x["ratio"])[(len(valid) - 1) // 2]
        out["ratio"] = median["ratio"]
        out["median_round"] = median["round"]
        out["ratio_each_round"] = [x["ratio"] for x in out["rounds"]]
        say(f"fan-out: 2 workers / 1 worker = {out['ratio']} (rounds: {out['ratio_each_round']})")
    finally:
        if subs is not None:
            subs.stop()
        for pool in pools.values():
            await pool.close()
        server.stop(*(s.proc for s in servers.values()))
        await pg.drop_databases(pg.admin_dsn(), *names)
    return out


# --- 2. reconnect storm -------------------------------------------------------------------

async def converged(fleet: Fleet, dsn: str, world: World, within: float) -> float | None:
    """Seconds until every client is live and shows the database's state; None if that did
    not happen within `within` seconds."""
    began = time.monotonic()
    want = await database_truth(dsn, world.vendor, world.channels)
    while not (fleet.all_live() and not fleet.mismatches(want)):
        if time.monotonic() - began > within:
            say(f"  not converged within {within:g} s: {fleet.live:,} clients live, "
                f"{len(fleet.mismatches(want)):,} off the database's state")
            return None
        await asyncio.sleep(0.05)
    return time.monotonic() - began


# PostgreSQL flushes an idle backend's statistics within 10 s: a window of database statistics
# is read at least that long after its last transaction of interest.
FLUSH = 11.0
QUIET = {"REALTIME_SEQUENCER_POLL": "3600", "REALTIME_SWEEP_INTERVAL": "3600"}


async def storm_phase(count: int, clients: int, channels: int, window_s: float) -> dict[str, Any]:
    name, dsn = await scratch_database(f"storm{count}")
    admin = pg.admin_dsn()
    served = None
    fleet = None
    try:
        world = await make_world(dsn, channels, 5)
        # The background's backstop polls (sequencer, hold sweeper) far apart: each costs
        # the database a few queries a second, which would drown what the storm costs.
        served = await start_serve(dsn, free_port(), count, f"storm-{count}w", QUIET)
        fleet = Fleet("127.0.0.1", served.port, {ch: clients // channels for ch in world.channels})
        took = await fleet.start(within=300, concurrency=200)
        say(f"storm, --workers {count}: {clients:,} clients live in {took:.1f} s; sockets per "
            f"worker: {sorted(served.split().values())}")
        await book(dsn, world.all_slots)
        if await converged(fleet, dsn, world, 60) is None:
            raise RuntimeError("the clients did not see the first bookings")
        # The network blips: every socket drops (nobody reconnects yet), and every channel
        # changes meanwhile.
        fleet.stopping = True
        for c in fleet.clients:
            if c.sub is not None and c.sub.transport is not None:
                c.sub.transport.abort()
        await book(dsn, world.all_slots[::2])
        await asyncio.sleep(FLUSH)
        # The background's share (the sweeper, the webhook dispatcher's poll): a window of the
        # same length, idle.
        idle = await pg.transactions(admin, name)
        idle_queries = await queries_by_worker(served)
        await asyncio.sleep(window_s)
        idle = await pg.transactions(admin, name) - idle
        idle_queries = {p: v - idle_queries[p] for p, v in (await queries_by_worker(served)).items()}
        say(f"storm, --workers {count}: idle for {window_s:g} s: {idle} database transactions")
        xacts = await pg.transactions(admin, name)
        queries = await queries_by_worker(served)
        window = CpuWindow({"server": served.pids()}, await pg.backends(admin, name))
        window.start()
        fleet.stopping = False
        began = time.monotonic()
        await asyncio.gather(*(c.connect() for c in fleet.clients))
        seconds = await converged(fleet, dsn, world, 120)
        cores = window.stop()
        # The window: at least as long as the idle one, and long enough after the last
        # reconnect for PostgreSQL to have flushed its statistics.
        storm_s = max(window_s, (seconds or 120) + FLUSH)
        await asyncio.sleep(began + storm_s - time.monotonic())
        queries = {p: v - queries[p] for p, v in (await queries_by_worker(served)).items()}
        xacts = await pg.transactions(admin, name) - xacts
        idle_scaled = round(idle * storm_s / window_s)
        problems = fleet.problems()
        out = {"workers": count, "clients": clients, "channels": channels,
               "sockets_per_worker": sorted(served.split().values()),
               "converged_s": None if seconds is None else round(seconds, 2),
               "window_s": round(storm_s, 1), "idle_window_s": window_s,
               "db_transactions": xacts, "db_transactions_idle": idle_scaled,
               "db_transactions_beyond_idle": xacts - idle_scaled,
               "server_queries": sum(queries.values()),
               "server_queries_idle": round(sum(idle_queries.values()) * storm_s / window_s),
               "connections": sum(c.connections for c in fleet.clients),
               "server_queries_by_worker": list(queries.values()),
               "resumed_by_snapshot": sum(c.snapshot_resumes for c in fleet.clients),
               "problem_count": len(problems), "problems": problems[:5], "cores": cores,
               "load": load()}
        say(f"storm, --workers {count}: converged in {out['converged_s']} s; database transactions in "
            f"{storm_s:g} s: {xacts} ({idle_scaled} idle); server queries {out['server_queries']} "
            f"({out['server_queries_idle']} idle), by worker {out['server_queries_by_worker']}; "
            f"problems {len(problems)}")
        return out
    finally:
        if fleet is not None:
            await fleet.close()
        if served is not None:
            server.stop(served.proc)
        await pg.drop_databases(admin, name)


# --- 3. rolling restart -------------------------------------------------------------------

async def restart_phase(clients: int, channels: int) -> dict[str, Any]:
    name, dsn = await scratch_database("roll")
    servers: list[Served] = []
    relay = None
    fleet = None
    stop = asyncio.Event()
    run = None
    out: dict[str, Any] = {"clients": clients, "channels": channels, "restarts": []}
    try:
        world = await make_world(dsn, channels, 5)
        for k in range(2):
            servers.append(await start_serve(dsn, free_port(), 1, f"roll-{k}"))
        port = free_port()
        relay = spawn([sys.executable, "-m", "bench.lib.relay", str(port),
                       *(str(s.port) for s in servers)], "relay")
        await server.until_ready(relay, port, "/healthz", within=20)
        fleet = Fleet("127.0.0.1", port, {ch: clients // channels for ch in world.channels})
        took = await fleet.start(within=300, concurrency=200)
        say(f"rolling restart: {clients:,} clients live through the relay in {took:.1f} s")
        booker = Booker(f"http://127.0.0.1:{port}", world.all_slots, rate=20)
        run = asyncio.create_task(booker.run(stop))
        await asyncio.sleep(2)
        for k, served in enumerate(servers):
            before = {id(c): c.connections for c in fleet.clients}
            held = sum(served.split().values())
            sigterm_at = time.monotonic()
            served.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(served.proc.wait, 30)
            exited = time.monotonic() - sigterm_at
            await fleet.wait("every client live again", fleet.all_live, 60)
            moved = [c for c in fleet.clients if c.connections > before[id(c)]]
            live_again = max((c.live_at for c in moved), default=sigterm_at) - sigterm_at
            outages = sorted(c.outages[-1] for c in moved if c.outages)
            codes = sorted({code for c in moved for code in c.close_codes[-1:]})
            row = {"process": k + 1, "exit_code": code, "sockets": held, "moved": len(moved),
                   "close_codes": codes, "exited_s": round(exited, 2),
                   "all_live_again_s": round(live_again, 2),
                   "outage_p50_max_s": [round(outages[len(outages) // 2], 2),
                                        round(outages[-1], 2)] if outages else None,
                   "load": load()}
            out["restarts"].append(row)
            say(f"rolling restart: process {k + 1} (SIGTERM, exit {code} in {exited:.2f} s): "
                f"{len(moved)} clients moved, all live again {live_again:.2f} s after the "
                f"SIGTERM; close codes {codes}")
            servers[k] = await start_serve(dsn, served.port, 1, f"roll-{k}-again")
        await asyncio.sleep(2)
        stop.set()
        await run
        run = None
        want = await database_truth(dsn, world.vendor, world.channels)
        try:
            await fleet.wait("every client shows the database's state",
                             lambda: fleet.all_live() and not fleet.mismatches(want), 30)
        except AssertionError:
            pass
        problems = fleet.problems()
        mismatches = fleet.mismatches(want)
        out |= {"bookings": booker.booked, "booking_errors": booker.errors[:5],
                "updates_received": sum(c.updates for c in fleet.clients),
                "updates_lost_or_out_of_order": len(problems), "clients_not_converged":
                len(mismatches), "problems": (problems + mismatches)[:5],
                "longest_booking_s": round(booker.longest(), 2), "relay": "bench/lib/relay.py"}
        say(f"rolling restart: {booker.booked} bookings, {out['updates_received']:,} updates "
            f"received, {len(problems)} lost or out of order, {len(mismatches)} clients off "
            f"the database's state")
        return out
    finally:
        stop.set()
        if run is not None:
            await run
        if fleet is not None:
            await fleet.close()
        server.stop(relay, *(s.proc for s in servers))
        await pg.drop_databases(pg.admin_dsn(), name)


# --- the run ------------------------------------------------------------------------------

async def run(args: argparse.Namespace) -> dict[str, Any]:
    require_loopback(pg.admin_dsn())
    LOGS.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_before": load(), "cpus": os.cpu_count(), "quick": args.quick,
        "db_statistics": "pg_stat_database (xact_commit + xact_rollback)"}
    say(f"load average {results['load_before']}")
    if "fanout" in args.phases:
        results["fanout"] = await fanout_phase(args.quick, args.subscribers, args.owed)
    if "storm" in args.phases:
        clients = 1000 if args.quick else 5000
        window = 15.0 if args.quick else 25.0
        results["storm"] = [await storm_phase(count, clients, 10, window) for count in (1, 2)]
    if "restart" in args.phases:
        results["rolling_restart"] = await restart_phase(400 if args.quick else 2000, 40)
    results["load_after"] = load()
    say(f"load average {results['load_after']}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--phases", default="fanout,storm,restart",
                        help="which to run (default all three; the doc is written only then)")
    parser.add_argument("--subscribers", type=int, default=0,
                        help="fan-out subscribers per server (default 5,000; 2,000 --quick)")
    parser.add_argument("--owed", type=int, default=OWED,
                        help=f"fan-out frames owed per second (default {OWED:,}): bookings at "
                             "this over the subscribers per second")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite the doc from bench/results/scaleout.json")
    args = parser.parse_args()
    if args.render:
        write_doc(json.loads(RESULTS.read_text()), "python bench/scaleout.py")
        return 0
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    import uvloop

    # The 5,000 clients of the storm share this process's loop: the default loop's connect
    # path is too slow for them on a loaded machine (connects time out and are retried).
    uvloop.install()
    results = asyncio.run(run(args))
    command = "python bench/scaleout.py" + (" --quick" if args.quick else "")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick and args.phases == "fanout,storm,restart":
        RESULTS.write_text(json.dumps(results, indent=2))
        write_doc(results, command)
    print(json.dumps({k: v for k, v in results.items()}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
