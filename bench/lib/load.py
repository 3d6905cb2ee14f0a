"""bench/booking.py's load: driver processes (`rt_book` from asyncpg connections) and HTTP
generator processes (keep-alive `POST /api/bookings`), each told what to do on stdin.

A worker reads its config as one JSON line, connects, says "ready", waits for "go T_MEASURE
T_END" (monotonic times), runs its connections until T_END counting what finished inside the
measured window, then waits for "close" (the parent reads the CPU counters first: a backend
that exits takes its CPU time out of /proc with it) and writes its results as one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
import uuid
from collections import Counter
from typing import Any

from realtime.httpclient import Connection, Response

BOOK_SQL = "SELECT rt_book($1, 1, $2, NULL, NULL, '', NULL, NULL)"
BOOK_NOTIFY_SQL = "SELECT rt_book($1, 1, $2, NULL, NULL, '', NULL, NULL), pg_notify('bench', 'x')"


def booking_requests(port: int, slots: list[str], customer: str = "bench") -> list[str]:
    """`POST /api/bookings` of each slot, as the text of what a generator sends (latin-1)."""
    reqs = []
    for s in slots:
        body = json.dumps({"slot_id": s, "customer_id": customer}, separators=(",", ":"))
        reqs.append(f"POST /api/bookings HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
                    f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
                    f"\r\n{body}")
    return reqs


async def _http_loop(cfg: dict[str, Any], t_measure: float, t_end: float,
                     lat: list[float], statuses: Counter[int], errors: Counter[str],
                     bodies: dict[int, bytes], total: list[int]) -> None:
    """One keep-alive connection posting bookings back to back until T_END (a new connection
    after a failure): each request is written from the protocol as the last answer arrives,
    so the generator costs the shared cores as little as it can."""
    reqs: list[bytes] = cfg["requests"]
    n = len(reqs)
    pick = random.Random().randrange
    mono = time.monotonic
    sent = 0.0

    def next_request(resp: Response | None) -> bytes | None:
        nonlocal sent
        t1 = mono()
        if resp is not None:
            status = resp.status
            if status in (200, 201):
                total[0] += 1
            if status not in bodies:
                bodies[status] = resp.body[:400]
            if t_measure <= t1 < t_end:
                statuses[status] += 1
                lat.append(t1 - sent)
        if t1 >= t_end:
            return None
        sent = t1
        return reqs[pick(n)]

    conn = Connection("127.0.0.1", cfg["port"])
    while mono() < t_end:
        try:
            await conn.open()
        except OSError as exc:
            errors[type(exc).__name__] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            await conn.cycle(next_request)
        except (ConnectionError, ValueError) as exc:
            errors[type(exc).__name__] += 1
        finally:
            conn.close()


async def _db_loop(cfg: dict[str, Any], conn: Any, t_measure: float, t_end: float,
                   lat: list[float], statuses: Counter[str], errors: Counter[str],
                   total: list[int]) -> None:
    slots = [uuid.UUID(s) for s in cfg["slots"]]
    n = len(slots)
    rnd = random.Random()
    stmt = await conn.prepare(BOOK_NOTIFY_SQL if cfg["notify"] else BOOK_SQL)
    mono = time.monotonic
    while True:
        t0 = mono()
        if t0 >= t_end:
            return
        try:
            result = await stmt.fetchval(slots[rnd.randrange(n)], "bench")
        except Exception as exc:  # counted and reported, the loop goes on
            errors[type(exc).__name__] += 1
            continue
        t1 = mono()
        booked = '"outcome": "booked"' in result
        total[0] += booked
        if t1 >= t_measure and t1 < t_end:
            statuses["booked" if booked else result[:80]] += 1
            lat.append(t1 - t0)


async def worker_main() -> None:
    """A driver or generator process (the protocol is at the top of this module)."""
    loop = asyncio.get_running_loop()
    cfg = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    lat: list[float] = []
    errors: Counter[str] = Counter()
    statuses: Counter[Any] = Counter()
    bodies: dict[int, bytes] = {}
    conns: list[Any] = []
    total = [0]
    if cfg["kind"] == "db":
        import asyncpg

        conns = [await asyncpg.connect(cfg["dsn"], server_settings={
            "application_name": "rt-bench-driver"}) for _ in range(cfg["conns"])]
    else:
        cfg["requests"] = [r.encode("latin-1") for r in cfg["requests"]]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    _, t_measure_s, t_end_s = line.split()
    t_measure, t_end = float(t_measure_s), float(t_end_s)
    if cfg["kind"] == "db":
        loops = [_db_loop(cfg, c, t_measure, t_end, lat, statuses, errors, total)
                 for c in conns]
    else:
        loops = [_http_loop(cfg, t_measure, t_end, lat, statuses, errors, bodies, total)
                 for _ in range(cfg["conns"])]
    try:
        # Bounded: a request that never gets an answer must not hang the run.
        await asyncio.wait_for(asyncio.gather(*loops), t_end - time.monotonic() + 15)
    except TimeoutError:
        errors["timeout at the end of the phase"] += 1
    # Connections stay open until the parent has read the CPU counters: a backend that
    # exits takes its CPU time out of /proc with it.
    await loop.run_in_executor(None, sys.stdin.readline)
    for c in conns:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(c.close(), 5)
    out = {
        "latencies": [round(x * 1000, 3) for x in lat],
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": dict(errors),
        "bodies": {str(k): v.decode("utf-8", "replace") for k, v in bodies.items()},
        "total_bookings": total[0],
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
