"""A/B of server settings on this noisy machine: servers side by side, taking turns.

    python bench/pair.py hot "REALTIME_POOL_SIZE=10" "REALTIME_POOL_SIZE=16"
    python bench/pair.py uncontended "" "SOME_ENV=1" --rounds 10 --burst 1.5
    git worktree add /tmp/base HEAD~1 && python bench/pair.py uncontended "@/tmp/base" ""
    python bench/pair.py uncontended "@/tmp/base" "" --rate 20    # light load, paced

Runs of `bench/booking.py` minutes apart differ by more than most changes are worth (the
machine's speed drifts: see docs/benchmarks.md). Here every variant gets its own server
process on its own scratch database (cloned from one template, so that their event pipelines
do not wake each other), all started at once; the load then alternates between them in short
bursts (order reversed every round), so that each sees the same drift. Per variant it reports
bookings/s, the server's and PostgreSQL's CPU per booking (from /proc; all of PostgreSQL's
processes, since only one variant runs at a time) and latency.

The load: 32 keep-alive connections from this process posting `POST /api/bookings`, on one
slot (hot) or spread over 1,000 slots of large capacity (uncontended), each request as soon as
the last is answered (saturating) or, with `--rate R`, paced to R bookings/s in all (0: none).
Only 201s count. Meanwhile a probe books a slot of another service, waiting a random 0-40 ms
(`--probe-gap`) between bookings so that it does not fall into step with the server's event
drains, and times, on a WebSocket subscribed to that service, how long after its 201 the
booking's `availability:updated` arrives (p50/p95/p99): the delivery delay a watcher sees
while the server is saturated with bookings. The probe's own bookings (about 40/s) are the
only load with `--rate 0`. Per variant it also reports, from the server's /metrics during its
own turns, its sequencer transactions per second and the event pipeline's connection loans
(drains and reads: `realtime_db_queries_total{kind="loan"}`) per sequencer call; and the load
average of the machine at the start and the end of the run.
Variants are lists of NAME=VALUE environment settings for the server, "" for none; a word
"@DIR" runs that variant's server from the source tree DIR (another checkout, to compare code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lib import pg, server  # noqa: E402
from bench.lib.cpu import postgres_cpu, proc_cpu  # noqa: E402
from bench.lib.load import booking_requests  # noqa: E402
from bench.lib.net import free_port, require_loopback  # noqa: E402
from bench.lib.stats import percentile  # noqa: E402
from realtime.db.connect import dsn_for_database as dsn_for  # noqa: E402
from realtime.db.migrate import migrate  # noqa: E402
from realtime.httpclient import Connection, Response, get  # noqa: E402

SLOTS = 1000
CAPACITY = 1_000_000
CONNECTIONS = 32


async def make_template(admin: str, name: str) -> None:
    await pg.create_database(admin, name)
    dsn = dsn_for(admin, name)
    await migrate(dsn, echo=lambda _line: None)
    conn = await asyncpg.connect(dsn)
    try:
        vendor = await conn.fetchval("INSERT INTO rt_vendors (name) VALUES ('pair') RETURNING id")
        service = await conn.fetchval(
            "INSERT INTO rt_services (vendor_id, name) VALUES ($1, 'pair') RETURNING id", vendor)
        await conn.execute(
            """SELECT rt_create_slots($1, (SELECT jsonb_agg(jsonb_build_object(
                   'starts_at', now() + make_interval(hours => g),
                   'ends_at', now() + make_interval(hours => g, mins => 30),
                   'capacity', $2::int)) FROM generate_series(1, $3::int) g))""",
            service, CAPACITY, SLOTS)
        probe = await conn.fetchval(
            "INSERT INTO rt_services (vendor_id, name) VALUES ($1, 'probe') RETURNING id", vendor)
        await conn.execute(
            """SELECT rt_create_slots($1, jsonb_build_array(jsonb_build_object(
                   'starts_at', now() + interval '1 day', 'ends_at', now() + interval '25 hours',
                   'capacity', $2::int)))""", probe, CAPACITY)
        await conn.execute("SELECT rt_sequence_events(100000)")
    finally:
        await conn.close()


async def one_connection(port: int, stop: float, requests: list[bytes], lat: list[float]) -> int:
    """Bookings back to back on one keep-alive connection until `stop`; the 201s."""
    conn = await Connection("127.0.0.1", port).open()
    booked = 0
    sent = 0.0

    def next_request(resp: Response | None) -> bytes | None:
        nonlocal booked, sent
        now = time.monotonic()
        if resp is not None and resp.status == 201:
            booked += 1
            lat.append(now - sent)
        if now >= stop:
            return None
        sent = now
        return random.choice(requests)

    try:
        await conn.cycle(next_request)
    finally:
        conn.close()
    return booked


async def paced_connection(port: int, stop: float, requests: list[bytes], lat: list[float],
                           rate: float) -> int:
    """Bookings on one keep-alive connection at `rate` per second (from a random phase) until
    `stop`; the 201s."""
    conn = await Connection("127.0.0.1", port).open()
    booked = 0
    due = time.monotonic() + random.random() / rate
    try:
        while (now := time.monotonic()) < stop:
            if due > now:
                await asyncio.sleep(due - now)
            due += 1 / rate
            sent = time.monotonic()
            if (await conn.exchange(random.choice(requests))).status == 201:
                booked += 1
                lat.append(time.monotonic() - sent)
    finally:
        conn.close()
    return booked


async def load(port: int, stop: float, requests: list[bytes], lat: list[float],
               rate: float | None) -> int:
    """The 201s of CONNECTIONS connections, saturating (`rate` None) or paced."""
    if rate == 0:
        return 0
    counts = await asyncio.gather(*(
        one_connection(port, stop, requests, lat) if rate is None
        else paced_connection(port, stop, requests, lat, rate / CONNECTIONS)
        for _ in range(CONNECTIONS)))
    return sum(counts)


async def probe(port: int, service: str, slot: str, stop: float, out: list[float],
                gap: float) -> None:
    """Books `slot` after a random 0..`gap` s pause, again and again; the time from each 201
    to its frame on a subscribed socket."""
    import websockets

    http = Connection("127.0.0.1", port)
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "id": "p", "channel": f"service:{service}"}))
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
        while time.monotonic() < stop:
            answer = (await http.request("POST", "/api/bookings", {
                "slot_id": slot, "customer_id": "probe"})).json()
            t = time.perf_counter()
            if "slot" not in answer:
                continue
            version = answer["slot"]["version"]
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame.get("type") == "availability:updated" and (
                        frame["slot"]["version"] >= version):
                    break
            out.append(time.perf_counter() - t)
            await asyncio.sleep(random.uniform(0, gap))
    http.close()


PIPELINE = re.compile(rb'^(realtime_sequencer_calls_total|realtime_db_queries_total\{kind="loan"\}'
                      rb'|realtime_events_read_total) ([0-9.e+]+)$', re.M)


async def pipeline_counts(port: int) -> list[float]:
    """The server's sequencer calls, pipeline loans and events read so far (/metrics)."""
    found = {m[1]: float(m[2]) for m in PIPELINE.finditer((await get(
        f"http://127.0.0.1:{port}/metrics")).body)}
    return [found.get(k, 0.0) for k in (b"realtime_sequencer_calls_total",
                                         b'realtime_db_queries_total{kind="loan"}',
                                         b"realtime_events_read_total")]


