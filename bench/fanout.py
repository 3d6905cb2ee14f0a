"""WebSocket fan-out: memory per socket, delivery latency, sustained frames/s, and the floor.

    /work/venv/bin/python bench/fanout.py            # ~3 minutes
    /work/venv/bin/python bench/fanout.py --quick    # smaller: 1k/2k/3k sockets, fewer bookings
    /work/venv/bin/python bench/fanout.py --memory --baseline /tmp/base --breakdown
                                                      # memory per socket only, two trees

One run, one server process (`python -m realtime serve`, uvloop, compression off), on a scratch
database it creates and drops again. Subscribers live in several client processes, each
connecting from its own loopback address (127.0.0.2, 127.0.0.3, ...) and speaking WebSocket
through websockets' Sans-I/O protocol on plain asyncio protocols (no task per socket), so
that the load generator costs as little as it can on the two shared cores.

1. memory per idle subscribed socket: server RSS growth / sockets, at 1k, 5k and 10k.
2. latency: with 1k, then 5k subscribers on one channel, >= 50 bookings one after the other
   (`rt_book` called directly, like any other writer); for each, the time from just before
   the call until the last subscriber has the frame carrying the new version. Every
   subscriber must receive every booking (checked).
3. sustained fan-out (after the memory steps, with all 10k sockets open): the 5k subscribers of
   one channel, bookings at a rate far above what can be fanned out, for a fixed time;
   frames delivered per second, counted at the subscribers.
4. the floor: a bare websockets server (`websockets.broadcast()`, uvloop, compression off)
   with the same 5k subscribers broadcasting the same frame for the same time.

Writes bench/results/fanout.json and docs/benchmarks-channels.md. `--memory` measures step 1
only, for this tree and the `--baseline` tree side by side, and with `--breakdown` what each
socket's objects cost (bench/lib/memory.py; bench/results/memory.json,
docs/benchmarks-memory.md).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lib import memory, pg, server  # noqa: E402
from bench.lib.cpu import proc_rss_kib  # noqa: E402
from bench.lib.fanout_doc import write_doc  # noqa: E402
from bench.lib.floor import floor_phase  # noqa: E402
from bench.lib.net import free_port  # noqa: E402
from bench.lib.stats import percentile  # noqa: E402
from bench.lib.subscribers import Workers  # noqa: E402
from realtime.db.connect import dsn_for_database  # noqa: E402
from realtime.httpclient import get  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "fanout.json"
MEMORY_RESULTS = ROOT / "bench" / "results" / "memory.json"
BOOK_SQL = "SELECT rt_book($1::uuid, 1, NULL, NULL, NULL, '', NULL, NULL)"


def rss(pid: int) -> int:
    return proc_rss_kib(pid) * 1024


async def make_database() -> tuple[str, str]:
    from realtime.db.migrate import migrate

    name = f"rt_bench_{uuid.uuid4().hex[:10]}"
    await pg.create_database(pg.admin_dsn(), name)
    dsn = dsn_for_database(pg.admin_dsn(), name)
    await migrate(dsn, echo=lambda _: None)
    return name, dsn


async def seed(dsn: str) -> dict[str, Any]:
    from realtime.booking.service import BookingService
    from realtime.db.connect import create_pool

    pool = await create_pool(dsn, 2)
    booking = BookingService(pool)
    vendor = (await booking.create_vendor("Bench"))["id"]
    services = []
    for i in range(11):
        svc = (await booking.create_service(vendor, f"room {i}", False))["id"]
        slots = (await booking.create_slots(svc, [
            {"starts_at": f"2030-05-{d + 1:02d}T09:00:00Z",
             "ends_at": f"2030-05-{d + 1:02d}T10:00:00Z", "capacity": 1_000_000}
            for d in range(8)]))["slots"]
        services.append({"id": svc, "slots": [s["id"] for s in slots]})
    await pool.close()
    return {"vendor": vendor, "services": services}


def start_server(dsn: str, port: int, source: Path = ROOT) -> subprocess.Popen[bytes]:
    (ROOT / "bench" / "results" / "logs").mkdir(parents=True, exist_ok=True)
    with open(ROOT / "bench" / "results" / "logs" / "fanout-server.log", "wb") as log:
        return server.start(port, server.server_env(dsn), log=log, source=source)


async def scrape_gc(port: int) -> dict[str, Any]:
    """The server's own garbage-collector pause metrics (realtime.channels.gcwatch)."""
    text = (await get(f"http://127.0.0.1:{port}/metrics", within=10)).body.decode()
    out: dict[str, Any] = {"max_pause_ms": None, "full_collections": 0, "collections": 0,
                           "pause_total_ms": 0.0}
    for line in text.splitlines():
        if line.startswith("realtime_gc_pause_seconds_count{"):
            out["collections"] += int(float(line.split()[1]))
        elif line.startswith("realtime_gc_pause_seconds_sum{"):
            out["pause_total_ms"] += float(line.split()[1]) * 1000
        if line.startswith("realtime_gc_pause_max_seconds "):
            out["max_pause_ms"] = round(float(line.split()[1]) * 1000, 1)
        elif line.startswith('realtime_gc_pause_seconds_count{generation="2"}'):
            out["full_collections"] = int(float(line.split()[1]))
        elif line.startswith("realtime_gc_thaws_total "):
            out["thaws"] = int(float(line.split()[1]))
        elif line.startswith("realtime_gc_frozen_objects "):
            out["frozen"] = int(float(line.split()[1]))
    return out


