"""Booking throughput: the HTTP API against the database's own ceiling, in one run.

    python bench/booking.py            # ~5 minutes, all phases, 3 rounds
    python bench/booking.py --quick    # ~1.5 minutes, 4 s per phase, 1 round

What it does, in order, on a scratch database it creates and drops again (even on failure):

1. migrates it and creates one vendor, one service with many slots of large capacity
   ("uncontended": every booking picks a random slot) and one slot of huge capacity ("hot").
2. per workload (uncontended, then hot), in rounds (3 by default), back to back: the
   database's own ceiling, `SELECT rt_book(...)` from N concurrent asyncpg connections
   (spread over two driver processes), and the HTTP API: one `python -m realtime serve`
   process (started fresh for the phase), driven by generator processes that speak
   keep-alive HTTP/1.1 over raw asyncio protocols (uvloop); HTTP goes first in every other
   round. Each round gives a ratio; the summary is the median round. Then, once: the
   ceiling with one `pg_notify` per booking (the design the doorbell avoids), and with the
   sequencer and event reader running beside it, as the server runs them, to show that the
   event pipeline keeps up.
3. GET /healthz through a fresh server: the server's floor cost per request.
4. py-spy samples the server under the uncontended HTTP load (a separate, unmeasured phase).
5. prints a table with the HTTP / database ratios and writes bench/results/booking.json and
   docs/benchmarks-booking.md.

Everything shares the machine's cores: PostgreSQL, the driver or generator processes and the
server. Each phase therefore also records the CPU each party used (from /proc), so that the
figures say where the time went. Only loopback addresses are ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from realtime.booking.gate import WIDTH as GATE_WIDTH  # noqa: E402
from realtime.eventlog.listener import MIN_DRAIN_SPACING  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "booking.json"
DOC = ROOT / "docs" / "benchmarks-booking.md"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SLOTS = 10_000
CAPACITY = 1_000_000  # the schema's CHECK allows at most 1,000,000
BOOK_SQL = "SELECT rt_book($1, 1, $2, NULL, NULL, '', NULL, NULL)"
BOOK_NOTIFY_SQL = "SELECT rt_book($1, 1, $2, NULL, NULL, '', NULL, NULL), pg_notify('bench', 'x')"
CLK_TCK = os.sysconf("SC_CLK_TCK")

TARGET_UNCONTENDED = 0.5
TARGET_HOT = 0.8


# ----------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------

def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def with_database(dsn: str, name: str) -> str:
    p = urlsplit(dsn)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


def require_loopback(dsn: str) -> None:
    host = urlsplit(dsn).hostname or "127.0.0.1"
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"refusing a non-loopback database host {host!r}: this benchmark only "
                     "talks to 127.0.0.1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


# ----------------------------------------------------------------------------------------
# CPU accounting from /proc: who used the cores during a measured window
# ----------------------------------------------------------------------------------------

def _proc_times(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of a process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def _proc_cpu(pid: int) -> float | None:
    t = _proc_times(pid)
    return None if t is None else t[0] + t[1]


def _postgres_cpu() -> dict[int, float]:
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", "rb") as f:
                if f.read().strip() != b"postgres":
                    continue
        except OSError:
            continue
        cpu = _proc_cpu(int(entry))
        if cpu is not None:
            out[int(entry)] = cpu
    return out


def _machine_busy() -> tuple[float, float, float]:
    """(busy, total, stolen) CPU seconds of the machine; stolen is time the hypervisor gave
    this VM's CPUs to someone else (counted as busy: nobody here could use it)."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / CLK_TCK, sum(parts[:8]) / CLK_TCK, parts[7] / CLK_TCK


class CpuWindow:
    """Cores used between start() and stop() by named process groups, by PostgreSQL (the
    backends of the scratch database; the shared WAL writer, checkpointer and autovacuum
    count as "other"), by the whole machine, stolen by the hypervisor ("steal"), and by
    everything else ("other")."""

    def __init__(self, groups: dict[str, list[int]], own_backends: set[int]) -> None:
        self.groups = groups
        self.own = own_backends

    def _snap(self) -> dict[str, Any]:
        return {
            "at": time.monotonic(),
            "groups": {g: {p: _proc_times(p) for p in pids} for g, pids in self.groups.items()},
            "postgres": _postgres_cpu(),
            "machine": _machine_busy(),
        }

    def start(self) -> None:
        self.a = self._snap()

    def stop(self) -> dict[str, float]:
        b = self._snap()
        wall = b["at"] - self.a["at"]
        cores: dict[str, float] = {}
        kernel: dict[str, float] = {}
        for g in self.groups:
            used = system = 0.0
            for p, before in self.a["groups"][g].items():
                after = b["groups"][g].get(p)
                if before is not None and after is not None:
                    used += after[0] + after[1] - before[0] - before[1]
                    system += after[1] - before[1]
            cores[g] = used / wall
            kernel[g] = system / wall
        pg = sum(v - self.a["postgres"].get(p, 0.0) for p, v in b["postgres"].items()
                 if p in self.own)
        cores["postgres"] = pg / wall
        busy = b["machine"][0] - self.a["machine"][0]
        cores["steal"] = (b["machine"][2] - self.a["machine"][2]) / wall
        cores["machine"] = busy / wall
        cores["other"] = max(0.0, cores["machine"] - sum(
            v for k, v in cores.items() if k != "machine"))
        out = {k: round(v, 3) for k, v in cores.items()}
        if "server" in kernel:
            out["server_kernel"] = round(kernel["server"], 3)
        return out


# ----------------------------------------------------------------------------------------
# worker processes: database drivers and HTTP generators
# ----------------------------------------------------------------------------------------

class HttpConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, status code only."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.fut: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.first_bodies: dict[int, bytes] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.fut is None:
            return
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end]).lower()
        i = head.find(b"\r\ncontent-length:")
        if i < 0:
            self._fail(ConnectionError("response without content-length"))
            return
        j = head.find(b"\r\n", i + 2)
        length = int(head[i + 17:j if j > 0 else len(head)])
        total = end + 4 + length
        if len(buf) < total:
            return
        status = int(buf[9:12])
        if status not in self.first_bodies:
            self.first_bodies[status] = bytes(buf[end + 4:total][:400])
        del buf[:total]
        fut, self.fut = self.fut, None
        fut.set_result(status)

    def _fail(self, exc: BaseException) -> None:
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(exc)
        self.fut = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._fail(ConnectionError(f"connection lost: {exc}"))


async def _http_loop(cfg: dict[str, Any], t_measure: float, t_end: float,
                     lat: list[float], statuses: Counter[int], errors: Counter[str],
                     bodies: dict[int, bytes], total: list[int]) -> None:
    loop = asyncio.get_running_loop()
    reqs: list[bytes] = cfg["requests"]
    n = len(reqs)
    rnd = random.Random()
    mono = time.monotonic
    while mono() < t_end:
        try:
            transport, proto = await loop.create_connection(HttpConn, "127.0.0.1", cfg["port"])
        except OSError as exc:
            errors[type(exc).__name__] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while True:
                t0 = mono()
                if t0 >= t_end:
                    return
                fut: asyncio.Future[int] = loop.create_future()
                proto.fut = fut
                transport.write(reqs[rnd.randrange(n)])
                status = await fut
                t1 = mono()
                if status in (200, 201):
                    total[0] += 1
                if t1 >= t_measure and t1 < t_end:
                    statuses[status] += 1
                    lat.append(t1 - t0)
        except ConnectionError as exc:
            errors[type(exc).__name__] += 1
        finally:
            for k, v in proto.first_bodies.items():
                bodies.setdefault(k, v)
            transport.close()


