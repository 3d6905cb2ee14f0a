"""What server processes cost PostgreSQL: connections, transactions, statements and rows, idle
and per booking, per event batch, per process.

    python bench/pgcost.py                          # ~5 min; PostgreSQL at 127.0.0.1:5432
    python bench/pgcost.py --processes 1,2,4        # ~8 min: the figures in docs/scaling.md

For each number of processes: a fresh database, that many `realtime serve` processes (default
settings, each on its own port), a few WebSocket subscribers on each (one service channel),
slots with room for every booking (no hot slot). Then phases: idle, then bookings at each rate
through HTTP, spread evenly over the processes. PostgreSQL's own statistics say what each phase
cost: transactions and rows of the database (pg_stat_database), updates of the sequencer's and
the doorbell's rows (a drain that numbers events updates `rt_sequencer` once: that count is the
number of event batches), and each process's `/metrics` says what it asked for
(`realtime_db_queries_total{kind}`, `realtime_sequencer_calls_total`). pg_stat_statements is not
used: it needs `shared_preload_libraries`, a server setting this benchmark does not change.

PostgreSQL publishes a backend's counts when it goes idle, at most once a second, and an idle
backend's last counts up to 10 s later: each phase is read after a quiet `--settle` seconds,
and what that quiet time cost (the idle phase's rate) is taken out of the load phases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import websockets

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lib import pg, server  # noqa: E402
from bench.lib.cpu import proc_cpu  # noqa: E402
from bench.lib.net import free_port, require_loopback  # noqa: E402
from realtime.db.connect import dsn_for_database  # noqa: E402
from realtime.httpclient import Client, HttpError, get  # noqa: E402

SLOTS = 200
METRICS = {
    "statements": 'realtime_db_queries_total{kind="statement"}',
    "loans": 'realtime_db_queries_total{kind="loan"}',
    "sequencer_calls": "realtime_sequencer_calls_total",
    "events_read": "realtime_events_read_total",
}
# Database-wide counters, read with the statistics functions (no catalog scan of our own).
DB_COUNTERS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted",
               "tup_updated", "tup_deleted")
TABLES = ("rt_sequencer", "rt_doorbell", "rt_events")


def log(msg: str) -> None:
    print(f"[pgcost {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def scrape(port: int) -> dict[str, float]:
    text = (await get(f"http://127.0.0.1:{port}/metrics", within=10.0)).body.decode()
    out = {}
    for key, name in METRICS.items():
        found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
        out[key] = float(found.group(1)) if found else 0.0
    return out


class Stats:
    """PostgreSQL's counters for one database, through one connection to it (whose own
    transaction per reading is taken out), and the CPU time of the backends serving the
    servers (the machine's PostgreSQL serves others too: only these backends are counted)."""

    def __init__(self, conn: asyncpg.Connection, admin: str, name: str) -> None:
        self.conn = conn
        self.admin, self.name = admin, name
        self.cpu: dict[int, float] = {}
        self.cpu_total = 0.0

    async def backend_cpu(self) -> float:
        """CPU seconds the database's backends used since they were first seen here."""
        mine = self.conn.get_server_pid()
        for pid in await pg.backends(self.admin, self.name) - {mine}:
            now = proc_cpu(pid)
            if now is not None:
                self.cpu_total += now - self.cpu.get(pid, now)
                self.cpu[pid] = now
        return self.cpu_total

    async def read(self, ports: list[int]) -> dict[str, float]:
        db = ", ".join(f"pg_stat_get_db_{c.replace('tup_', 'tuples_')}(d.oid) AS {c}"
                       for c in DB_COUNTERS)
        tables = ", ".join(f"pg_stat_get_tuples_updated('{t}'::regclass) AS {t}_upd"
                           for t in TABLES)
        row = await self.conn.fetchrow(
            f"SELECT {db}, {tables} FROM pg_database d WHERE d.datname = current_database()")
        out = {k: float(v) for k, v in dict(row).items()}
        out["xacts"] = out["xact_commit"] + out["xact_rollback"] - 1  # this reading's own
        out["pg_cpu"] = await self.backend_cpu()
        for scraped in await asyncio.gather(*(scrape(p) for p in ports)):
            for k, v in scraped.items():
                out[k] = out.get(k, 0.0) + v
        out["at"] = time.monotonic()
        return out


async def subscriber(port: int, channel: str, frames: list[int], stop: asyncio.Event) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        await ws.send(orjson.dumps({"type": "subscribe", "id": "1", "channel": channel}))
        while not stop.is_set():
            try:
                await asyncio.wait_for(ws.recv(), 0.5)
                frames[0] += 1
            except TimeoutError:
                pass


async def book_at(rate: float, seconds: float, clients: list[Client], slots: list[str]) -> dict[str, Any]:
    """`rate` bookings a second for `seconds`, round robin over the processes, paced in 10 ms
    ticks (open loop: a late answer does not delay the next request)."""
    statuses: dict[str, int] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def one(client: Client, slot: str, n: int) -> None:
        try:
            resp = await client.request("POST", "/api/bookings",
                                        {"slot_id": slot, "customer_id": f"c{n}"})
            key = str(resp.status)
        except HttpError as exc:
            key = type(exc).__name__
        statuses[key] = statuses.get(key, 0) + 1

    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while (now := loop.time()) < start + seconds:
        due = int((now - start) * rate)
        while sent < due:
            task = asyncio.create_task(one(clients[sent % len(clients)], slots[sent % len(slots)], sent))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.01)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    return {"sent": sent, "statuses": statuses, "elapsed": loop.time() - start}


