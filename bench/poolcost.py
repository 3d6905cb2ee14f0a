"""What a connection checkout costs the client: asyncpg's pool, ours, and bare connections.

    python bench/poolcost.py                 # ~20 s; PostgreSQL at 127.0.0.1:5432 (trust)
    python bench/poolcost.py --rounds 10 --calls 20000 --concurrency 32

Every booking checks a connection out of the server's pool once, runs one statement and gives
the connection back. This measures the client's CPU (this process's user + system time) per
`SELECT $1::int` through each way of getting a connection, with `concurrency` tasks sharing 10
connections, on uvloop as the server runs. The variants take turns (order rotated every round)
so that they see the same machine; the figures are medians over rounds, and the ratios are to
bare connections (each task owning one, no pool at all: the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lib import pg  # noqa: E402
from bench.lib.net import require_loopback  # noqa: E402
from realtime.db.pool import Pool  # noqa: E402

QUERY = "SELECT $1::int"
SIZE = 10


async def _no_reset(_conn: asyncpg.Connection) -> None:
    return None


async def run(args: argparse.Namespace) -> None:
    require_loopback(args.dsn)
    asyncpg_default = await asyncpg.create_pool(args.dsn, min_size=SIZE, max_size=SIZE)
    asyncpg_no_reset = await asyncpg.create_pool(args.dsn, min_size=SIZE, max_size=SIZE,
                                                 reset=_no_reset)
    lean = await Pool(args.dsn, SIZE).start()
    bare = [await asyncpg.connect(args.dsn) for _ in range(SIZE)]
    assert asyncpg_default is not None and asyncpg_no_reset is not None

    def through(pool: Any) -> Callable[[], list[Awaitable[None]]]:
        async def worker(n: int) -> None:
            for _ in range(n):
                await pool.fetchval(QUERY, 1)

        per = args.calls // args.concurrency
        return lambda: [worker(per) for _ in range(args.concurrency)]

    def owned() -> list[Awaitable[None]]:
        async def worker(conn: asyncpg.Connection, n: int) -> None:
            for _ in range(n):
                await conn.fetchval(QUERY, 1)

        return [worker(c, args.calls // SIZE) for c in bare]

    variants: dict[str, Callable[[], list[Awaitable[None]]]] = {
        "asyncpg.Pool (default reset)": through(asyncpg_default),
        "asyncpg.Pool (reset=no-op)": through(asyncpg_no_reset),
        "realtime.db.pool.Pool": through(lean),
        "bare connections (floor)": owned,
    }
    cost: dict[str, list[float]] = {name: [] for name in variants}
    rate: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for name in names:  # warm the statement caches
        await asyncio.gather(*variants[name]())
    for r in range(args.rounds):
        print(f"  round {r + 1}/{args.rounds}", end="\r", file=sys.stderr, flush=True)
        for name in names[r % len(names):] + names[:r % len(names)]:
            tasks = variants[name]()
            per_task = args.calls // (SIZE if name.startswith("bare") else args.concurrency)
            calls = per_task * len(tasks)
            c0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*tasks)
            c1, t1 = time.process_time(), time.perf_counter()
            cost[name].append((c1 - c0) / calls * 1e6)
            rate[name].append(calls / (t1 - t0))
    floor = statistics.median(cost["bare connections (floor)"])
    print(f"\n{args.calls} calls of `{QUERY}` per variant and round, {args.rounds} rounds, "
          f"{args.concurrency} tasks, {SIZE} connections; medians:\n")
    print("| way to a connection | client CPU per call | over the floor | calls/s |")
    print("|---|---:|---:|---:|")
    for name in names:
        c = statistics.median(cost[name])
        print(f"| {name} | {c:.1f} µs | {c - floor:+.1f} µs ({c / floor:.2f}x) | "
              f"{statistics.median(rate[name]):,.0f} |")
    for pool in (asyncpg_default, asyncpg_no_reset):
        await pool.close()
    await lean.close()
    for conn in bare:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--dsn", default=pg.DEFAULT_ADMIN_DSN)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