def spread(values: list[float]) -> str:
    """p50/p95/p99 of delays in seconds, in ms."""
    v = sorted(values)
    return "/".join(f"{percentile(v, q) * 1e3:.1f}" for q in (0.5, 0.95, 0.99))


async def run(args: argparse.Namespace) -> None:
    require_loopback(args.admin_dsn)
    tag = uuid.uuid4().hex[:8]
    template = f"rt_pair_{tag}"
    names = [f"rt_pair_{tag}_{k}" for k in range(len(args.variants))]
    servers: list[subprocess.Popen[bytes]] = []
    try:
        await make_template(args.admin_dsn, template)
        for name in names:
            await pg.create_database(args.admin_dsn, name, template=template)
        conn = await asyncpg.connect(dsn_for(args.admin_dsn, template))
        try:
            order = "DESC LIMIT 1" if args.workload == "hot" else ""
            slots = [str(r[0]) for r in await conn.fetch(
                f"""SELECT s.id FROM rt_slots s JOIN rt_services v ON v.id = s.service_id
                    WHERE v.name = 'pair' ORDER BY s.starts_at {order}""")]
            probe_service, probe_slot = (str(x) for x in await conn.fetchrow(
                """SELECT v.id, s.id FROM rt_slots s JOIN rt_services v ON v.id = s.service_id
                   WHERE v.name = 'probe'"""))
        finally:
            await conn.close()
        ports = []
        for name, variant in zip(names, args.variants, strict=True):
            port = free_port()
            words = variant.split()
            sources = [ROOT / w[1:] for w in words if w.startswith("@")]  # ROOT / "/abs" is /abs
            extra = dict(w.split("=", 1) for w in words if not w.startswith("@"))
            source = sources[-1] if sources else ROOT
            if not (source / "realtime" / "__main__.py").exists():
                raise SystemExit(f"{source} is not a source tree of this project")
            env = server.server_env(dsn_for(args.admin_dsn, name), extra)
            servers.append(server.start(port, env, source=source))
            ports.append(port)
        for proc, port in zip(servers, ports, strict=True):
            await server.until_ready(proc, port)
        await asyncio.sleep(1.0)
        load_before = os.getloadavg()
        requests = [[r.encode("latin-1") for r in booking_requests(port, slots, "pair")]
                    for port in ports]
        n = len(ports)
        booked = [0] * n
        server_cpu, pg_cpu = [0.0] * n, [0.0] * n
        lats: list[list[float]] = [[] for _ in range(n)]
        delays: list[list[float]] = [[] for _ in range(n)]
        pipeline = [[0.0, 0.0, 0.0] for _ in range(n)]  # during the variant's own turns
        for r in range(args.rounds):
            print(f"  round {r + 1}/{args.rounds}", end="\r", flush=True)
            for k in (range(n) if r % 2 == 0 else reversed(range(n))):
                before = await pipeline_counts(ports[k])
                s0, p0 = proc_cpu(servers[k].pid) or 0.0, postgres_cpu()
                stop = time.monotonic() + args.burst
                count, _ = await asyncio.gather(
                    load(ports[k], stop, requests[k], lats[k], args.rate),
                    probe(ports[k], probe_service, probe_slot, stop, delays[k], args.probe_gap)
                    if args.probe else asyncio.sleep(0))
                server_cpu[k] += (proc_cpu(servers[k].pid) or 0.0) - s0
                pg_cpu[k] += sum(v - p0[pid] for pid, v in postgres_cpu().items() if pid in p0)
                booked[k] += count
                after = await pipeline_counts(ports[k])
                pipeline[k] = [t + b - a for t, a, b in zip(pipeline[k], before, after, strict=True)]
                await asyncio.sleep(0.2)
        print(" " * 30, end="\r")
        pace = "saturating" if args.rate is None else f"paced at {args.rate:g}/s"
        print(f"{args.workload}, {args.rounds} rounds of {args.burst} s per variant, "
              f"{CONNECTIONS} connections {pace}; probe gap 0-{args.probe_gap * 1e3:g} ms; "
              "load average %.2f %.2f %.2f before, %.2f %.2f %.2f after:"
              % (*load_before, *os.getloadavg()))
        base = booked[0] or 1
        for k, variant in enumerate(args.variants):
            lat = sorted(lats[k])
            # The probe's bookings count too: with `--rate 0` they are all there is.
            per = 1e6 / max(1, booked[k] + len(delays[k]))
            p50, p99 = percentile(lat, 0.5) * 1e3, percentile(lat, 0.99) * 1e3
            calls, loans, events = pipeline[k]
            print(f"  {variant or '(defaults)':40s} {booked[k] / (args.rounds * args.burst):7,.0f}"
                  f"/s ({booked[k] / base:.3f}x)  server {server_cpu[k] * per:4.0f} µs  "
                  f"postgres {pg_cpu[k] * per:4.0f} µs per booking  "
                  f"p50 {p50:.1f} p99 {p99:.1f} ms\n  {'':40s} 201->frame p50/p95/p99 "
                  f"{spread(delays[k])} ms ({len(delays[k])} probes)  "
                  f"{calls / (args.rounds * args.burst):.0f} sequencer calls/s, "
                  f"{loans / max(1, calls):.2f} loans and {events / max(1, calls):.1f} events "
                  "per call")
    finally:
        server.stop(*servers)
        await pg.drop_databases(args.admin_dsn, *names, template)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("workload", choices=["hot", "uncontended"])
    ap.add_argument("variants", nargs="+", help='server environment, e.g. "REALTIME_POOL_SIZE=16"')
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--burst", type=float, default=1.5, help="seconds per turn")
    ap.add_argument("--rate", type=float, default=None,
                    help="bookings/s in all, paced (default: as fast as answered; 0: none)")
    ap.add_argument("--probe-gap", type=lambda ms: float(ms) / 1e3, default=0.04,
                    help="the probe's pause between bookings, random up to this many ms")
    ap.add_argument("--no-probe", dest="probe", action="store_false",
                    help="no WebSocket probe (for a variant that broadcasts nothing)")
    ap.add_argument("--admin-dsn", default=pg.admin_dsn())
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
