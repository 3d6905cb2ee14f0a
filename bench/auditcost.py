"""What naming the actor and request id on the audit trail costs a booking in PostgreSQL.

    python bench/auditcost.py                 # ~1 min; PostgreSQL at 127.0.0.1:5432 (trust)
    python bench/auditcost.py --rounds 20 --bookings 2000

The server books through rt_book's overload that takes the actor and request id (migration
0004: it sets them for the transaction, then calls 0002's rt_book, whose audit row picks them
up). This times both on one connection of a scratch database, side by side: each round books
one unit of each of `bookings` slots in one statement per variant (so the commit, the network
and the client are outside the figure: what is left is the functions' work), the variants
taking turns in reversed order every round. It reports the median microseconds per booking and the
ratio to the call without them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lib import pg  # noqa: E402
from bench.lib.net import require_loopback  # noqa: E402
from realtime.db.migrate import migrate  # noqa: E402

# One booking of each slot per statement: booking one slot many times in one transaction
# would time the growing chain of its row's versions instead.
VARIANTS = {
    "rt_book (0002: no actor, no request id)":
        "SELECT count(rt_book(s, 1, 'ann', NULL, NULL, '', NULL, NULL)) FROM unnest($1::uuid[]) s",
    "rt_book (0004: actor and request id)":
        "SELECT count(rt_book(s, 1, 'ann', NULL, NULL, '', NULL, NULL, 'ann', "
        "'0123456789abcdef0123456789abcdef')) FROM unnest($1::uuid[]) s",
}


async def run(args: argparse.Namespace) -> None:
    require_loopback(args.admin_dsn)
    name = f"rt_bench_audit_{uuid.uuid4().hex[:8]}"
    await pg.create_database(args.admin_dsn, name)
    dsn = args.admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    try:
        await migrate(dsn, echo=lambda _line: None)
        # Never full: each slot is booked twice a round.
        slots = await pg.seed_slots(dsn, args.bookings, 2 * args.rounds + 2)
        conn = await asyncpg.connect(dsn)
        try:
            costs: dict[str, list[float]] = {v: [] for v in VARIANTS}
            names = list(VARIANTS)
            for sql in VARIANTS.values():  # warm the plans
                await conn.fetchval(sql, slots[:50])
            for r in range(args.rounds):
                print(f"  round {r + 1}/{args.rounds}", end="\r", file=sys.stderr, flush=True)
                for variant in (names if r % 2 == 0 else names[::-1]):
                    started = time.perf_counter()
                    await conn.fetchval(VARIANTS[variant], slots)
                    costs[variant].append((time.perf_counter() - started) / args.bookings)
        finally:
            await conn.close()
    finally:
        await pg.drop_databases(args.admin_dsn, name)
    load = os.getloadavg()
    base = statistics.median(costs[names[0]])
    print(f"{args.rounds} rounds of {args.bookings} bookings per variant, in one statement each "
          f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}):", file=sys.stderr)
    for variant in names:
        median = statistics.median(costs[variant])
        print(f"  {variant:<42} {median * 1e6:7.1f} µs per booking  ({median / base:.2f}x)")
    print(json.dumps({v: statistics.median(c) * 1e6 for v, c in costs.items()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--bookings", type=int, default=2000, help="slots, each booked once a round")
    ap.add_argument("--admin-dsn", default=pg.admin_dsn())
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
