"""A/B of server settings on this noisy machine: servers side by side, taking turns.

    python bench/pair.py hot "REALTIME_POOL_SIZE=10" "REALTIME_POOL_SIZE=16"
    python bench/pair.py uncontended "" "SOME_ENV=1" --rounds 10 --burst 1.5
    git worktree add /tmp/base HEAD~1 && python bench/pair.py uncontended "@/tmp/base" ""

Runs of `bench/booking.py` minutes apart differ by more than most changes are worth (the
machine's speed drifts: see docs/benchmarks.md). Here every variant gets its own server
process on its own scratch database (cloned from one template, so that their event pipelines
do not wake each other), all started at once; the load then alternates between them in short
bursts (order reversed every round), so that each sees the same drift. Per variant it reports
bookings/s, the server's and PostgreSQL's CPU per booking (from /proc; all of PostgreSQL's
processes, since only one variant runs at a time) and latency.

The load: 32 keep-alive connections from this process posting `POST /api/bookings`, on one
slot (hot) or spread over 1,000 slots of large capacity (uncontended). Only 201s count.
Meanwhile a probe books a slot of another service every 50 ms and times, on a WebSocket
subscribed to that service, how long after its 201 the booking's `availability:updated`
arrives: the delivery delay a watcher sees while the server is saturated with bookings.
Variants are lists of NAME=VALUE environment settings for the server, "" for none; a word
"@DIR" runs that variant's server from the source tree DIR (another checkout, to compare code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.booking import _postgres_cpu, _proc_cpu, free_port, require_loopback  # noqa: E402
from realtime.db.connect import dsn_for_database as dsn_for  # noqa: E402
from realtime.db.migrate import migrate  # noqa: E402

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SLOTS = 1000
CAPACITY = 1_000_000
CONNECTIONS = 32


def start_server(env: dict[str, str], port: int, source: Path = ROOT) -> subprocess.Popen[bytes]:
    # `python -m` puts the working directory first on sys.path: it decides which code runs.
    return subprocess.Popen([sys.executable, "-m", "realtime", "serve", "--port", str(port)],
                            cwd=source, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def make_template(admin: str, name: str) -> None:
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
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


async def drop(admin: str, names: list[str]) -> None:
    conn = await asyncpg.connect(admin)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def booking_request(slot: str, customer: str) -> bytes:
    body = json.dumps({"slot_id": slot, "customer_id": customer}).encode()
    return (b"POST /api/bookings HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: "
            b"application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(head, body) of one HTTP/1.1 response with a content-length."""
    head = await reader.readuntil(b"\r\n\r\n")
    i = head.lower().index(b"content-length:")
    return head, await reader.readexactly(int(head[i + 15:head.index(b"\r\n", i)]))


async def one_connection(port: int, stop: float, requests: list[bytes], lat: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    booked = 0
    try:
        while time.monotonic() < stop:
            t = time.perf_counter()
            writer.write(random.choice(requests))
            head, _ = await read_response(reader)
            if head.startswith(b"HTTP/1.1 201"):
                booked += 1
                lat.append(time.perf_counter() - t)
    finally:
        writer.close()
    return booked


async def post(port: int, request: bytes) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        _, body = await read_response(reader)
        answer: dict[str, Any] = json.loads(body)
        return answer
    finally:
        writer.close()


async def probe(port: int, service: str, slot: str, stop: float, out: list[float]) -> None:
    """Books `slot` every 50 ms; the time from each 201 to its frame on a subscribed socket."""
    import websockets

    request = booking_request(slot, "probe")
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "id": "p", "channel": f"service:{service}"}))
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
        while time.monotonic() < stop:
            answer = await post(port, request)
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
            await asyncio.sleep(0.05)


