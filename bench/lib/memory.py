"""`bench/fanout.py --memory`: memory per idle subscribed socket at 1k/5k/10k, of this tree and
of a baseline tree side by side, and what each socket's objects cost.

Each server runs with a memory probe inside (bench/lib/memprobe.py). Steps: the sockets of
the fan-out benchmark's memory phase (subscribed to ten channels, idle), RSS growth over the
RSS before the first socket, divided by the sockets. Then, with `--breakdown`, one more server
per tree with tracemalloc on: 2,000 sockets opened between two snapshots, the difference per
socket by file and line, and the objects that the garbage collector tracks, by type.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.lib import pg
from bench.lib.memprobe import probed_server
from bench.lib.subscribers import Workers

STEPS = (1000, 5000, 10000)
BREAKDOWN_SOCKETS = 2000


async def _open(workers: Workers, channels: list[str], add: int) -> None:
    for k, channel in enumerate(channels):
        n = add // len(channels) + (1 if k < add % len(channels) else 0)
        if n:
            workers.call("open", channel, split=n)


async def _steps(dsn: str, channels: list[str], source: Path, scratch: Path,
                 steps: tuple[int, ...]) -> list[dict[str, Any]]:
    async with probed_server(dsn, source, scratch) as (probed, workers, before):
        base = before["rss_kib"]
        out = []
        opened = 0
        for step in steps:
            await _open(workers, channels, step - opened)
            opened = step
            await asyncio.sleep(2.0)
            rss = probed.ask()["rss_kib"]
            out.append({"sockets": step, "rss_mib": round(rss / 1024, 1),
                        "kib_per_socket": round((rss - base) / step, 1)})
            print("memory", source, out[-1], flush=True)
        return out


async def _breakdown(dsn: str, channels: list[str], source: Path,
                     scratch: Path) -> dict[str, Any]:
    n = BREAKDOWN_SOCKETS
    async with probed_server(dsn, source, scratch, trace=True) as (probed, workers, before):
        await _open(workers, channels, n)
        await asyncio.sleep(2.0)
        after = probed.ask(types_too=True)
    return {
        "sockets": n,
        "traced_bytes_per_socket": round((after["traced_bytes"] - before["traced_bytes"]) / n),
        "files": [{**f, "bytes": round(f["bytes"] / n), "blocks": round(f["blocks"] / n, 2)}
                  for f in after["files"] if abs(f["bytes"]) >= n * 40],
        "lines": [{**f, "bytes": round(f["bytes"] / n), "blocks": round(f["blocks"] / n, 2)}
                  for f in after["lines"] if abs(f["bytes"]) >= n * 60],
        "types": [[name, round(count / n, 2)] for name, count in after["types_grown"]
                  if count >= n * 0.9],
    }


def table(results: dict[str, Any]) -> str:
    labels = list(results["steps"])
    head = "| sockets | " + " | ".join(f"{label}: RSS MiB | {label}: KiB per socket"
                                        for label in labels) + " |"
    lines = [head, "|---|" + "---|---|" * len(labels)]
    for i, step in enumerate(results["steps"][labels[0]]):
        cells = []
        for label in labels:
            row = results["steps"][label][i]
            cells.append(f"{row['rss_mib']} | **{row['kib_per_socket']}**")
        lines.append(f"| {step['sockets']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def run_memory(args: argparse.Namespace, make_database: Any, seed: Any) -> dict[str, Any]:
    variants = [("this tree", args.source)]
    if args.baseline is not None:
        variants.append(("baseline", args.baseline))
    steps = STEPS if not args.quick else (1000, 2000, 3000)
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_before": [round(x, 2) for x in os.getloadavg()], "steps": {}, "breakdown": {}}
    name, dsn = await make_database()
    try:
        world = await seed(dsn)
        channels = [f"service:{svc['id']}" for svc in world["services"][1:]]
        with tempfile.TemporaryDirectory() as scratch:
            for label, source in variants:
                results["steps"][label] = await _steps(dsn, channels, source, Path(scratch),
                                                       steps)
            if args.breakdown:
                for label, source in variants:
                    results["breakdown"][label] = await _breakdown(dsn, channels, source,
                                                                   Path(scratch))
    finally:
        await pg.drop_databases(pg.admin_dsn(), name)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def report(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(table(results))
    for label, b in results["breakdown"].items():
        print(f"\n{label}: {b['traced_bytes_per_socket']} bytes traced per socket")
        for f in b["files"]:
            print(f"  {f['bytes']:6} B {f['blocks']:6} blocks  {f['where']}")
        for name, count in b["types"]:
            print(f"  {count:6} x {name}")
    print(f"load average {results['load_before']} before, {results['load_after']} after")