async def latency_phase(dsn: str, port: int, workers: Workers, slot: str, subscribers: int,
                        bookings: int) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    gc_before = await scrape_gc(port)
    workers.call("watch", slot)
    issued: dict[int, float] = {}
    for _ in range(bookings):
        t0 = time.monotonic()
        result = json.loads(await conn.fetchval(BOOK_SQL, slot))
        issued[result["slot"]["version"]] = t0
        # Far enough apart that each booking is measured alone, not queued behind the last.
        await asyncio.sleep(0.05 + subscribers * 50e-6)
    await asyncio.sleep(1.0)
    await conn.close()
    gc_after = await scrape_gc(port)
    merged: dict[int, tuple[int, float]] = {}
    for seen in workers.call("seen"):
        for version, (count, last) in seen.items():
            c, t = merged.get(version, (0, 0.0))
            merged[version] = (c + count, max(t, last))
    latencies = []
    incomplete = 0
    for version, t0 in issued.items():
        count, last = merged.get(version, (0, 0.0))
        if count != subscribers:
            incomplete += 1
            continue
        latencies.append((last - t0) * 1000)
    return {
        "subscribers": subscribers,
        "bookings": len(issued),
        "incomplete": incomplete,
        "p50_ms": round(percentile(sorted(latencies), 0.50), 1) if latencies else None,
        "p99_ms": round(percentile(sorted(latencies), 0.99), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
        "all_ms": [round(x, 1) for x in latencies],
        "gc_collections": gc_after["collections"] - gc_before["collections"],
        "gc_pause_ms": round(gc_after["pause_total_ms"] - gc_before["pause_total_ms"], 1),
    }


async def sustained_phase(dsn: str, workers: Workers, slots: list[str], seconds: float,
                          rate: float) -> dict[str, Any]:
    import asyncpg

    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4)
    assert pool is not None
    before = sum(workers.call("frames"))
    started = time.monotonic()
    done = 0
    i = 0
    while time.monotonic() - started < seconds:
        due = started + i / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        await pool.fetchval(BOOK_SQL, slots[i % len(slots)])
        i += 1
        done += 1
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.5)
    after = sum(workers.call("frames"))
    await pool.close()
    return {"seconds": round(elapsed, 1), "bookings": done,
            "frames": after - before, "frames_per_s": round((after - before) / elapsed)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    steps = [1000, 5000, 10000] if not args.quick else [1000, 2000, 3000]
    latency_at = [1000, 5000] if not args.quick else [1000, 2000]
    bookings = 60 if not args.quick else 20
    seconds = 10.0 if not args.quick else 5.0
    name, dsn = await make_database()
    results: dict[str, Any] = {"started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "load_before": [round(x, 2) for x in os.getloadavg()]}
    proc = None
    workers = None
    try:
        world = await seed(dsn)
        hot = world["services"][0]
        port = free_port()
        proc = start_server(dsn, port, args.source)
        await server.until_ready(proc, port, within=30)
        await asyncio.sleep(1.0)
        base = rss(proc.pid)
        workers = Workers(port, "/ws")
        memory = []
        latency = []
        opened = 0
        sample_frame = None
        for step in steps:
            # Up to 5k everyone watches the hot channel (latency and sustained phases); the
            # rest spread over ten quiet channels, idle.
            add = step - opened
            hot_add = max(0, min(add, latency_at[-1] - opened))
            if hot_add:
                workers.call("open", f"service:{hot['id']}", split=hot_add)
            quiet = add - hot_add
            for k, svc in enumerate(world["services"][1:]):
                n = quiet // 10 + (1 if k < quiet % 10 else 0)
                if n:
                    workers.call("open", f"service:{svc['id']}", split=n)
            opened = step
            await asyncio.sleep(2.0)
            grown = rss(proc.pid) - base
            memory.append({"sockets": step, "rss_mib": round(rss(proc.pid) / 2**20, 1),
                           "kib_per_socket": round(grown / step / 1024, 1)})
            print("memory", memory[-1], flush=True)
            if step in latency_at:
                lat = await latency_phase(dsn, port, workers, hot["slots"][0], step, bookings)
                latency.append(lat)
                print("latency", lat, flush=True)
        # Last, so that the memory figures above are of idle sockets, not of what an overload
        # left behind: the 5k subscribers of the hot channel, the others open and idle.
        floor_rate = 64000  # frames/s per core for a bare broadcast() loop; owe far more
        hot_subs = latency_at[-1]
        rate = max(5.0, 10 * floor_rate / hot_subs)
        sustained = await sustained_phase(dsn, workers, hot["slots"][1:], seconds, rate)
        sustained["subscribers"] = hot_subs
        sustained["booking_rate"] = rate
        print("sustained", sustained, flush=True)
        results["sustained"] = sustained
        # A frame exactly as the server sends it, for the floor.
        import asyncpg

        conn = await asyncpg.connect(dsn)
        row = await conn.fetchrow("SELECT pos, slot::text FROM rt_events ORDER BY pos DESC"
                                  " NULLS LAST LIMIT 1")
        await conn.close()
        from realtime.channels.protocol import encode_update, quote

        sample_frame = encode_update(f"service:{hot['id']}", quote(f"{row['pos']}@abcdef12"),
                                     "booked", row["slot"])
        results["memory"] = memory
        results["latency"] = latency
        results["frame_bytes"] = len(sample_frame.encode())
        results["gc"] = await scrape_gc(port)
    finally:
        if workers is not None:
            workers.stop()
        server.stop(proc)
        await pg.drop_databases(pg.admin_dsn(), name)
    assert sample_frame is not None
    floor = floor_phase(latency_at[-1], seconds, sample_frame)
    print("floor", floor, flush=True)
    results["floor"] = floor
    results["fanout_vs_floor"] = round(
        results["sustained"]["frames_per_s"] / max(1, floor["frames_per_s"]), 2)
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--source", type=Path, default=ROOT, metavar="DIR",
                        help="run the server from this source tree (another checkout, to "
                             "compare code); the results are printed, not recorded")
    parser.add_argument("--memory", action="store_true",
                        help="memory per idle socket only (1k/5k/10k), with --baseline beside")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="with --memory: also a server from this source tree")
    parser.add_argument("--breakdown", action="store_true",
                        help="with --memory: what each socket's objects cost (tracemalloc)")
    args = parser.parse_args()
    if args.memory:
        memory.report(asyncio.run(memory.run_memory(args, make_database, seed)), MEMORY_RESULTS)
        return 0
    results = asyncio.run(run(args))
    command = "python bench/fanout.py" + (" --quick" if args.quick else "")
    if args.source.resolve() == ROOT:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2))
        if not args.quick:
            write_doc(results, command)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