async def _db_loop(cfg: dict[str, Any], conn: Any, t_measure: float, t_end: float,
                   lat: list[float], statuses: Counter[str], errors: Counter[str],
                   total: list[int]) -> None:
    import uuid as _uuid

    slots = [_uuid.UUID(s) for s in cfg["slots"]]
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
    """A driver or generator process: config on stdin, 'ready', then 'go T_MEASURE T_END',
    then 'close' when the parent has read the CPU counters; results on stdout."""
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
    cpu0 = time.process_time()
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
        "cpu_seconds": time.process_time() - cpu0,
        "total_bookings": total[0],
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------------------
# the orchestrator
# ----------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.admin_dsn: str = args.admin_dsn
        self.db_name = f"rt_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.dsn = with_database(self.admin_dsn, self.db_name)
        self.children: list[asyncio.subprocess.Process] = []
        self.server: asyncio.subprocess.Process | None = None
        self.server_log: Any = None
        self.port = 0
        self.uncontended_slots: list[str] = []
        self.hot_slot = ""
        self.phases: list[dict[str, Any]] = []
        self.profile: dict[str, Any] | None = None
        self.created = False

    def say(self, text: str) -> None:
        print(text, flush=True)

    # -- database -------------------------------------------------------------------------

    async def create_database(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{self.db_name}"')
            self.created = True
        finally:
            await conn.close()

    async def drop_database(self) -> None:
        if not self.created:
            return
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            self.created = False
        finally:
            await conn.close()

    async def setup(self) -> None:
        import asyncpg

        from realtime.db.migrate import migrate

        await migrate(self.dsn, echo=lambda _line: None)
        conn = await asyncpg.connect(self.dsn)
        try:
            vendor = await conn.fetchval(
                "INSERT INTO rt_vendors (name) VALUES ('bench vendor') RETURNING id")
            service = await conn.fetchval(
                "INSERT INTO rt_services (vendor_id, name) VALUES ($1, 'bench service') "
                "RETURNING id", vendor)
            start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
            hour = dt.timedelta(hours=1)

            def slot(i: int) -> dict[str, Any]:
                return {"starts_at": (start + i * hour).isoformat(),
                        "ends_at": (start + (i + 1) * hour).isoformat(), "capacity": CAPACITY}

            for first in range(0, SLOTS + 1, 2_000):
                batch = [slot(i) for i in range(first, min(first + 2_000, SLOTS + 1))]
                out = json.loads(await conn.fetchval(
                    "SELECT rt_create_slots($1, $2::jsonb)", service, json.dumps(batch)))
                assert out["outcome"] == "created", out
            ids = await conn.fetch(
                "SELECT id::text FROM rt_slots WHERE service_id = $1 ORDER BY starts_at", service)
            self.hot_slot = ids[0][0]
            self.uncontended_slots = [r[0] for r in ids[1:]]
            self.service_id = str(service)
        finally:
            await conn.close()

    async def xacts(self) -> int:
        """Transactions committed or rolled back in the scratch database so far."""
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            return int(await conn.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
                self.db_name))
        finally:
            await conn.close()

    async def own_backends(self) -> set[int]:
        """The backends serving the scratch database now."""
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                self.db_name)
            return {r[0] for r in rows}
        finally:
            await conn.close()

    async def settle(self) -> None:
        """Between phases: an empty event log, a quiet doorbell, a checkpoint."""
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("TRUNCATE rt_events")
            await conn.execute("UPDATE rt_doorbell SET rung = false")
            await conn.execute("VACUUM (ANALYZE) rt_slots")
            await conn.execute("CHECKPOINT")
        finally:
            await conn.close()

    # -- workers ---------------------------------------------------------------------------

    async def spawn_workers(self, configs: list[dict[str, Any]]) -> list[Any]:
        procs = []
        for cfg in configs:
            p = await asyncio.create_subprocess_exec(
                sys.executable, str(HERE), "--worker",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                limit=64 * 1024 * 1024)
            self.children.append(p)
            procs.append(p)
            assert p.stdin is not None
            p.stdin.write(json.dumps(cfg).encode() + b"\n")
            await p.stdin.drain()
        for p in procs:
            assert p.stdout is not None
            line = await asyncio.wait_for(p.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError(f"worker failed to start: {line!r}")
        return procs

    async def drive(self, label: str, configs: list[dict[str, Any]],
                    extra_pids: dict[str, list[int]] | None = None,
                    during: Any = None, window: Any = None) -> dict[str, Any]:
        """Runs workers through warm-up and the measured window; merges what they saw."""
        xacts_before = await self.xacts()
        procs = await self.spawn_workers(configs)
        warm, dur = self.args.warmup, self.args.duration
        now = time.monotonic()
        t_measure, t_end = now + 0.1 + warm, now + 0.1 + warm + dur
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"go {t_measure} {t_end}\n".encode())
            await p.stdin.drain()
        groups = {"load": [p.pid for p in procs], "bench": [os.getpid()]}
        groups.update(extra_pids or {})
        await asyncio.sleep(max(0.0, t_measure - time.monotonic() - 0.05))
        cpu = CpuWindow(groups, await self.own_backends())
        cpu.start()
        if window is not None:
            window("start")
        await asyncio.sleep(max(0.0, t_end - time.monotonic()))
        cores = cpu.stop()
        if window is not None:
            window("stop")
        for p in procs:
            assert p.stdin is not None
            with contextlib.suppress(OSError):
                p.stdin.write(b"close\n")
                await p.stdin.drain()
        if during is not None:
            await during()
        lat: list[float] = []
        statuses: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        bodies: dict[str, str] = {}
        worker_cpu = 0.0
        total = 0
        for p in procs:
            assert p.stdout is not None
            line = await asyncio.wait_for(p.stdout.readline(), 60)
            await p.wait()
            self.children.remove(p)
            out = json.loads(line)
            lat.extend(out["latencies"])
            statuses.update(out["statuses"])
            errors.update(out["errors"])
            bodies.update(out["bodies"])
            worker_cpu += out["cpu_seconds"]
            total += out["total_bookings"]
        # Backends flush their statistics within about a second of going idle.
        await asyncio.sleep(1.5)
        xacts = await self.xacts() - xacts_before
        lat.sort()
        ok = sum(statuses.get(k, 0) for k in ("booked", "201", "200"))
        result = {
            "label": label,
            "duration_s": dur,
            "requests": len(lat),
            "bookings": ok,
            "bookings_per_s": round(ok / dur, 1),
            "p50_ms": round(percentile(lat, 0.50), 2),
            "p99_ms": round(percentile(lat, 0.99), 2),
            "max_ms": round(lat[-1], 2) if lat else None,
            "other_outcomes": {k: v for k, v in statuses.items()
                               if k not in ("booked", "201", "200")},
            "errors": dict(errors),
            "cores": cores,
            "transactions_per_booking": round(xacts / total, 2) if total else None,
        }
        if any(k not in ("200", "201") for k in bodies):
            result["sample_bodies"] = {k: v for k, v in bodies.items() if k not in ("200", "201")}
        return result

    def db_configs(self, clients: int, hot: bool, notify: bool) -> list[dict[str, Any]]:
        slots = [self.hot_slot] if hot else self.uncontended_slots
        per = self.split(clients, self.args.processes)
        return [{"kind": "db", "dsn": self.dsn, "conns": n, "slots": slots, "notify": notify}
                for n in per]

    @staticmethod
    def split(total: int, parts: int) -> list[int]:
        parts = max(1, min(parts, total))
        return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]

    # -- phases ----------------------------------------------------------------------------

    async def db_phase(self, workload: str, clients: int, variant: str,
                       round_: int | None = None) -> dict[str, Any]:
        await self.settle()
        hot = workload == "hot"
        label = f"db {variant} {workload} c={clients}" + self.round_suffix(round_)
        self.say(f"  {label} ...")
        pipeline: dict[str, Any] = {}
        if variant == "sequencer":
            marks: dict[str, tuple[float, dict[str, int]]] = {}

            def window(name: str) -> None:
                marks[name] = (time.monotonic(), {k: pipeline[k] for k in (
                    "doorbells", "drains", "numbered", "read")})

            async with self.pipeline(pipeline):
                r = await self.drive(label, self.db_configs(clients, hot, False),
                                     during=lambda: self.pipeline_backlog(pipeline),
                                     window=window)
            (t0, a), (t1, b) = marks["start"], marks["stop"]
            for k in a:
                pipeline[f"{k}_per_s"] = round((b[k] - a[k]) / (t1 - t0), 1)
        else:
            r = await self.drive(label, self.db_configs(clients, hot, variant == "notify"))
        r.update({"layer": "db", "variant": variant, "workload": workload, "clients": clients,
                  "round": round_})
        if pipeline:
            r["pipeline"] = {k: v for k, v in pipeline.items() if not k.startswith("_")}
        self.report_line(r)
        return r

    @contextlib.asynccontextmanager
    async def pipeline(self, stats: dict[str, Any]) -> Any:
        """The server's event pipeline, in this process: a LISTEN connection, the sequencer
        (`rt_sequence_events`, on each doorbell or every 0.25 s, at most once per
        MIN_DRAIN_SPACING, once more after a drain that numbered something) and the reader
        (numbered events after the last position, on each rt_events not yet read)."""
        import asyncpg

        from realtime.eventlog.events import fetch_after

        listen = await asyncpg.connect(self.dsn)
        seq_conn = await asyncpg.connect(self.dsn)
        read_conn = await asyncpg.connect(self.dsn)
        doorbell, published = asyncio.Event(), asyncio.Event()
        stats.update(doorbells=0, events_notifies=0, drains=0, numbered=0, read=0)

        def on_doorbell(*_: Any) -> None:
            stats["doorbells"] += 1
            doorbell.set()

        def on_events(_c: Any, _p: int, _ch: str, payload: str) -> None:
            stats["events_notifies"] += 1
            if int(payload) > last_pos:
                published.set()

        last_pos = await read_conn.fetchval("SELECT last_pos FROM rt_sequencer")

        async def sequencer() -> None:
            loop = asyncio.get_running_loop()
            last_drain = 0.0
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(doorbell.wait(), 0.25)
                if (wait := last_drain + MIN_DRAIN_SPACING - loop.time()) > 0:
                    await asyncio.sleep(wait)
                last_drain = loop.time()
                doorbell.clear()
                while True:
                    count = await seq_conn.fetchval("SELECT rt_sequence_events(1000)")
                    stats["drains"] += 1
                    stats["numbered"] += count
                    if count:
                        published.set()
                    if count < 1000:
                        break
                if count:
                    doorbell.set()

        async def reader() -> None:
            nonlocal last_pos
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(published.wait(), 1.0)
                published.clear()
                while True:
                    events = await fetch_after(read_conn, last_pos, 1000)
                    if not events:
                        break
                    last_pos = events[-1].pos
                    stats["read"] += len(events)

        await listen.add_listener("rt_doorbell", on_doorbell)
        await listen.add_listener("rt_events", on_events)
        tasks = [asyncio.create_task(sequencer()), asyncio.create_task(reader())]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            for c in (listen, seq_conn, read_conn):
                await c.close()

    async def pipeline_backlog(self, stats: dict[str, Any]) -> None:
        """Right after the load stops: what is not yet numbered, and how long until it is."""
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            stats["unnumbered_at_stop"] = await conn.fetchval(
                "SELECT count(*) FROM rt_events WHERE pos IS NULL")
            t0 = time.monotonic()
            while await conn.fetchval("SELECT count(*) FROM rt_events WHERE pos IS NULL"):
                if time.monotonic() - t0 > 10:
                    break
                await asyncio.sleep(0.01)
            stats["drained_after_stop_ms"] = round((time.monotonic() - t0) * 1000, 1)
        finally:
            await conn.close()

    def http_configs(self, hot: bool) -> list[dict[str, Any]]:
        slots = [self.hot_slot] if hot else self.uncontended_slots
        reqs = []
        for s in slots:
            body = json.dumps({"slot_id": s, "customer_id": "bench"}, separators=(",", ":"))
            reqs.append(f"POST /api/bookings HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n"
                        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
                        f"\r\n{body}")
        per = self.split(self.args.http_connections, self.args.generators)
        return [{"kind": "http", "port": self.port, "conns": n, "requests": reqs} for n in per]

    async def start_server(self) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env.update(DATABASE_URL=self.dsn, REALTIME_RATE_LIMIT="0", LOG_LEVEL="warning",
                   PYTHONUNBUFFERED="1")
        env.pop("REALTIME_JWT_SECRET", None)
        for item in self.args.server_env:
            name, _, value = item.partition("=")
            env[name] = value
        self.server_log = tempfile.NamedTemporaryFile(
            prefix="rt-bench-server-", suffix=".log", delete=False)
        self.server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "realtime", "serve", "--host", "127.0.0.1",
            "--port", str(self.port),
            cwd=ROOT, env=env, stdout=self.server_log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.returncode is not None:
                raise RuntimeError(f"the server exited with {self.server.returncode}; "
                                   f"log: {self.server_log.name}")
            if await self.http_status("/readyz") == 200:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("the server did not become ready within 60 s")

    async def http_status(self, path: str) -> int | None:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 2)
        except (OSError, TimeoutError):
            return None
        try:
            w.write(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n".encode())
            await w.drain()
            line = await asyncio.wait_for(r.readline(), 5)
            return int(line.split()[1])
        except (OSError, TimeoutError, ValueError, IndexError):
            return None
        finally:
            w.close()

    async def stop_server(self) -> None:
        server, self.server = self.server, None
        if server is None or server.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            server.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(server.wait(), 15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                server.kill()
            await asyncio.wait_for(server.wait(), 5)

    def round_suffix(self, round_: int | None) -> str:
        return f" r{round_}" if round_ is not None and self.args.rounds > 1 else ""

    async def http_phase(self, workload: str, round_: int | None = None) -> dict[str, Any]:
        """A fresh server per phase: between phases nothing runs a sequencer, so the
        direct runs measure the function alone."""
        await self.settle()
        label = (f"http {workload} conns={self.args.http_connections}"
                 + self.round_suffix(round_))
        self.say(f"  {label} ...")
        await self.start_server()
        assert self.server is not None
        try:
            r = await self.drive(label, self.http_configs(workload == "hot"),
                                 extra_pids={"server": [self.server.pid]},
                                 during=self.server_backlog)
        finally:
            await self.stop_server()
        r.update({"layer": "http", "variant": "api", "workload": workload,
                  "clients": self.args.http_connections, "round": round_,
                  "generators": self.split(self.args.http_connections, self.args.generators)})
        r["pipeline"] = dict(self._backlog)
        self.report_line(r)
        return r

    async def healthz_phase(self) -> dict[str, Any]:
        """The server's floor: GET /healthz (HTTP, routing, middleware, metrics; no database)."""
        assert self.server is not None
        label = f"http healthz (no database) conns={self.args.http_connections}"
        self.say(f"  {label} ...")
        req = f"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n\r\n"
        per = self.split(self.args.http_connections, self.args.generators)
        saved = self.args.duration
        self.args.duration = max(2.0, saved / 2)
        try:
            r = await self.drive(label, [{"kind": "http", "port": self.port, "conns": n,
                                          "requests": [req]} for n in per],
                                 extra_pids={"server": [self.server.pid]})
        finally:
            self.args.duration = saved
        r.update({"layer": "http", "variant": "healthz", "workload": "healthz",
                  "clients": self.args.http_connections})
        self.report_line(r)
        return r

    async def server_backlog(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            self._backlog = {"unnumbered_at_stop": await conn.fetchval(
                "SELECT count(*) FROM rt_events WHERE pos IS NULL")}
            t0 = time.monotonic()
            while await conn.fetchval("SELECT count(*) FROM rt_events WHERE pos IS NULL"):
                if time.monotonic() - t0 > 10:
                    break
                await asyncio.sleep(0.01)
            self._backlog["drained_after_stop_ms"] = round((time.monotonic() - t0) * 1000, 1)
        finally:
            await conn.close()

    async def profile_phase(self) -> dict[str, Any] | None:
        assert self.server is not None
        pyspy = shutil.which("py-spy") or shutil.which("py-spy", path=str(
            Path(sys.executable).parent))
        if pyspy is None:
            self.say("  (py-spy not found: pip install py-spy; skipping the profile)")
            return None
        seconds = max(3, int(self.args.duration))
        self.say(f"  profile: py-spy on the server, uncontended HTTP load, {seconds} s ...")
        raw = Path(tempfile.mkdtemp(prefix="rt-bench-pyspy-")) / "server.txt"
        spy = await asyncio.create_subprocess_exec(
            pyspy, "record", "--pid", str(self.server.pid), "--duration", str(seconds),
            "--rate", "200", "--format", "raw", "--nonblocking", "-o", str(raw),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        self.children.append(spy)
        saved = self.args.duration, self.args.warmup
        self.args.duration, self.args.warmup = seconds + 1, 0.0
        try:
            load = await self.drive("profile load", self.http_configs(False),
                                    extra_pids={"server": [self.server.pid]})
        finally:
            self.args.duration, self.args.warmup = saved
        _, err = await asyncio.wait_for(spy.communicate(), 30)
        self.children.remove(spy)
        if not raw.exists():
            self.say(f"  py-spy wrote nothing: {err.decode(errors='replace')[-300:]}")
            return None
        summary = summarize_profile(raw.read_text())
        summary["load_bookings_per_s"] = load["bookings_per_s"]
        summary["raw_file"] = str(raw)
        return summary

    # -- output ----------------------------------------------------------------------------

    def report_line(self, r: dict[str, Any]) -> None:
        c = r["cores"]
        parts = [f"{c.get(k, 0):.2f} {k}" for k in ("server", "load", "bench", "postgres",
                                                      "other", "steal", "machine")
                 if k in c and (k != "bench" or c[k] >= 0.02)]
        extra = ""
        if r.get("other_outcomes") or r.get("errors"):
            extra = f"  other={r.get('other_outcomes')} errors={r.get('errors')}"
        self.say(f"    {r['bookings_per_s']:>9,.0f} bookings/s  p50 {r['p50_ms']:.2f} ms  "
                 f"p99 {r['p99_ms']:.2f} ms  cores: {', '.join(parts)}{extra}")

    # -- the run ---------------------------------------------------------------------------

    async def wait_quiet(self, patience: float) -> float:
        """Busy cores on the machine now (other users skew every figure); waits up to
        `patience` seconds for them to go below 0.3 of a core."""
        deadline = time.monotonic() + patience
        while True:
            a = _machine_busy()
            await asyncio.sleep(2)
            b = _machine_busy()
            busy = (b[0] - a[0]) / 2
            if busy < 0.3 or time.monotonic() >= deadline:
                break
            self.say(f"  the machine is busy ({busy:.2f} cores used by others); waiting ...")
        if busy >= 0.3:
            self.say(f"  WARNING: {busy:.2f} cores busy with other work: figures will be low")
        return round(busy, 2)

    async def run(self) -> dict[str, Any]:
        a = self.args
        started = time.monotonic()
        self.busy_before = await self.wait_quiet(a.wait_quiet)
        self.say(f"scratch database {self.db_name} on {urlsplit(self.admin_dsn).netloc}")
        await self.create_database()
        await self.setup()
        self.say(f"  {len(self.uncontended_slots):,} slots of capacity {CAPACITY:,} "
                 "(uncontended) + 1 hot slot")
        self.say(f"each workload: its database ceiling (SELECT rt_book(...) from "
                 f"{a.processes} asyncpg driver processes), then HTTP through one server "
                 f"process ({a.http_connections} keep-alive connections from {a.generators} "
                 "generator processes), back to back so that both see the same machine")
        # Everything compared runs back to back per workload: on a machine whose other load
        # drifts, a comparison of phases minutes apart would measure the drift.
        # The machine's speed also drifts within a block, so the ceiling and the HTTP run are
        # measured in several rounds, HTTP first in every other one; each round gives a
        # ratio, and the summary is their median.
        for workload, clients in (("uncontended", a.clients), ("hot", a.hot_clients)):
            await self.wait_quiet(a.wait_quiet_block)
            for k in range(1, a.rounds + 1):
                if k % 2 == 0:
                    self.phases.append(await self.http_phase(workload, k))
                if not a.http_only:
                    for c in clients:
                        self.phases.append(await self.db_phase(workload, c, "plain", k))
                if k % 2 == 1:
                    self.phases.append(await self.http_phase(workload, k))
            if not a.http_only:
                for variant in ("notify", "sequencer"):
                    self.phases.append(await self.db_phase(workload, max(a.clients), variant))
        if not a.no_profile:
            await self.wait_quiet(a.wait_quiet_block)
            await self.settle()
            await self.start_server()
            try:
                self.phases.append(await self.healthz_phase())
                self.profile = await self.profile_phase()
            finally:
                await self.stop_server()
        return self.results(time.monotonic() - started)

    def results(self, elapsed: float) -> dict[str, Any]:
        summary = {}
        for workload in ("uncontended", "hot"):
            rounds = []
            for k in range(1, self.args.rounds + 1):
                plain = [p for p in self.phases if p["layer"] == "db"
                         and p["variant"] == "plain" and p["workload"] == workload
                         and p["round"] == k]
                http = next((p for p in self.phases if p["layer"] == "http"
                             and p["workload"] == workload and p["round"] == k), None)
                if not plain or http is None or not max(p["bookings_per_s"] for p in plain):
                    continue
                best = max(plain, key=lambda p: p["bookings_per_s"])
                rounds.append({"round": k, "db_ceiling_per_s": best["bookings_per_s"],
                               "db_ceiling_clients": best["clients"],
                               "http_per_s": http["bookings_per_s"],
                               "http_steal": http["cores"].get("steal"),
                               "ratio": round(http["bookings_per_s"] / best["bookings_per_s"],
                                              3)})
            if not rounds:
                continue
            # The median round (the lower middle one when their number is even).
            mid = sorted(rounds, key=lambda r: r["ratio"])[(len(rounds) - 1) // 2]
            target = TARGET_UNCONTENDED if workload == "uncontended" else TARGET_HOT
            summary[workload] = {
                **{k: mid[k] for k in ("db_ceiling_per_s", "db_ceiling_clients", "http_per_s",
                                       "ratio")},
                "median_round": mid["round"], "rounds": rounds,
                "target": target, "met": mid["ratio"] >= target,
            }
        return {
            "command": "python bench/booking.py " + " ".join(sys.argv[1:]),
            "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "elapsed_s": round(elapsed, 1),
            "machine": machine_info(self.admin_dsn),
            "busy_cores_before_start": self.busy_before,
            "settings": {"duration_s": self.args.duration, "warmup_s": self.args.warmup,
                         "db_clients": self.args.clients,
                         "db_hot_clients": self.args.hot_clients,
                         "driver_processes": self.args.processes,
                         "http_connections": self.args.http_connections,
                         "generator_processes": self.args.generators,
                         "rounds": self.args.rounds,
                         "slots": SLOTS, "capacity": CAPACITY,
                         "server_env": self.server_env()},
            "summary": summary,
            "phases": self.phases,
            "profile": self.profile,
        }

    def server_env(self) -> dict[str, str]:
        env = {"REALTIME_RATE_LIMIT": "0", "LOG_LEVEL": "warning",
               "REALTIME_POOL_SIZE": os.environ.get("REALTIME_POOL_SIZE", "10 (default)")}
        env.update(item.partition("=")[::2] for item in self.args.server_env)
        return env

    async def cleanup(self) -> None:
        for p in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(p.wait(), 5)
        self.children.clear()
        await self.stop_server()
        if self.server_log is not None:
            self.server_log.close()
        try:
            await self.drop_database()
        except Exception as exc:
            print(f"could not drop {self.db_name}: {exc}", file=sys.stderr)


# ----------------------------------------------------------------------------------------
# profile summary, machine facts, table and document
# ----------------------------------------------------------------------------------------

AREAS = [
    ("asyncpg (driver)", ("asyncpg/",)),
    ("uvicorn / httptools (HTTP parsing, ASGI glue)", ("uvicorn/", "httptools/")),
    ("starlette (routing, request, response)", ("starlette/",)),
    ("prometheus_client (metrics)", ("prometheus_client/",)),
    ("logging", ("logging/",)),
    ("realtime.channels and realtime.eventlog (listener, hub)",
     ("realtime/channels/", "realtime/eventlog/")),
    ("realtime (http, booking, db)", ("realtime/",)),
    ("orjson / json", ("orjson", "json/")),
    ("asyncio / uvloop (event loop, tasks)", ("asyncio/", "uvloop/")),
]


# Inclusive buckets: the share of busy samples with a matching frame on the stack. They
# overlap, so they do not add up to 100%. A statement runs in the handler's task when a
# connection is free, else in a pool worker task (realtime/db/pool.py), outside the handler.
BUCKETS = [
    ("the whole HTTP request in the ASGI app (uvicorn run_asgi and below)",
     ("RequestResponseCycle.run_asgi (",)),
    ("handler create_booking (validation, service call, response)", ("create_booking (",)),
    ("asyncpg: the rt_book statement (bind, execute, decode)", ("Connection._do_execute (",)),
    ("pool: checkout, return and job queue (realtime/db/pool.py)",
     ("Pool._take_idle (", "Pool._release (", "Pool._next_job (")),
    ("response send (uvicorn RequestResponseCycle.send, socket write)",
     ("RequestResponseCycle.send (",)),
    ("request parsing (httptools callbacks, task creation)",
     ("HttpToolsProtocol.data_received (",)),
    ("reading the request body (Request.stream)", ("read_json (",)),
    ("JSON response rendering (orjson)", ("JSONResponse.render (",)),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("request id", ("_new_request_id (",)),
    ("logging", ("(logging/",)),
    ("event pipeline (listener, sequencer, reader, hub)",
     ("realtime/channels/", "realtime/eventlog/")),
    ("hold sweeper", ("sweeper.py",)),
]


# The profile in bench/results/booking.json was sampled before the tree's redesign: its
# functions are named where they live now, so that the document points at code that exists.
MOVED = [
    ("RequestContext.__call__ (realtime/app.py)",
     "RequestContext.__call__ (realtime/http/context.py)"),
    ("create_booking (realtime/api.py)", "create_booking (realtime/http/routes.py)"),
    ("read_json (realtime/api.py)", "read_json (realtime/http/responses.py)"),
    ("realtime/pool.py)", "realtime/db/pool.py)"),
    ("realtime (api, service, app, validation)", "realtime (http, booking, db)"),
    ("realtime.channels (listener, hub)", "realtime.channels and realtime.eventlog (listener, hub)"),
]


def where_now(name: str) -> str:
    """A sampled function or bucket label, with the module it lives in today."""
    for old, new in MOVED:
        name = name.replace(old, new)
    return name


def _frame_parts(frame: str) -> tuple[str, str]:
    # "function (path/to/file.py:123)"
    name, _, loc = frame.rpartition(" (")
    path = loc.rstrip(")").rsplit(":", 1)[0]
    return name or frame, path


def _area(path: str) -> str:
    for area, needles in AREAS:
        if any(n in path for n in needles):
            return area
    return "other (stdlib, C extensions)"


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path.split("/", 1)[1] if path.startswith(".") else path


def summarize_profile(text: str) -> dict[str, Any]:
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_area: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    loop_only = 0
    total = 0
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [f for f in stack.split(";") if " (" in f and not f.startswith(("process ",
                                                                                "thread "))]
        if not frames:
            continue
        total += count
        for bucket, needles in BUCKETS:
            if any(n in stack for n in needles):
                buckets[bucket] += count
        if "runners.py" in frames[-1] or "uvicorn/server.py" in frames[-1]:
            loop_only += count
        name, path = _frame_parts(frames[-1])
        self_fn[f"{name} ({_short(path)})"] += count
        self_area[_area(path)] += count
        seen = set()
        for f in frames:
            n, p = _frame_parts(f)
            key = f"{n} ({_short(p)})"
            if key not in seen:
                seen.add(key)
                incl_fn[key] += count
    pct = (lambda c: round(100 * c / total, 1)) if total else (lambda c: 0.0)
    return {
        "samples": total,
        "self_by_area": [(a, pct(c)) for a, c in self_area.most_common()],
        "buckets": [(b, pct(buckets[b])) for b, _ in BUCKETS],
        "event_loop_only": pct(loop_only),
        "top_self": [(f, pct(c)) for f, c in self_fn.most_common(15)],
        "top_inclusive": [(f, pct(c)) for f, c in incl_fn.most_common(40)],
    }


def machine_info(admin_dsn: str) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) // 1024
    pg: dict[str, str] = {}
    with contextlib.suppress(Exception):
        out = subprocess.run(
            ["psql", admin_dsn, "-Atc", "SELECT version(); SHOW synchronous_commit; "
             "SHOW shared_buffers; SHOW max_connections; SHOW wal_level; SHOW fsync"],
            capture_output=True, text=True, timeout=10).stdout.splitlines()
        keys = ["version", "synchronous_commit", "shared_buffers", "max_connections",
                "wal_level", "fsync"]
        pg = dict(zip(keys, out, strict=False))
    versions = {}
    for mod in ("asyncpg", "uvicorn", "starlette", "uvloop", "httptools", "orjson"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[mod] = version(mod)
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "memory_mib": mem,
            "kernel": platform.release(), "python": platform.python_version(),
            "postgresql": pg, "packages": versions}


def print_table(res: dict[str, Any]) -> None:
    print()
    print(f"{'phase':<38} {'bookings/s':>11} {'p50 ms':>8} {'p99 ms':>8}   cores used")
    for p in res["phases"]:
        c = p["cores"]
        cores = " ".join(f"{k}={c[k]:.2f}"
                         for k in ("server", "load", "postgres", "other", "steal", "machine")
                         if k in c)
        print(f"{p['label']:<38} {p['bookings_per_s']:>11,.0f} {p['p50_ms']:>8.2f} "
              f"{p['p99_ms']:>8.2f}   {cores}")
    print()
    print(f"{'workload':<13} {'db ceiling/s':>13} {'http/s':>9} {'ratio':>7} {'target':>7}  met")
    for w, s in res["summary"].items():
        # Three decimals: at two, a round of 0.497 would print as the 0.50 target.
        each = ", ".join(f"{r['ratio']:.3f}" for r in s.get("rounds", []))
        print(f"{w:<13} {s['db_ceiling_per_s']:>13,.0f} {s['http_per_s']:>9,.0f} "
              f"{s['ratio']:>7.3f} {s['target']:>7.2f}  {'yes' if s['met'] else 'NO':<4}"
              f"  (median of rounds: {each})")
    print()


def _phase(res: dict[str, Any], layer: str, variant: str, workload: str,
           clients: int | None = None) -> dict[str, Any] | None:
    """The phase, from the workload's median round when it ran in several."""
    matches = [p for p in res["phases"]
               if (p["layer"], p["variant"], p["workload"]) == (layer, variant, workload)
               and (clients is None or p["clients"] == clients)]
    want = res["summary"].get(workload, {}).get("median_round")
    return next((p for p in matches if p.get("round") == want), matches[0] if matches else None)


def write_doc(res: dict[str, Any], path: Path) -> None:
    m = res["machine"]
    s = res["summary"]
    settings = res["settings"]
    L: list[str] = []
    w = L.append
    w("# Booking throughput")
    w("")
    w("How many bookings per second one server process takes through `POST /api/bookings`, "
      "measured in the same run as the database's own ceiling: the booking function "
      "`rt_book(...)` called directly from asyncpg. Generated by `bench/booking.py`; "
      "the raw figures are in `bench/results/booking.json`.")
    w("")
    w("## The command")
    w("")
    w("```")
    w("python bench/booking.py          # ~5 minutes; PostgreSQL at "
      "postgresql://postgres@127.0.0.1:5432 (trust)")
    w("```")
    w("")
    w(f"This run: `{res['command']}`, {res['generated_at']}, {res['elapsed_s']:.0f} s in all. "
      "It creates a scratch database, migrates it, creates one vendor, one service with "
      f"{settings['slots']:,} slots of capacity {settings['capacity']:,} (uncontended: each "
      "booking picks one at random) and one more slot (hot: every booking takes it), runs "
      "every phase for "
      f"{settings['duration_s']:g} s after {settings['warmup_s']:g} s of warm-up, and drops the "
      "database again, also on failure or Ctrl-C. Before each phase the event log "
      "is truncated and a checkpoint taken, so that phases start alike. For each workload the "
      f"direct runs (plain) and the HTTP run follow each other in {settings.get('rounds', 1)} "
      "round(s), HTTP first in every other round, so that a ratio compares phases that saw "
      "the same machine; the ratio reported is the median round's (the machine's speed "
      "drifts by more than some gaps to the targets). The notify and sequencer variants run "
      "once, after the rounds. Each HTTP phase starts a fresh "
      "server process (and stops it), so no sequencer runs during the direct runs unless the "
      "phase says so.")
    w("")
    if res.get("note"):
        w(f"**Note on this run.** {res['note']}")
        w("")
    w("## The machine")
    w("")
    pg = m.get("postgresql", {})
    w(f"- {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_mib']:,} MiB, Linux {m['kernel']}")
    w(f"- {pg.get('version', 'PostgreSQL ?').split(' on ')[0]}, local, "
      f"synchronous_commit={pg.get('synchronous_commit')}, fsync={pg.get('fsync')}, "
      f"shared_buffers={pg.get('shared_buffers')}")
    pk = m.get("packages", {})
    w(f"- Python {m['python']}, " + ", ".join(f"{k} {v}" for k, v in pk.items()))
    w("- Everything shares these cores: PostgreSQL, the load (driver or generator processes) "
      "and the server. Each phase records the cores each party used (from `/proc`).")
    w("")
    w("## Results")
    w("")
    w("| workload | database ceiling (best of plain runs) | one server process, HTTP | "
      "HTTP / ceiling (median round) | each round | target | met |")
    w("|---|---:|---:|---:|---|---:|---|")
    for workload, row in s.items():
        each = ", ".join(f"{r['ratio']:.3f}" + (f" ({r['http_steal']:.2f} stolen)"
                                                  if r.get("http_steal") is not None else "")
                         for r in row.get("rounds", []))
        w(f"| {workload} | {row['db_ceiling_per_s']:,.0f}/s ({row['db_ceiling_clients']} "
          f"clients) | {row['http_per_s']:,.0f}/s | {row['ratio']:.3f} | {each} | "
          f"{row['target']:.2f} | {'yes' if row['met'] else '**no**'} |")
    w("")
    w("The first three columns are the median round's. Where the text below quotes one "
      "phase's CPU or profile, it is that round's. \"stolen\": cores the hypervisor took from "
      "this virtual machine during that round's HTTP phase (see the phase table).")
    w("")
    w("Every phase:")
    w("")
    w("| phase | bookings/s | p50 ms | p99 ms | cores: server | load | postgres | "
      "others' | stolen | whole machine |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in res["phases"]:
        c = p["cores"]
        steal = f"{c['steal']:.2f}" if "steal" in c else "-"
        w(f"| {p['label']} | {p['bookings_per_s']:,.0f} | {p['p50_ms']:.2f} | "
          f"{p['p99_ms']:.2f} | {c.get('server', '-')} | {c['load']} | {c['postgres']} | "
          f"{c['other']:.2f} | {steal} | {c['machine']:.2f} |")
    w("")
    w("(The healthz row counts requests, not bookings. \"others'\" is CPU that none of this "
      "benchmark's processes used: other work on the machine, plus PostgreSQL's shared WAL "
      "writer, checkpointer and autovacuum. \"stolen\" is time the hypervisor gave this "
      "virtual machine's CPUs to other guests (`steal` in `/proc/stat`): the phase could not "
      "use it.)")
    w("")
    w("- **db plain**: `SELECT rt_book($1, 1, 'bench', NULL, NULL, '', NULL, NULL)`, prepared, "
      f"from c connections spread over {settings['driver_processes']} asyncpg driver "
      "processes (uvloop).")
    w("- **db notify**: the same statement plus `pg_notify('bench', 'x')`: one NOTIFY per "
      "booking, the design our doorbell avoids.")
    w("- **db sequencer**: plain, with the server's event pipeline running beside it in the "
      "benchmark process: a LISTEN connection on `rt_doorbell` and `rt_events`, "
      "`rt_sequence_events(1000)` on every doorbell (and every 0.25 s), at most once per "
      f"{MIN_DRAIN_SPACING * 1000:.0f} ms and once more after a drain that numbered "
      "something, and the reader fetching the numbered events.")
    w(f"- **http**: `python -m realtime serve` (one process, `REALTIME_RATE_LIMIT=0`, "
      f"`LOG_LEVEL=warning`, pool size {settings['server_env']['REALTIME_POOL_SIZE']}), "
      f"{settings['http_connections']} keep-alive connections from "
      f"{settings['generator_processes']} generator processes, each connection sending its "
      "next request as soon as the last answer arrives. Only 201s count as bookings.")
    w("")
    _doc_pipeline(res, w)
    _doc_profile(res, w)
    _doc_limits(res, w)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L) + "\n")


def _doc_pipeline(res: dict[str, Any], w: Any) -> None:
    w("## The event pipeline and the booking rate")
    w("")
    top = max(res["settings"]["db_clients"])
    w(f"Direct calls, {top} clients, back to back:")
    w("")
    w("| workload | plain | one NOTIFY per booking | with doorbell + sequencer + reader | "
      "doorbells/s | sequencer calls/s | events per call | transactions per booking | "
      "unnumbered when the load stopped |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes = []
    for workload in ("uncontended", "hot"):
        plain = _phase(res, "db", "plain", workload, top)
        notify = _phase(res, "db", "notify", workload)
        seq = _phase(res, "db", "sequencer", workload)
        if not (plain and notify and seq):
            continue
        pr = plain["bookings_per_s"] or 1
        pl = seq.get("pipeline", {})
        per_call = pl.get("numbered_per_s", 0) / max(pl.get("drains_per_s", 0), 1e-9)
        w(f"| {workload} | {pr:,.0f}/s | {notify['bookings_per_s']:,.0f}/s "
          f"({notify['bookings_per_s'] / pr:.0%}) | {seq['bookings_per_s']:,.0f}/s "
          f"({seq['bookings_per_s'] / pr:.0%}) | {pl.get('doorbells_per_s', 0):,.0f} | "
          f"{pl.get('drains_per_s', 0):,.0f} | {per_call:,.1f} | "
          f"{seq.get('transactions_per_booking')} | {pl.get('unnumbered_at_stop', '?')} "
          f"(numbered {pl.get('drained_after_stop_ms', '?')} ms later) |")
        pg_plain = plain["cores"]["postgres"] / pr * 1e6
        pg_seq = seq["cores"]["postgres"] / (seq["bookings_per_s"] or 1) * 1e6
        if per_call >= 3:
            notes.append(
                f"{workload.capitalize()}: PostgreSQL spent {pg_plain:,.0f} µs per booking "
                f"plain and {pg_seq:,.0f} µs with the pipeline; the difference is numbering "
                "(an UPDATE of every event row, with its index entries) and reading each "
                "event once. The sequencer kept up (nothing left unnumbered when the load "
                f"stopped) at {pl.get('doorbells_per_s', 0):,.0f} doorbells/s: it does not cap "
                "the rate, it costs CPU, and on two shared cores that CPU comes out of the "
                f"booking rate ({seq['bookings_per_s'] / pr:.0%} of plain here).")
        if per_call < 3:
            notes.append(
                f"On the {workload} workload the sequencer drained after nearly every booking "
                f"({per_call:.1f} events per call): at {seq['bookings_per_s']:,.0f} bookings/s "
                "it is fast enough to empty the log before the next booking commits, so each "
                "drain re-arms the doorbell, the next booking rings it again "
                f"({pl.get('doorbells_per_s', 0):,.0f} NOTIFYs/s on `rt_doorbell`, plus one on "
                "`rt_events` per non-empty drain), and every booking brings about "
                f"{(seq.get('transactions_per_booking') or 1) - 1:.1f} more transactions. "
                "The notification rate is bounded by the drain rate, as designed, and drains "
                f"are at least {MIN_DRAIN_SPACING * 1000:.0f} ms apart, so this happens only "
                "while the booking rate is low enough for a drain to empty the log.")
    w("")
    w("A booking rings the doorbell only when `rt_doorbell.rung` is false, and the sequencer "
      "clears it once per drain: the notification rate follows the drain rate, not the "
      "booking rate, and no NOTIFY is taken by most booking commits. The sequencer, "
      "LISTEN connection and reader ran in the benchmark process the way the server runs "
      f"them (drain on each doorbell and every 0.25 s, at most once per "
      f"{MIN_DRAIN_SPACING * 1000:.0f} ms, once more after a drain that numbered something; "
      "read on each `rt_events` not yet read).")
    w("")
    for note in notes:
        w(note)
        w("")
    up = _phase(res, "db", "plain", "uncontended", top)
    if up and up["bookings_per_s"] < 2_500:
        w(f"At {up['bookings_per_s']:,.0f} bookings/s the plain run stayed below the rate where "
          "one NOTIFY per commit becomes the limit (it serializes notifying commits on a "
          "cluster-wide lock, which caps them near 3,000/s on this kind of machine), so the notify variant shows "
          "only part of its cost here.")
        w("")


def _doc_profile(res: dict[str, Any], w: Any) -> None:
    prof = res.get("profile")
    w("## Where the time goes")
    w("")
    up_http = _phase(res, "http", "api", "uncontended")
    up_db = _phase(res, "db", "plain", "uncontended",
                   res["summary"].get("uncontended", {}).get("db_ceiling_clients"))
    if up_http and up_db:
        c, r = up_http["cores"], up_http["bookings_per_s"] or 1
        cd, rd = up_db["cores"], up_db["bookings_per_s"] or 1

        def row(name: str, cc: dict[str, float], rate: float) -> str:
            ours = cc.get("server", 0) + cc["load"] + cc["postgres"] + cc.get("bench", 0)
            server = f"{cc['server'] / rate * 1e6:,.0f} µs" if "server" in cc else "-"
            return (f"| {name} | {server} | {cc['load'] / rate * 1e6:,.0f} µs | "
                    f"{cc['postgres'] / rate * 1e6:,.0f} µs | {ours / rate * 1e6:,.0f} µs | "
                    f"{cc['other']:.2f} | {cc.get('steal', 0):.2f} |")

        w("CPU per booking, from the CPU time each party used during the measured window "
          "(`/proc`), divided by the bookings in it:")
        w("")
        w("| | server process | load (generators / drivers) | PostgreSQL (this database's "
          "backends) | all of ours | cores used by others meanwhile | cores stolen |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        w(row(f"HTTP uncontended ({r:,.0f}/s)", c, r))
        w(row(f"direct, uncontended, {up_db['clients']} clients ({rd:,.0f}/s)", cd, rd))
        hz = _phase(res, "http", "healthz", "healthz")
        if hz and hz["bookings_per_s"]:
            ch, rh = hz["cores"], hz["bookings_per_s"]
            w(row(f"GET /healthz, no database ({rh:,.0f} requests/s)", ch, rh))
            w("")
            w(f"`GET /healthz` is the server's floor per request (uvicorn, httptools, Starlette, "
              f"the request-id/metrics middleware; no database): {ch['server'] / rh * 1e6:,.0f} "
              f"µs, against {c['server'] / r * 1e6:,.0f} µs for a booking. The difference, "
              f"{(c['server'] / r - ch['server'] / rh) * 1e6:,.0f} µs, is the booking path "
              "proper: body parsing and validation, the pool, the asyncpg round trip(s), the "
              "result's JSON, and the event pipeline's share.")
        w("")
        w(f"During the HTTP uncontended run the server process used {c['server']:.2f} of a "
          f"core ({c.get('server_kernel', 0):.2f} of it in the kernel), the generators "
          f"{c['load']:.2f}, PostgreSQL {c['postgres']:.2f}; the machine as a whole was busy "
          f"{c['machine']:.2f} of its {res['machine']['cpus']} cores.")
        w("")
    if not prof:
        w("(No py-spy profile in this run.)")
        w("")
        return
    w(f"py-spy sampled the server at 200 Hz for the profile phase (uncontended HTTP load, "
      f"{prof['load_bookings_per_s']:,.0f} bookings/s while sampled, {prof['samples']:,} "
      "non-idle samples). Self time by area (the innermost Python frame; time in C "
      "extensions counts towards the Python function that called them):")
    w("")
    w("| area | share of busy samples |")
    w("|---|---:|")
    for area, pct in prof["self_by_area"]:
        w(f"| {where_now(area)} | {pct}% |")
    w("")
    w("Top functions by self time:")
    w("")
    w("| function | self |")
    w("|---|---:|")
    for f, pct in prof["top_self"][:12]:
        w(f"| `{where_now(f)}` | {pct}% |")
    w("")
    w("What the server is doing (share of busy samples with it on the stack; the rows "
      "overlap; a statement runs in the handler's task when a pool connection is free, "
      "else in a pool worker task, outside the handler):")
    w("")
    w("| part | inclusive |")
    w("|---|---:|")
    for bucket, pct in prof.get("buckets", []):
        w(f"| {where_now(bucket)} | {pct}% |")
    w(f"| event loop itself, no handler on the stack (uvloop: epoll, socket reads, "
      f"callbacks) | {prof.get('event_loop_only', 0)}% |")
    w("")


def _doc_limits(res: dict[str, Any], w: Any) -> None:
    s = res["summary"]
    cpus = res["machine"]["cpus"]
    w("## Are the targets met, and what limits the rate")
    w("")
    for workload, row in s.items():
        w(f"- {workload}: {row['http_per_s']:,.0f}/s through HTTP is {row['ratio']:.1%} of the "
          f"database's {row['db_ceiling_per_s']:,.0f}/s; the target is "
          f"{row['target']:.0%}: **{'met' if row['met'] else 'not met'}**.")
    w("")
    before = res.get("busy_cores_before_start")
    if before is not None and before >= 0.3:
        w(f"**Caution:** {before:.2f} cores were busy with other work before this run "
          "started; every figure is lower than on a quiet machine (the `other` column of "
          "the phase table shows how much each phase lost).")
        w("")
    up_http = _phase(res, "http", "api", "uncontended")
    up_db = _phase(res, "db", "plain", "uncontended", s.get("uncontended", {}).get(
        "db_ceiling_clients"))
    if up_http and up_db:
        c, r = up_http["cores"], up_http["bookings_per_s"] or 1
        cd, rd = up_db["cores"], up_db["bookings_per_s"] or 1
        server_us = c.get("server", 0) / r * 1e6
        http_total = (c.get("server", 0) + c["load"] + c["postgres"]) / r * 1e6
        db_total = (cd["load"] + cd["postgres"]) / rd * 1e6
        w(f"**Uncontended.** A booking through HTTP cost {http_total:,.0f} µs of CPU in all "
          f"(server {server_us:,.0f}, PostgreSQL {c['postgres'] / r * 1e6:,.0f}, generators "
          f"{c['load'] / r * 1e6:,.0f}); a booking called directly cost {db_total:,.0f} µs "
          f"(PostgreSQL {cd['postgres'] / rd * 1e6:,.0f}, driver {cd['load'] / rd * 1e6:,.0f}). "
          f"When both are CPU-bound on the same {cpus} cores, the HTTP / direct ratio cannot "
          f"exceed the inverse ratio of these costs, **{db_total / http_total:.2f}**, however "
          "quiet the machine: that, not the run's noise, is the first limit on the uncontended "
          f"target ({TARGET_UNCONTENDED:.0%}). ")
        if c.get("server", 0) >= 0.85:
            w(f"The server process was CPU-bound ({c['server']:.2f} of a core; one Python "
              "process cannot use more than one), so one process cannot pass "
              f"~{1e6 / server_us:,.0f}/s at this cost per booking even with a core of its own.")
        else:
            w(f"The server process used {c['server']:.2f} of a core (of which "
              f"{c.get('server_kernel', 0):.2f} in the kernel: socket I/O): it was not "
              "pinned at 100% of a core because it competes for the two cores with "
              "PostgreSQL and the generators; with a core of its own it would reach about "
              f"{1e6 / server_us:,.0f}/s at this cost per booking.")
        w("")
        seq = _phase(res, "db", "sequencer", "uncontended")
        if seq and seq["bookings_per_s"]:
            w(f"The server also runs the event pipeline (sequencer, reader), which the plain "
              f"direct run does not: against the direct run with the pipeline beside it "
              f"({seq['bookings_per_s']:,.0f}/s), HTTP reached "
              f"**{r / seq['bookings_per_s']:.0%}**. PostgreSQL spent "
              f"{c['postgres'] / r * 1e6:,.0f} µs per HTTP booking, "
              f"{cd['postgres'] / rd * 1e6:,.0f} µs per plain direct one and "
              f"{seq['cores']['postgres'] / seq['bookings_per_s'] * 1e6:,.0f} µs per direct "
              "one with the pipeline: most of the database-side difference is the pipeline.")
            w("")
        tx_http, tx_db = up_http.get("transactions_per_booking"), up_db.get(
            "transactions_per_booking")
        if tx_http and tx_db:
            w(f"PostgreSQL counted {tx_http:.2f} transactions per HTTP booking against "
              f"{tx_db:.2f} per direct call.")
            if tx_http >= 1.6 * tx_db:
                w(" A reset query on every pool release would explain the extra one "
                  "(asyncpg's pool runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; "
                  "UNLISTEN *; RESET ALL;` by default); `realtime/db/pool.py` runs none, so "
                  "look for a new per-booking statement in the server.")
            w("")
    hot = s.get("hot")
    if hot:
        pool = res["settings"]["server_env"].get("REALTIME_POOL_SIZE")
        hot_db = [p for p in res["phases"] if p["layer"] == "db" and p["variant"] == "plain"
                  and p["workload"] == "hot" and p.get("round") == hot.get("median_round")]
        trend = ", ".join(f"{p['clients']} clients {p['bookings_per_s']:,.0f}/s "
                          f"(p99 {p['p99_ms']:.0f} ms)" for p in hot_db)
        w("**Hot slot.** Every booking updates the same row, so bookings are serialized by "
          "its row lock, held from the `FOR UPDATE` until the commit's WAL flush: the rate "
          "is bounded by commit latency (an fsync per commit, shared with every other "
          f"writer on this PostgreSQL), not by CPU. Direct: {trend}. The server (pool size "
          f"{pool}) sends at most {GATE_WIDTH} writes per slot at a time "
          "(`realtime/booking/gate.py`): one holds the row, the next ones wait behind it in "
          "the database, so that a commit hands the lock on at once; the rest wait in the "
          "server, which keeps its p99 below the direct runs' at 16 and 32 clients. Its "
          "event pipeline drains at most once per "
          f"{MIN_DRAIN_SPACING * 1000:.0f} ms: each drain is a transaction whose WAL flush "
          "queues with the bookings' own.")
        w("")
    w("The database ceiling is measured with asyncpg driver processes on the same cores, so "
      "it too is below what PostgreSQL alone would reach on this machine; the ratios compare "
      "like with like (one client stack each, same cores).")
    w("")


# ----------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--admin-dsn", default=os.environ.get("BENCH_ADMIN_DSN", ADMIN_DSN),
                    help="a loopback PostgreSQL where a scratch database may be created "
                         f"(default {ADMIN_DSN})")
    ap.add_argument("--duration", type=float, default=8.0, help="measured seconds per phase")
    ap.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds per phase")
    ap.add_argument("--clients", type=int, nargs="+", default=[16, 32],
                    help="database connections for the ceiling runs")
    ap.add_argument("--hot-clients", type=int, nargs="+", default=[8, 16, 32],
                    help="database connections for the hot-slot ceiling runs")
    ap.add_argument("--processes", type=int, default=2, help="driver processes (database)")
    ap.add_argument("--http-connections", type=int, default=32)
    ap.add_argument("--generators", type=int, default=2, help="HTTP generator processes")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy phase")
    ap.add_argument("--http-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for the server (e.g. REALTIME_POOL_SIZE=20)")
    ap.add_argument("--wait-quiet", type=float, default=30.0,
                    help="wait up to this many seconds at the start for other load on the "
                         "machine to end")
    ap.add_argument("--wait-quiet-block", type=float, default=10.0,
                    help="the same before each workload's block of phases")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of ceiling + HTTP per workload; the ratio is their median "
                         "(default 3, 1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="4 s phases, 0.5 s warm-up, one round unless --rounds is given")
    ap.add_argument("--json", type=Path, default=RESULTS)
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--render", action="store_true",
                    help="only rewrite --doc (and print the table) from an existing --json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 4.0, 0.5
        if "--rounds" not in argv:
            args.rounds = 1
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    return args


async def amain(args: argparse.Namespace) -> int:
    require_loopback(args.admin_dsn)
    bench = Bench(args)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        res = await bench.run()
    finally:
        await bench.cleanup()
    print_table(res)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2) + "\n")
    write_doc(res, args.doc)
    print(f"wrote {args.json} and {args.doc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import uvloop
    except ImportError:
        uvloop = None
    run = uvloop.run if uvloop is not None else asyncio.run
    if args.worker:
        run(worker_main())
        return 0
    if args.render:
        res = json.loads(args.json.read_text())
        print_table(res)
        write_doc(res, args.doc)
        print(f"wrote {args.doc} from {args.json}")
        return 0
    try:
        return int(run(amain(args)))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted: the server is stopped and the scratch database dropped",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
