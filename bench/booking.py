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
   keep-alive HTTP/1.1 through realtime.httpclient (uvloop); HTTP goes first in every other
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
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lib import pg, server  # noqa: E402
from bench.lib.cpu import wait_quiet  # noqa: E402
from bench.lib.drive import Driver, split  # noqa: E402
from bench.lib.load import booking_requests, worker_main  # noqa: E402
from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.net import free_port, require_loopback  # noqa: E402
from bench.lib.pipeline import backlog, event_pipeline, settle  # noqa: E402
from bench.lib.profile import find_pyspy, start_pyspy, summarize_profile  # noqa: E402
from bench.lib.report import phase_line, print_table, write_doc  # noqa: E402
from bench.lib.results import summarize  # noqa: E402
from realtime.db.connect import dsn_for_database  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "booking.json"
DOC = ROOT / "docs" / "benchmarks-booking.md"
SLOTS = 10_000
CAPACITY = 1_000_000  # the schema's CHECK allows at most 1,000,000


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.admin_dsn: str = args.admin_dsn
        self.db_name = f"rt_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.dsn = dsn_for_database(self.admin_dsn, self.db_name)
        self.driver = Driver(HERE, self.admin_dsn, self.db_name)
        self.children: list[asyncio.subprocess.Process] = []  # py-spy
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log: Any = None
        self.port = 0
        self.uncontended_slots: list[str] = []
        self.hot_slot = ""
        self.phases: list[dict[str, Any]] = []
        self.profile: dict[str, Any] | None = None
        self.created = False

    def say(self, text: str) -> None:
        print(text, flush=True)

    # -- the scratch database -------------------------------------------------------------

    async def setup(self) -> None:
        """Creates and migrates the database: one vendor, one service, SLOTS + 1 slots."""
        from realtime.db.migrate import migrate

        await pg.create_database(self.admin_dsn, self.db_name)
        self.created = True
        await migrate(self.dsn, echo=lambda _line: None)
        ids = await pg.seed_slots(self.dsn, SLOTS + 1, CAPACITY)
        self.hot_slot, self.uncontended_slots = ids[0], ids[1:]

    async def measure(self, label: str, configs: list[dict[str, Any]],
                      **kw: Any) -> dict[str, Any]:
        return await self.driver.drive(label, configs, self.args.warmup, self.args.duration,
                                       **kw)

    def db_configs(self, clients: int, hot: bool, notify: bool) -> list[dict[str, Any]]:
        slots = [self.hot_slot] if hot else self.uncontended_slots
        return [{"kind": "db", "dsn": self.dsn, "conns": n, "slots": slots, "notify": notify}
                for n in split(clients, self.args.processes)]

    def http_configs(self, requests: list[str]) -> list[dict[str, Any]]:
        return [{"kind": "http", "port": self.port, "conns": n, "requests": requests}
                for n in split(self.args.http_connections, self.args.generators)]

    def booking_requests(self, hot: bool) -> list[str]:
        return booking_requests(self.port, [self.hot_slot] if hot else self.uncontended_slots)

    # -- the server ------------------------------------------------------------------------

    async def start_server(self) -> None:
        self.port = free_port()
        extra = dict(item.partition("=")[::2] for item in self.args.server_env)
        if self.server_log is not None:
            self.server_log.close()
        self.server_log = tempfile.NamedTemporaryFile(
            prefix="rt-bench-server-", suffix=".log", delete=False)
        self.server = server.start(self.port, server.server_env(self.dsn, extra),
                                   log=self.server_log)
        await server.until_ready(self.server, self.port, log=self.server_log.name)

    async def stop_server(self) -> None:
        proc, self.server = self.server, None
        await asyncio.to_thread(server.stop, proc)

    # -- phases ----------------------------------------------------------------------------

    def round_suffix(self, round_: int | None) -> str:
        return f" r{round_}" if round_ is not None and self.args.rounds > 1 else ""

    async def db_phase(self, workload: str, clients: int, variant: str,
                       round_: int | None = None) -> dict[str, Any]:
        await settle(self.dsn)
        hot = workload == "hot"
        label = f"db {variant} {workload} c={clients}" + self.round_suffix(round_)
        self.say(f"  {label} ...")
        pipeline: dict[str, Any] = {}
        if variant == "sequencer":
            marks: dict[str, tuple[float, dict[str, int]]] = {}

            def window(name: str) -> None:
                marks[name] = (time.monotonic(), {k: pipeline[k] for k in (
                    "doorbells", "drains", "numbered", "read")})

            async def after() -> None:
                pipeline.update(await backlog(self.dsn))

            async with event_pipeline(self.dsn, pipeline):
                r = await self.measure(label, self.db_configs(clients, hot, False),
                                       during=after, window=window)
            (t0, a), (t1, b) = marks["start"], marks["stop"]
            for k in a:
                pipeline[f"{k}_per_s"] = round((b[k] - a[k]) / (t1 - t0), 1)
        else:
            r = await self.measure(label, self.db_configs(clients, hot, variant == "notify"))
        r.update({"layer": "db", "variant": variant, "workload": workload, "clients": clients,
                  "round": round_})
        if pipeline:
            r["pipeline"] = {k: v for k, v in pipeline.items() if not k.startswith("_")}
        self.report_line(r)
        return r

    async def http_phase(self, workload: str, round_: int | None = None) -> dict[str, Any]:
        """A fresh server per phase: between phases nothing runs a sequencer, so the
        direct runs measure the function alone."""
        await settle(self.dsn)
        label = (f"http {workload} conns={self.args.http_connections}"
                 + self.round_suffix(round_))
        self.say(f"  {label} ...")
        await self.start_server()
        assert self.server is not None
        after: dict[str, Any] = {}

        async def drained() -> None:
            after.update(await backlog(self.dsn))

        try:
            r = await self.measure(label, self.http_configs(self.booking_requests(
                workload == "hot")), extra_pids={"server": [self.server.pid]}, during=drained)
        finally:
            await self.stop_server()
        r.update({"layer": "http", "variant": "api", "workload": workload,
                  "clients": self.args.http_connections, "round": round_,
                  "generators": split(self.args.http_connections, self.args.generators)})
        r["pipeline"] = after
        self.report_line(r)
        return r

    async def healthz_phase(self) -> dict[str, Any]:
        """The server's floor: GET /healthz (HTTP, routing, middleware, metrics; no database)."""
        assert self.server is not None
        label = f"http healthz (no database) conns={self.args.http_connections}"
        self.say(f"  {label} ...")
        req = f"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n\r\n"
        saved = self.args.duration
        self.args.duration = max(2.0, saved / 2)
        try:
            r = await self.measure(label, self.http_configs([req]),
                                 extra_pids={"server": [self.server.pid]})
        finally:
            self.args.duration = saved
        r.update({"layer": "http", "variant": "healthz", "workload": "healthz",
                  "clients": self.args.http_connections})
        self.report_line(r)
        return r

    async def profile_phase(self) -> dict[str, Any] | None:
        assert self.server is not None
        pyspy = find_pyspy()
        if pyspy is None:
            self.say("  (py-spy not found: pip install py-spy; skipping the profile)")
            return None
        seconds = max(3, int(self.args.duration))
        self.say(f"  profile: py-spy on the server, uncontended HTTP load, {seconds} s ...")
        spy, raw = await start_pyspy(pyspy, self.server.pid, seconds)
        self.children.append(spy)
        saved = self.args.duration, self.args.warmup
        self.args.duration, self.args.warmup = seconds + 1, 0.0
        try:
            load = await self.measure("profile load", self.http_configs(
                self.booking_requests(False)), extra_pids={"server": [self.server.pid]})
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

    def report_line(self, r: dict[str, Any]) -> None:
        self.say(phase_line(r))

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        a = self.args
        started = time.monotonic()
        self.busy_before = await wait_quiet(a.wait_quiet, self.say)
        self.say(f"scratch database {self.db_name} on {urlsplit(self.admin_dsn).netloc}")
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
            await wait_quiet(a.wait_quiet_block, self.say)
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
            await wait_quiet(a.wait_quiet_block, self.say)
            await settle(self.dsn)
            await self.start_server()
            try:
                self.phases.append(await self.healthz_phase())
                self.profile = await self.profile_phase()
            finally:
                await self.stop_server()
        return self.results(time.monotonic() - started)

    def results(self, elapsed: float) -> dict[str, Any]:
        a = self.args
        return {
            "command": "python bench/booking.py " + " ".join(sys.argv[1:]),
            "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "elapsed_s": round(elapsed, 1),
            "machine": machine_info(self.admin_dsn),
            "busy_cores_before_start": self.busy_before,
            "settings": {"duration_s": a.duration, "warmup_s": a.warmup,
                         "db_clients": a.clients, "db_hot_clients": a.hot_clients,
                         "driver_processes": a.processes,
                         "http_connections": a.http_connections,
                         "generator_processes": a.generators, "rounds": a.rounds,
                         "slots": SLOTS, "capacity": CAPACITY,
                         "server_env": self.server_env()},
            "summary": summarize(self.phases, a.rounds),
            "phases": self.phases,
            "profile": self.profile,
        }

    def server_env(self) -> dict[str, str]:
        env = {"REALTIME_RATE_LIMIT": "0", "LOG_LEVEL": "warning",
               "REALTIME_POOL_SIZE": os.environ.get("REALTIME_POOL_SIZE", "10 (default)")}
        env.update(item.partition("=")[::2] for item in self.args.server_env)
        return env

    async def cleanup(self) -> None:
        await self.driver.kill()
        for p in self.children:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(p.wait(), 5)
        await self.stop_server()
        if self.server_log is not None:
            self.server_log.close()
        if not self.created:
            return
        try:
            await pg.drop_databases(self.admin_dsn, self.db_name)
            self.created = False
        except Exception as exc:
            print(f"could not drop {self.db_name}: {exc}", file=sys.stderr)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--admin-dsn", default=pg.admin_dsn(),
                    help="a loopback PostgreSQL where a scratch database may be created "
                         f"(default {pg.DEFAULT_ADMIN_DSN})")
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
