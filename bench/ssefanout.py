"""Sustained fan-out over WebSocket and over Server-Sent Events, in the same run, alternating.

    python bench/ssefanout.py                              # ~2 minutes, N=2,000
    python bench/ssefanout.py --subscribers 1000 --rounds 2
    git worktree add /tmp/base a66586a && python bench/ssefanout.py --baseline /tmp/base

One server process (`python -m realtime serve`: uvicorn with httptools, uvloop, compression
off) on a scratch database; N WebSocket subscribers on one channel and N SSE readers
(`GET /sse?channel=...`) on another, all open for the whole run, held by 4 client processes
on loopback addresses 127.0.0.2-5 (bench/lib/subscribers.py). Then rounds; in each, for each
load, each transport in turn (the order reversed every round) gets bookings on its channel
(`rt_book` called directly, by 4 bookers) for `--window` seconds, and the turn waits until its
subscribers have every update (or none comes for 10 s), so that no backlog spills into the
next turn. Two loads:

- saturated: bookings offered far above what can be fanned out (10 x 64,000 / N per second);
  the server batches and, where subscribers fall behind, coalesces, as in production under
  overload;
- paced: `--paced-rate` bookings/s, which both transports keep up with: nearly every dispatch
  is one event, so each frame costs its own write (the fan-out's most expensive case).

Per turn: frames/s, the updates that transport's subscribers received (not `subscribed`
events, presence frames or pings) over the time from the first booking to the last delivery;
and frames per second of the server's own CPU (all its threads, from /proc) over the same
time, which the other work on this shared machine disturbs far less. `owed` (bookings x N)
against `frames` shows whether anything was coalesced; `drain_s`, how far behind the bookings
the server ran.

With `--baseline DIR` a second server runs from the source tree DIR (another checkout, e.g.
the commit before a change), on a scratch database of its own, with its own N + N
subscribers, and takes its turns in the same rounds: before and after, side by side, under
the same drift of this shared machine.

Prints the figures (and a Markdown table, as in docs/benchmarks-sse.md) and writes
bench/results/ssefanout.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lib import pg, server  # noqa: E402
from bench.lib.cpu import proc_cpu  # noqa: E402
from bench.lib.net import free_port  # noqa: E402
from bench.lib.subscribers import Workers  # noqa: E402
from realtime.db.connect import dsn_for_database  # noqa: E402
from realtime.httpclient import get  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ssefanout.json"
BOOK_SQL = "SELECT rt_book($1::uuid, 1, NULL, NULL, NULL, '', NULL, NULL)"
# Frames/s a bare broadcast() loop reaches per core on this machine (bench/fanout.py's floor):
# bookings are offered at ten times what that could deliver to N subscribers.
FLOOR_RATE = 64000
BOOKERS = 4
# No new update for this long after the last booking: the rest is not coming (it was
# coalesced). Long, so that a server that stalls for seconds is measured with its stalls.
STALL_SECONDS = 10.0


async def make_database() -> tuple[str, str]:
    from realtime.db.migrate import migrate

    name = f"rt_bench_{uuid.uuid4().hex[:10]}"
    await pg.create_database(pg.admin_dsn(), name)
    dsn = dsn_for_database(pg.admin_dsn(), name)
    await migrate(dsn, echo=lambda _: None)
    return name, dsn


async def seed(dsn: str) -> list[dict[str, Any]]:
    """Two services (one a transport) of 8 slots of large capacity each."""
    from realtime.booking.service import BookingService
    from realtime.db.connect import create_pool

    pool = await create_pool(dsn, 2)
    booking = BookingService(pool)
    vendor = (await booking.create_vendor("Bench"))["id"]
    services = []
    for i in range(2):
        svc = (await booking.create_service(vendor, f"room {i}", False))["id"]
        slots = (await booking.create_slots(svc, [
            {"starts_at": f"2030-05-{d + 1:02d}T09:00:00Z",
             "ends_at": f"2030-05-{d + 1:02d}T10:00:00Z", "capacity": 1_000_000}
            for d in range(8)]))["slots"]
        services.append({"channel": f"service:{svc}", "slots": [s["id"] for s in slots]})
    await pool.close()
    return services


class Variant:
    """One server (a source tree) and its scratch database."""

    def __init__(self, name: str, tree: Path) -> None:
        self.name = name
        self.tree = tree
        self.db = ""
        self.dsn = ""
        self.port = free_port()
        self.proc: Any = None
        self.services: list[dict[str, Any]] = []
        self.pool: Any = None

    async def start(self) -> None:
        import asyncpg

        self.db, self.dsn = await make_database()
        self.services = await seed(self.dsn)
        self._spawn()
        await server.until_ready(self.proc, self.port, within=30)
        self.pool = await asyncpg.create_pool(self.dsn, min_size=2, max_size=4)

    def _spawn(self) -> None:
        logs = ROOT / "bench" / "results" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"ssefanout-{self.name}.log", "wb") as log:
            self.proc = server.start(self.port, server.server_env(self.dsn), source=self.tree,
                                     log=log)

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        server.stop(self.proc)
        if self.db:
            await pg.drop_databases(pg.admin_dsn(), self.db)


async def server_counters(port: int) -> dict[str, float]:
    """Open connections (sockets and streams), slow readers closed, frames coalesced."""
    text = (await get(f"http://127.0.0.1:{port}/metrics", within=10)).body.decode()
    names = {"realtime_ws_connections": "open", "realtime_ws_slow_closes_total": "slow_closes",
             "realtime_ws_frames_coalesced_total": "coalesced"}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            out[names[name]] = float(value)
    return out


def total(counts: list[dict[str, int]], label: str) -> int:
    return sum(c.get(label, 0) for c in counts)


async def burst(variant: Variant, transport: str, workers: Workers, rate: float,
                window: float, subscribers: int) -> dict[str, Any]:
    """Bookings at `rate` on the transport's channel for `window` seconds, then until every
    subscriber has every update: frames/s from the first booking to the last delivery."""
    label = f"{variant.name}/{transport}"
    slots = variant.services[0 if transport == "ws" else 1]["slots"]
    server_before = await server_counters(variant.port)
    before = total(workers.call("counts"), label)
    cpu_before = proc_cpu(variant.proc.pid) or 0.0
    started = time.monotonic()
    booked = 0

    async def book(k: int) -> None:
        # A few bookers in parallel: one alone, waiting for each answer, offers too little.
        nonlocal booked
        i = k
        while (now := time.monotonic()) < started + window:
            await asyncio.sleep(max(0.0, started + i / rate - now))
            await variant.pool.fetchval(BOOK_SQL, slots[i % len(slots)])
            booked += 1
            i += BOOKERS

    await asyncio.gather(*(book(k) for k in range(BOOKERS)))
    booked_at = time.monotonic()
    owed = booked * subscribers
    got, last, cpu = 0, booked_at, 0.0
    while time.monotonic() - last < STALL_SECONDS and got < owed:
        await asyncio.sleep(0.05)
        now_got = total(workers.call("counts"), label) - before
        if now_got > got:
            got, last = now_got, time.monotonic()
            cpu = (proc_cpu(variant.proc.pid) or 0.0) - cpu_before
    load = os.getloadavg()[0]
    server_after = await server_counters(variant.port)
    return {"variant": variant.name, "transport": transport, "bookings": booked,
            "owed": owed, "frames": got, "seconds": round(last - started, 2),
            "frames_per_s": round(got / (last - started)),
            # The server's CPU (all its threads) until the last delivery: what one core of
            # it sustains, whatever else the shared machine ran meanwhile.
            "server_cpu_s": round(cpu, 2), "frames_per_cpu_s": round(got / max(cpu, 1e-3)),
            # How long after the last booking the last update arrived: well above zero, or
            # the offered load did not saturate the server and the figure is the offer's.
            "drain_s": round(last - booked_at, 2),
            "load1": round(load, 2), "open_after": int(server_after.get("open", 0)),
            "slow_closes": int(server_after.get("slow_closes", 0)
                               - server_before.get("slow_closes", 0)),
            "coalesced": int(server_after.get("coalesced", 0)
                             - server_before.get("coalesced", 0))}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    variants = [Variant("this", ROOT)]
    if args.baseline:
        variants.append(Variant("baseline", args.baseline))
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "subscribers": args.subscribers, "rounds": args.rounds, "window_s": args.window,
        "variants": {v.name: str(v.tree) for v in variants},
    }
    workers = None
    try:
        for v in variants:
            await v.start()
        workers = Workers(variants[0].port, "/ws")
        for v in variants:
            for transport, service in (("ws", v.services[0]), ("sse", v.services[1])):
                seconds = sum(workers.call("open-on", f"{v.name}/{transport}", transport,
                                           v.port, service["channel"], split=args.subscribers))
                print(f"opened {args.subscribers} {transport} on {v.name} "
                      f"({seconds:.1f} s of client time)", flush=True)
        await asyncio.sleep(2.0)
        rates = {"saturated": max(5.0, 10 * FLOOR_RATE / args.subscribers),
                 "paced": args.paced_rate}
        results["booking_rate"] = rates
        turns = [(v, t) for v in variants for t in ("ws", "sse")]
        bursts = []
        for r in range(args.rounds):
            for phase, rate in rates.items():
                for v, t in (turns if r % 2 == 0 else list(reversed(turns))):
                    b = await burst(v, t, workers, rate, args.window, args.subscribers)
                    b.update(round=r, phase=phase)
                    bursts.append(b)
                    print("burst", b, flush=True)
        results["bursts"] = bursts
        results["summary"] = summarize(bursts, [v.name for v in variants])
    finally:
        if workers is not None:
            workers.stop()
        for v in variants:
            await v.stop()
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=2000,
                        help="subscribers per transport (and per variant)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=4.0,
                        help="seconds of bookings per turn")
    parser.add_argument("--paced-rate", type=float, default=20.0,
                        help="bookings/s of the paced turns, which both transports keep up "
                             "with (default: %(default)s)")
    parser.add_argument("--baseline", default="",
                        help="a source tree to run a second server from, side by side")
    args = parser.parse_args()
    if args.baseline:
        args.baseline = Path(args.baseline).resolve()
    results = asyncio.run(run(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(json.dumps(results["summary"], indent=2))
    print(table(results))
    return 0


def summarize(bursts: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Per variant and phase: the median over rounds of each transport's figures, and the
    SSE / WebSocket ratio of each round."""
    out: dict[str, Any] = {}
    for name in names:
        for phase in ("saturated", "paced"):
            mine = [b for b in bursts if b["variant"] == name and b["phase"] == phase]
            fig: dict[str, Any] = {}
            for key in ("frames_per_s", "frames_per_cpu_s"):
                ws = [b[key] for b in mine if b["transport"] == "ws"]
                sse = [b[key] for b in mine if b["transport"] == "sse"]
                fig[f"ws_{key}"] = round(statistics.median(ws))
                fig[f"sse_{key}"] = round(statistics.median(sse))
                fig[f"ratio_{key}"] = [round(b / max(1, a), 2) for a, b in zip(ws, sse, strict=True)]
                fig[f"median_ratio_{key}"] = statistics.median(fig[f"ratio_{key}"])
            fig["incomplete"] = sum(1 for b in mine if b["frames"] < b["owed"])
            out[f"{name}/{phase}"] = fig
    return out


def table(results: dict[str, Any]) -> str:
    """The summary as the Markdown table of docs/benchmarks-sse.md."""
    rows = ["| server, load | WebSocket frames/s | SSE frames/s | SSE / WebSocket, median "
            "(each round) | per server CPU-second: WebSocket, SSE, SSE / WebSocket |",
            "|---|---|---|---|---|"]
    for name, s in results["summary"].items():
        rounds = ", ".join(f"{r:.2f}" for r in s["ratio_frames_per_s"])
        cpu_rounds = ", ".join(f"{r:.2f}" for r in s["ratio_frames_per_cpu_s"])
        rows.append(
            f"| {name} | {s['ws_frames_per_s']:,} | {s['sse_frames_per_s']:,} | "
            f"**{s['median_ratio_frames_per_s']:.2f}** ({rounds}) | "
            f"{s['ws_frames_per_cpu_s']:,}, {s['sse_frames_per_cpu_s']:,}, "
            f"**{s['median_ratio_frames_per_cpu_s']:.2f}** ({cpu_rounds}) |")
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
