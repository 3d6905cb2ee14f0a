"""Memory under reconnect churn: a server's peak RSS while sockets come and go, against its RSS
with the same number of sockets open and still.

    python bench/churn.py                       # 100/s and 1,000/s, this tree
    python bench/churn.py --baseline /tmp/base  # and another source tree, side by side

For each rate, each server (this tree, then the baseline's) starts on one scratch database
with a memory probe inside (bench/lib/memprobe.py), 4 client processes open 500 subscribed
sockets (the steady state: its RSS is measured after a few seconds), then run connect,
subscribe, wait for `subscribed`, close cycles at the rate, each new socket replacing the
oldest so that 500 stay open. The peak is the process's own high-water mark (VmHWM, reset
after the steady measurement). The garbage-collector pauses are every collection's, timed
by a callback in the server, during the churn.

Writes bench/results/churn.json and prints a Markdown table (docs/benchmarks-memory.md).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fanout import make_database, seed  # noqa: E402
from bench.lib import pg  # noqa: E402
from bench.lib.cpu import proc_rss_kib  # noqa: E402
from bench.lib.memprobe import probed_server  # noqa: E402
from bench.lib.stats import percentile  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "churn.json"
LIVE = 500
# Cycles per rate: a minute at 100/s (the old code thawed at most once a minute), and the
# 20,000 a new user tried at 1,000/s.
CYCLES = {100: 6000, 1000: 20000}


def reset_peak(pid: int) -> None:
    """VmHWM := VmRSS, so that the peak read later is the churn's."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def one_run(dsn: str, channels: list[str], source: Path, rate: int, cycles: int,
                  scratch: Path) -> dict[str, Any]:
    async with probed_server(dsn, source, scratch) as (probed, workers, before):
        n = len(workers.pipes)
        for i, pipe in enumerate(workers.pipes):
            pipe.send(("churn", rate / n, cycles // n, LIVE // n, channels[i % len(channels)]))
        opened = sum(pipe.recv() for pipe in workers.pipes)
        await asyncio.sleep(3.0)
        steady = probed.ask()["rss_kib"]
        reset_peak(probed.proc.pid)
        for pipe in workers.pipes:
            pipe.send("go")
        sampled = 0
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(None, lambda: [pipe.recv() for pipe in workers.pipes])
        while not done.done():
            sampled = max(sampled, proc_rss_kib(probed.proc.pid))
            await asyncio.sleep(0.1)
        reports = await done
        peak = max(sampled, proc_rss_kib(probed.proc.pid, "VmHWM"))
        after = probed.ask()
    seconds = max(r["seconds"] for r in reports)
    done_cycles = sum(r["cycles"] for r in reports)
    return {
        "rate": rate, "cycles": done_cycles, "seconds": seconds,
        "achieved_per_s": round(done_cycles / seconds),
        "failed": sum(r["failed"] for r in reports), "live": opened,
        "base_mib": round(before["rss_kib"] / 1024, 1), "steady_mib": round(steady / 1024, 1),
        "peak_mib": round(peak / 1024, 1), "end_mib": round(after["rss_kib"] / 1024, 1),
        "peak_over_steady": round(peak / steady, 2),
        **pause_figures(after["pauses"]),
    }


def pause_figures(pauses: list[list[float]]) -> dict[str, Any]:
    """Count, p99 and max of the collections' pauses: wall time (what a client waits) and the
    process's CPU time (what the collector cost, whatever else ran on the cores)."""
    out: dict[str, Any] = {"collections": len(pauses),
                           "full_collections": sum(1 for p in pauses if p[0] == 2)}
    for name, k in (("wall", 1), ("cpu", 2)):
        values = sorted(p[k] for p in pauses)
        out[f"pause_total_{name}_ms"] = round(sum(values), 1)
        out[f"pause_p99_{name}_ms"] = round(percentile(values, 0.99), 2) if values else None
        out[f"pause_max_{name}_ms"] = round(values[-1], 2) if values else None
    return out


def table(runs: list[dict[str, Any]]) -> str:
    lines = ["| server | rate asked (done) /s | cycles | failed | RSS before sockets (MiB) | "
             "steady, 500 open (MiB) | peak under churn (MiB) | peak / steady | "
             "collections (full) | pauses: total / p99 / max, wall (ms) | "
             "pauses: total / p99 / max, CPU (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(
            f"| {r['server']} | {r['rate']:,} ({r['achieved_per_s']:,}) | {r['cycles']:,} | "
            f"{r['failed']} | {r['base_mib']} | {r['steady_mib']} | {r['peak_mib']} | "
            f"**{r['peak_over_steady']}x** | {r['collections']} ({r['full_collections']}) | "
            f"{r.get('pause_total_wall_ms', '-')} / {r['pause_p99_wall_ms']} / "
            f"{r['pause_max_wall_ms']} | {r.get('pause_total_cpu_ms', '-')} / "
            f"{r['pause_p99_cpu_ms']} / {r['pause_max_cpu_ms']} |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    variants = [("this tree", ROOT)]
    if args.baseline is not None:
        variants.append(("baseline", args.baseline))
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_before": [round(x, 2) for x in os.getloadavg()], "runs": []}
    name, dsn = await make_database()
    try:
        world = await seed(dsn)
        channels = [f"service:{svc['id']}" for svc in world["services"][1:5]]
        with tempfile.TemporaryDirectory() as scratch:
            for rate in args.rates:
                cycles = args.cycles or CYCLES.get(rate, rate * 20)
                for label, source in variants:
                    r = await one_run(dsn, channels, source, rate, cycles, Path(scratch))
                    r["server"] = label
                    print(json.dumps(r), flush=True)
                    results["runs"].append(r)
    finally:
        await pg.drop_databases(pg.admin_dsn(), name)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run the server from this source tree, side by side")
    parser.add_argument("--rates", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--cycles", type=int, default=0,
                        help="cycles per rate (default: 6,000 at 100/s, 20,000 at 1,000/s)")
    args = parser.parse_args()
    started = time.monotonic()
    results = asyncio.run(run(args))
    results["wall_s"] = round(time.monotonic() - started)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(table(results["runs"]))
    print(f"load average {results['load_before']} before, {results['load_after']} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