def per(delta: dict[str, float], key: str, by: float) -> float | None:
    return delta[key] / by if by else None


async def run_processes(n: int, args: argparse.Namespace) -> dict[str, Any]:
    admin = pg.admin_dsn()
    name = f"bench_pgcost_{os.getpid()}_{n}"
    await pg.drop_databases(admin, name)
    await pg.create_database(admin, name)
    dsn = dsn_for_database(admin, name)
    env = server.server_env(dsn)
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    clients: list[Client] = []
    stop = asyncio.Event()
    subs: list[asyncio.Task[None]] = []
    frames = [0]
    try:
        for _ in range(n):  # one at a time: the first migrates the fresh database
            port = free_port()
            proc = server.start(port, env)
            procs.append(proc)
            ports.append(port)
            await server.until_ready(proc, port)
        slots = await pg.seed_slots(dsn, SLOTS, 1_000_000)
        conn = await asyncpg.connect(dsn)
        service = await conn.fetchval("SELECT service_id::text FROM rt_slots LIMIT 1")
        stats = Stats(conn, admin, name)
        for port in ports:
            for _ in range(args.subscribers):
                subs.append(asyncio.create_task(
                    subscriber(port, f"service:{service}", frames, stop)))
        clients = [Client(f"http://127.0.0.1:{p}", size=64) for p in ports]
        log(f"{n} process(es) on {ports}, {len(subs)} subscribers; warming up")
        # Every pool connection opened and every statement prepared before anything is
        # counted: a new connection's type introspection is thousands of catalog rows.
        await book_at(max(args.rates), args.warmup, clients, slots)
        await asyncio.sleep(args.settle)
        before = await stats.read(ports)
        await asyncio.sleep(args.idle + args.settle)
        after = await stats.read(ports)
        span = after["at"] - before["at"]
        idle = {k: (after[k] - before[k]) / span for k in after if k != "at"}
        log(f"idle: {idle['xacts'] / n:.1f} transactions/s per process")
        phases = []
        for rate in args.rates:
            before = await stats.read(ports)
            load = await book_at(rate, args.seconds, clients, slots)
            await asyncio.sleep(args.settle)
            after = await stats.read(ports)
            span, elapsed = after["at"] - before["at"], load["elapsed"]
            # While the load ran (the quiet time after it taken out), and above idle (what
            # the load added: idle's polls partly give way to the drains the bookings cause).
            during = {k: after[k] - before[k] - idle[k] * (span - elapsed) for k in idle}
            above = {k: after[k] - before[k] - idle[k] * span for k in idle}
            booked = load["statuses"].get("201", 0)
            batches = during["rt_sequencer_upd"]
            # A backend hands NOTIFYs to its LISTENing client inside a transaction of its own:
            # what is neither a pool call nor a listener heartbeat (one a second each).
            notified = during["xacts"] - during["statements"] - during["loans"] - n * elapsed
            phases.append({
                "rate": rate, "booked": booked, "statuses": load["statuses"], "seconds": elapsed,
                "during": during, "above_idle": above,
                "per_second": {k: v / elapsed for k, v in during.items()},
                "per_booking": {k: per(above, k, booked) for k in above},
                "per_batch": {k: per(during, k, batches) for k in during},
                "notification_reads_per_batch": notified / batches if batches else None,
            })
            log(f"{rate:g}/s: {booked} booked, {batches:.0f} batches, {load['statuses']}")
        async with asyncpg.create_pool(admin, min_size=1, max_size=1) as apool:
            conns = await apool.fetch(
                "SELECT application_name, count(*) AS n FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid() GROUP BY 1 ORDER BY 1", name)
        await conn.close()
        return {"processes": n, "subscribers": len(subs), "frames": frames[0],
                "idle_per_second": idle, "phases": phases,
                "connections": {r["application_name"] or "?": r["n"] for r in conns}}
    finally:
        stop.set()
        await asyncio.gather(*subs, return_exceptions=True)
        for c in clients:
            c.close()
        server.stop(*procs)
        await pg.drop_databases(admin, name)


def fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "Idle, per process and second:",
        "",
        "| processes | transactions | statements | loans | of which sequencer calls "
        "| rows fetched | backends' CPU, % of a core |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n, idle = r["processes"], r["idle_per_second"]
        lines.append(f"| {n} | {idle['xacts'] / n:.1f} | {idle['statements'] / n:.1f} "
                     f"| {idle['loans'] / n:.1f} | {idle['sequencer_calls'] / n:.1f} "
                     f"| {idle['tup_fetched'] / n:.0f} | {idle['pg_cpu'] * 100 / n:.2f} |")
    lines += [
        "",
        "Under load (per booking: above idle; per batch: while the load ran):",
        "",
        "| processes | bookings/s | batches/s | events per batch | transactions/s "
        "| backends' CPU, % of a core | per booking: transactions | statements | loans "
        "| rows inserted / updated / fetched | per batch: sequencer calls | event reads "
        "| notification reads |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n = r["processes"]
        for p in r["phases"]:
            s, b, k = p["per_second"], p["per_booking"], p["per_batch"]
            reads = ((p["during"]["loans"] - p["during"]["sequencer_calls"])
                     / p["during"]["rt_sequencer_upd"]) if p["during"]["rt_sequencer_upd"] else None
            lines.append(
                f"| {n} | {p['booked'] / p['seconds']:.0f} "
                f"| {s['rt_sequencer_upd']:.1f} | {fmt(k['rt_events_upd'], 1)} | {s['xacts']:.0f} "
                f"| {s['pg_cpu'] * 100:.1f} "
                f"| {fmt(b['xacts'])} | {fmt(b['statements'])} | {fmt(b['loans'])} "
                f"| {fmt(b['tup_inserted'], 1)} / {fmt(b['tup_updated'], 1)} / "
                f"{fmt(b['tup_fetched'], 1)} | {fmt(k['sequencer_calls'])} | {fmt(reads)} "
                f"| {fmt(p['notification_reads_per_batch'])} |")
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", default="1,2", help="comma-separated process counts")
    ap.add_argument("--rates", default="25,100,400", help="bookings per second, comma-separated")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of each booking rate")
    ap.add_argument("--idle", type=float, default=20.0, help="seconds of the idle phase")
    ap.add_argument("--warmup", type=float, default=5.0,
                    help="seconds of bookings at the highest rate before anything is counted")
    ap.add_argument("--settle", type=float, default=11.0,
                    help="quiet seconds before each reading (PostgreSQL publishes an idle "
                         "backend's counts within 10 s)")
    ap.add_argument("--subscribers", type=int, default=5, help="WebSocket subscribers per process")
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/pgcost.json",
                    help="where the raw results go (default: bench/results/pgcost.json)")
    args = ap.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    require_loopback(pg.admin_dsn())
    conn = await asyncpg.connect(pg.admin_dsn())
    limits = {k: int(await conn.fetchval(f"SHOW {k}"))
              for k in ("max_connections", "superuser_reserved_connections")}
    await conn.close()
    load_before = os.getloadavg()
    results = [await run_processes(int(n), args) for n in args.processes.split(",")]
    out = {"command": "python " + " ".join(["bench/pgcost.py", *sys.argv[1:]]),
           "load_average": {"before": load_before, "after": os.getloadavg()},
           "cpus": os.cpu_count(), "postgres": limits, "results": results}
    args.json.write_text(json.dumps(out, indent=1))
    print(table(results))
    print(f"\nload average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} CPUs); connections per database at the end: "
          + "; ".join(f"{r['processes']} process(es): {r['connections']}" for r in results)
          + f"; PostgreSQL: {limits}")


if __name__ == "__main__":
    asyncio.run(main())