async def run(args: argparse.Namespace) -> None:
    require_loopback(args.admin_dsn)
    tag = uuid.uuid4().hex[:8]
    template = f"rt_pair_{tag}"
    names = [f"rt_pair_{tag}_{k}" for k in range(len(args.variants))]
    servers: list[subprocess.Popen[bytes]] = []
    try:
        await make_template(args.admin_dsn, template)
        conn = await asyncpg.connect(args.admin_dsn)
        try:
            for name in names:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await conn.close()
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
            env = {**os.environ, "DATABASE_URL": dsn_for(args.admin_dsn, name),
                   "REALTIME_RATE_LIMIT": "0", "LOG_LEVEL": "warning"}
            words = variant.split()
            sources = [ROOT / w[1:] for w in words if w.startswith("@")]  # ROOT / "/abs" is /abs
            env.update(w.split("=", 1) for w in words if not w.startswith("@"))
            source = sources[-1] if sources else ROOT
            if not (source / "realtime" / "__main__.py").exists():
                raise SystemExit(f"{source} is not a source tree of this project")
            servers.append(start_server(env, port, source))
            ports.append(port)
        for port in ports:
            for _ in range(200):
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", port)
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        requests = [booking_request(slot, "pair") for slot in slots]
        n = len(ports)
        booked = [0] * n
        server_cpu, pg_cpu = [0.0] * n, [0.0] * n
        lats: list[list[float]] = [[] for _ in range(n)]
        delays: list[list[float]] = [[] for _ in range(n)]
        for r in range(args.rounds):
            print(f"  round {r + 1}/{args.rounds}", end="\r", flush=True)
            for k in (range(n) if r % 2 == 0 else reversed(range(n))):
                s0, p0 = _proc_cpu(servers[k].pid) or 0.0, _postgres_cpu()
                stop = time.monotonic() + args.burst
                counts, _ = await asyncio.gather(
                    asyncio.gather(*(one_connection(ports[k], stop, requests, lats[k])
                                     for _ in range(CONNECTIONS))),
                    probe(ports[k], probe_service, probe_slot, stop, delays[k])
                    if args.probe else asyncio.sleep(0))
                server_cpu[k] += (_proc_cpu(servers[k].pid) or 0.0) - s0
                pg_cpu[k] += sum(v - p0[pid] for pid, v in _postgres_cpu().items() if pid in p0)
                booked[k] += sum(counts)
                await asyncio.sleep(0.2)
        print(" " * 30, end="\r")
        print(f"{args.workload}, {args.rounds} rounds of {args.burst} s per variant, "
              f"{CONNECTIONS} connections:")
        base = booked[0] or 1
        for k, variant in enumerate(args.variants):
            lat = sorted(lats[k])
            per = 1e6 / max(1, booked[k])
            p50 = lat[len(lat) // 2] * 1e3 if lat else float("nan")
            p99 = lat[int(len(lat) * 0.99)] * 1e3 if lat else float("nan")
            delay = sorted(delays[k])
            d50 = delay[len(delay) // 2] * 1e3 if delay else float("nan")
            d90 = delay[int(len(delay) * 0.9)] * 1e3 if delay else float("nan")
            print(f"  {variant or '(defaults)':40s} {booked[k] / (args.rounds * args.burst):7,.0f}"
                  f"/s ({booked[k] / base:.2f}x)  server {server_cpu[k] * per:4.0f} µs  "
                  f"postgres {pg_cpu[k] * per:4.0f} µs per booking  "
                  f"p50 {p50:.1f} p99 {p99:.1f} ms  201->frame p50 {d50:.1f} p90 {d90:.1f} ms")
    finally:
        for proc in servers:
            proc.send_signal(signal.SIGTERM)
        for proc in servers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        await drop(args.admin_dsn, [*names, template])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("workload", choices=["hot", "uncontended"])
    ap.add_argument("variants", nargs="+", help='server environment, e.g. "REALTIME_POOL_SIZE=16"')
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--burst", type=float, default=1.5, help="seconds per turn")
    ap.add_argument("--no-probe", dest="probe", action="store_false",
                    help="no WebSocket probe (for a variant that broadcasts nothing)")
    ap.add_argument("--admin-dsn", default=os.environ.get("BENCH_ADMIN_DSN", ADMIN_DSN))
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
