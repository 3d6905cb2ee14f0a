"""The coordinator of `realtime loadtest`: sets up data, starts workers, books, reports.

Latency is measured from the moment the booker writes the booking request (`POST
/api/bookings`) to the moment a subscriber's socket reads the update. The commit happens in
between, so this is an upper bound of commit-to-receipt latency that includes the HTTP request's
own path up to the commit; the report also gives the booking round trip, and the share of
deliveries that arrived before the booker even had its HTTP response.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import random
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import orjson

from realtime.httpclient import Client, HttpError, split_url

from .options import LoadTestError, check_args, plan_processes, source_addresses, split_sockets
from .report import Progress, build_report, format_report
from .scenario import read_state, setup
from .stats import Histogram, merged
from .worker import worker_main

# How often the booker hands the workers what it booked.
REF_FLUSH_SECONDS = 0.01

# -- the run -------------------------------------------------------------------------------------


class Coordinator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.progress = Progress(not args.quiet)
        self.client = Client(args.url, size=args.max_in_flight + 4, token=args.token)
        self.host, self.port, self.base = split_url(args.url)
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        self.last: dict[int, dict[str, Any]] = {}
        self.connected: dict[int, dict[str, Any]] = {}
        self.reports: dict[int, dict[str, Any]] = {}
        self.storms: dict[int, dict[str, Any]] = {}
        self.refs: list[tuple[str, int, float, float]] = []
        self.http = Histogram()
        self.booked = 0
        self.conflicts = 0
        self.attempted = 0
        self.skipped = 0
        self.book_errors: dict[str, int] = {}
        self.in_flight = 0
        self.changed = asyncio.Event()
        self.samples: list[tuple[float, int]] = []  # (time, delivered) for events/s
        self.stopped = False
        self.conflicts_by_slot: dict[str, int] = {}

    # -- workers ---------------------------------------------------------------------------

    def start_workers(self, plan: list[list[tuple[str, int]]], addrs: list[str | None],
                      max_seconds: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        sse = self.args.transport == "sse"
        path = self.base + (self.args.sse_path if sse else self.args.ws_path)
        if self.args.token:
            path += f"?token={self.args.token}"
        for i, channels in enumerate(plan):
            parent, child = ctx.Pipe(duplex=True)
            spec = {
                "index": i, "host": self.host, "port": self.port, "path": path,
                "dialect": self.args.protocol, "transport": self.args.transport,
                "channels": channels,
                "source_address": addrs[i], "connect_timeout": self.args.connect_timeout,
                "connect_concurrency": self.args.connect_concurrency,
                "max_seconds": max_seconds,
            }
            proc = ctx.Process(target=worker_main, args=(child, spec), daemon=True,
                               name=f"loadtest-worker-{i}")
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
            loop.add_reader(parent.fileno(), self._on_pipe, i)

    def _on_pipe(self, i: int) -> None:
        conn = self.conns[i]
        try:
            while conn.poll():
                kind, info = conn.recv()
                if kind == "progress":
                    self.last[i] = info
                elif kind == "connected":
                    self.connected[i] = info
                    self.last[i] = info
                elif kind == "storm":
                    self.storms[i] = info
                elif kind == "report":
                    self.reports[i] = info
                    self.last[i] = info
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
            self.reports.setdefault(i, {"died": True})
        self.changed.set()

    def broadcast(self, msg: Any) -> None:
        for i, conn in enumerate(self.conns):
            if i in self.reports:
                continue
            try:
                conn.send(msg)
            except (BrokenPipeError, OSError):
                self.reports.setdefault(i, {"died": True})

    async def wait_for(self, what: dict[int, Any], bound: float, label: str) -> None:
        deadline = time.monotonic() + bound
        while len(what) < len(self.conns):
            dead = [i for i, p in enumerate(self.procs) if not p.is_alive() and i not in what]
            if dead:
                raise LoadTestError(f"client process {dead[0]} exited while {label}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoadTestError(f"client processes did not finish {label} in {bound:.0f}s")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
            self.show_progress(label)

    def stop_workers(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.broadcast(("stop",))
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)
        for c in self.conns:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(c.fileno())
            c.close()

    # -- progress --------------------------------------------------------------------------

    def totals(self) -> tuple[int, int, Histogram]:
        connected = sum(int(v.get("connected", 0)) for v in self.last.values())
        delivered = sum(int(v.get("counters", {}).get("delivered", 0)) for v in self.last.values())
        lat = merged(Histogram.from_dict(v["latency"]) for v in self.last.values()
                     if "latency" in v)
        return connected, delivered, lat

    def show_progress(self, phase: str) -> None:
        connected, delivered, lat = self.totals()
        now = time.monotonic()
        self.samples.append((now, delivered))
        self.samples = self.samples[-10:]
        rate = 0.0
        if len(self.samples) >= 2 and self.samples[-1][0] > self.samples[0][0]:
            (t0, d0), (t1, d1) = self.samples[max(0, len(self.samples) - 3)], self.samples[-1]
            rate = (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0
        self.progress.show(
            f"[{phase}] connected {connected}/{self.args.sockets}  booked {self.booked}"
            f" (conflicts {self.conflicts}, errors {sum(self.book_errors.values())})"
            f"  events/s {rate:,.0f}  delivered {delivered:,}  p99 {lat.percentile(99)*1e3:.1f} ms"
        )

    # -- booking -----------------------------------------------------------------------------

    async def book_one(self, slot_id: str) -> None:
        self.in_flight += 1
        sent = time.monotonic()
        try:
            resp = await self.client.request("POST", "/api/bookings", {"slot_id": slot_id})
        except HttpError as exc:
            self._count_error(f"request failed: {exc}"[:160])
            return
        finally:
            self.in_flight -= 1
        answered = time.monotonic()
        self.http.add(answered - sent)
        if resp.status == 201:
            try:
                slot = resp.json()["slot"]
                self.refs.append((str(slot["id"]), int(slot["version"]), sent, answered))
                self.booked += 1
            except (ValueError, KeyError, TypeError):
                self._count_error("201 without a slot object")
        elif resp.status == 409:
            self.conflicts += 1
            self.conflicts_by_slot[slot_id] = self.conflicts_by_slot.get(slot_id, 0) + 1
        else:
            self._count_error(resp.error_code())

    def _count_error(self, code: str) -> None:
        self.book_errors[code] = self.book_errors.get(code, 0) + 1

    async def book(self, slots: list[str], hot: str | None) -> float:
        rate, duration = self.args.rate, self.args.duration
        tasks: set[asyncio.Task[None]] = set()
        t0 = time.monotonic()
        end = t0 + duration
        storm_at = None if self.args.reconnect_at is None else t0 + self.args.reconnect_at
        next_flush = next_progress = t0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int((now - t0) * rate) - self.attempted
            for _ in range(max(0, due)):
                self.attempted += 1
                if self.in_flight >= self.args.max_in_flight:
                    self.skipped += 1
                    continue
                task = asyncio.create_task(self.book_one(hot or self.rng.choice(slots)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if storm_at is not None and now >= storm_at:
                storm_at = None
                self.broadcast(("reconnect",))
            if now >= next_flush:
                self.flush_refs()
                next_flush = now + REF_FLUSH_SECONDS
            if now >= next_progress:
                self.show_progress("booking")
                next_progress = now + 1.0
            await asyncio.sleep(0.002)
        if tasks:
            await asyncio.wait(tasks, timeout=15.0)
            for t in tasks:
                t.cancel()
        self.flush_refs()
        return time.monotonic() - t0

    def flush_refs(self) -> None:
        if self.refs:
            batch, self.refs = self.refs, []
            self.broadcast(("refs", batch))

    # -- the whole run ------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        args = self.args
        procs = plan_processes(args)
        addrs = source_addresses(args, procs)
        info = await setup(self.client, args)
        channels = list(info["services"])
        if args.service and len(channels) < 1:
            raise LoadTestError("no channels")
        slots = [s for ch in channels for s in info["slots"][ch]]
        if not slots:
            raise LoadTestError("no slots to book")
        hot = slots[0] if args.hot_slot else None
        plan = split_sockets(args.sockets, channels, procs)
        ramp_bound = args.connect_timeout * math.ceil(
            args.sockets / (procs * args.connect_concurrency)) + 30
        max_seconds = ramp_bound + args.duration + args.drain_timeout + 120
        self.start_workers(plan, addrs, max_seconds)
        t_ramp = time.monotonic()
        await self.wait_for(self.connected, ramp_bound, "connecting")
        ramp = time.monotonic() - t_ramp
        if self.totals()[0] == 0:
            errors: dict[str, int] = {}
            for v in self.connected.values():
                errors.update(v.get("errors", {}))
            raise LoadTestError(f"no socket could connect: {errors}")
        self.progress.show(f"connected {self.totals()[0]} sockets in {ramp:.1f}s", force=True)
        await asyncio.sleep(0.5)  # let the server's presence and subscription work settle
        t_book = time.monotonic()
        booking_seconds = await self.book(slots, hot)
        if args.reconnect_at is not None:
            with contextlib.suppress(LoadTestError):
                await self.wait_for(self.storms, ramp_bound, "reconnecting")
        expected = await read_state(self.client, info)
        t_final = time.monotonic()
        channel_of = {sid: ch for ch, ids in info["slots"].items() for sid in ids}
        conflicts: dict[str, int] = {}
        for sid, n in self.conflicts_by_slot.items():
            ch = channel_of.get(sid)
            if ch is not None:
                conflicts[ch] = conflicts.get(ch, 0) + n
        self.broadcast(("final", expected, args.drain_timeout, conflicts))
        await self.wait_for(self.reports, args.drain_timeout + 30, "draining")
        self.progress.done()
        self.stop_workers()
        return build_report(self, info, plan, procs, ramp, booking_seconds, t_final - t_book,
                            expected)


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:  # optional: the standard loop is slower but correct
        return None
    return uvloop.new_event_loop


def run(args: argparse.Namespace) -> int:
    """Run a load test; the exit status (0 ok, 1 loss or disorder, 2 could not run)."""
    try:
        check_args(args)
    except (LoadTestError, ValueError) as exc:
        print(f"realtime loadtest: {exc}", file=sys.stderr)
        return 2
    async def main() -> dict[str, Any]:
        coord = Coordinator(args)
        try:
            return await coord.run()
        finally:
            coord.progress.done()
            coord.stop_workers()
            coord.client.close()

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            report = runner.run(main())
    except (LoadTestError, HttpError) as exc:
        print(f"\nrealtime loadtest: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nrealtime loadtest: interrupted", file=sys.stderr)
        return 130
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(format_report(report))
    return 0 if report["ok"] else 1
