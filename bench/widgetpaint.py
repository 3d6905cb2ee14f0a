"""Scripting time of the booking widget's first paint, in Chromium's performance timeline.

    python bench/widgetpaint.py                      # this tree's widget, 200 slots in view
    mkdir /tmp/base && git archive main | tar -x -C /tmp/base
    python bench/widgetpaint.py --baseline /tmp/base

One server (and, with --baseline DIR, a second one run from the source tree DIR, on the same
scratch database) serves a service with --slots slots, all inside the week the widget opens on.
Each round opens the widget once per variant, in turn (order reversed every round, so both see
the machine's drift alike), each time in a fresh browser context (nothing cached), and reads
Chromium's own counters (the DevTools protocol's Performance.getMetrics, what the Performance
panel adds up as Scripting, Style and Layout) at the moment the last slot is painted: the first
requestAnimationFrame after all of them are in the page. Prints the minimum (the load least in
the way), the median and the 90th percentile per variant, the ratios to the baseline, and the
load average, and writes bench/results/widgetpaint.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lib import pg, server  # noqa: E402
from bench.lib.net import free_port  # noqa: E402
from realtime.db.connect import dsn_for_database  # noqa: E402
from realtime.httpclient import Client  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# Resolves once every slot is in the page and a frame with them has been painted.
PAINTED = """(n) => new Promise((done) => {
  const count = () => {
    const root = document.querySelector("realtime-booking")?.shadowRoot ?? document;
    return root.querySelectorAll("[data-slot-id]").length;
  };
  const check = () => (count() >= n ? requestAnimationFrame(() => setTimeout(done, 0))
                                    : setTimeout(check, 5));
  check();
})"""


async def seed(base: str, n: int) -> str:
    """A service with `n` slots from tomorrow 08:00 UTC on, inside the next six days."""
    http = Client(base, size=1, timeout=30.0)

    async def post(path: str, body: dict[str, Any]) -> Any:
        res = await http.request("POST", path, body)
        assert res.status == 201, (path, res.status, res.body[:200])
        return res.json()

    vendor = await post("/api/vendors", {"name": "Paint bench"})
    svc = await post(f"/api/vendors/{vendor['id']}/services", {"name": "Class"})
    per_day = -(-n // 6)
    first = (datetime.now(UTC) + timedelta(days=1)).replace(hour=8, minute=0, second=0,
                                                            microsecond=0)
    slots = []
    for i in range(n):
        start = first + timedelta(days=i // per_day, minutes=15 * (i % per_day))
        slots.append({"starts_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "ends_at": (start + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "capacity": 1 + i % 12})
    await post(f"/api/services/{svc['id']}/slots", {"slots": slots})
    http.close()
    return str(svc["id"])


async def one_load(browser: Any, url: str, n: int) -> dict[str, float]:
    ctx = await browser.new_context(viewport={"width": 900, "height": 1000})
    try:
        page = await ctx.new_page()
        cdp = await ctx.new_cdp_session(page)
        await cdp.send("Performance.enable")
        await page.goto(url)
        await page.evaluate(PAINTED, n)
        metrics = {m["name"]: m["value"] for m in
                   (await cdp.send("Performance.getMetrics"))["metrics"]}
        return {"script_ms": metrics["ScriptDuration"] * 1000,
                "style_ms": metrics["RecalcStyleDuration"] * 1000,
                "layout_ms": metrics["LayoutDuration"] * 1000,
                "task_ms": metrics["TaskDuration"] * 1000}
    finally:
        await ctx.close()


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for key in runs[0]:
        values = sorted(r[key] for r in runs)
        out[f"{key}_min"] = round(values[0], 1)  # the least disturbed by the machine's load
        out[f"{key}_median"] = round(statistics.median(values), 1)
        out[f"{key}_p90"] = round(values[int(0.9 * (len(values) - 1))], 1)
    return out


async def main(args: argparse.Namespace) -> int:
    from playwright.async_api import async_playwright

    from realtime.db.migrate import migrate

    admin = pg.admin_dsn()
    name = f"rt_bench_{uuid.uuid4().hex[:10]}"
    await pg.create_database(admin, name)
    dsn = dsn_for_database(admin, name)
    await migrate(dsn, echo=lambda _: None)
    variants = {"this tree": ROOT}
    if args.baseline:
        variants["baseline"] = args.baseline
    procs: dict[str, Any] = {}
    logs = ROOT / "bench" / "results" / "widgetpaint.log"
    try:
        ports = {}
        for label, tree in variants.items():
            ports[label] = free_port()
            procs[label] = server.start(ports[label], server.server_env(dsn), source=tree,
                                        log=logs.open("ab"))
        for label in variants:
            await server.until_ready(procs[label], ports[label], log=str(logs))
        service = await seed(f"http://127.0.0.1:{ports['this tree']}", args.slots)
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in variants}
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            order = list(variants)
            await one_load(browser, f"http://127.0.0.1:{ports[order[0]]}/?service={service}",
                           args.slots)  # warm-up: the browser's own first start
            for r in range(args.rounds):
                for label in order if r % 2 == 0 else order[::-1]:
                    url = f"http://127.0.0.1:{ports[label]}/?service={service}"
                    runs[label].append(await one_load(browser, url, args.slots))
            await browser.close()
    finally:
        server.stop(*procs.values())
        await pg.drop_databases(admin, name)
    result: dict[str, Any] = {"slots": args.slots, "rounds": args.rounds,
                              "loadavg": [round(x, 2) for x in os.getloadavg()],
                              "variants": {k: summary(v) for k, v in runs.items()}}
    if args.baseline:
        this, base = (result["variants"][k]["script_ms_median"] for k in ("this tree", "baseline"))
        result["script_ratio_to_baseline"] = round(this / base, 2) if base else None
        this, base = (result["variants"][k]["script_ms_min"] for k in ("this tree", "baseline"))
        result["script_min_ratio_to_baseline"] = round(this / base, 2) if base else None
    for label, s in result["variants"].items():
        print(f"{label:>10}: scripting {s['script_ms_min']} ms min, {s['script_ms_median']} ms"
              f" median, {s['script_ms_p90']} ms p90; style {s['style_ms_median']} ms, layout"
              f" {s['layout_ms_median']} ms (medians)")
    if args.baseline:
        print(f"scripting, this tree / baseline: {result['script_ratio_to_baseline']} (medians),"
              f" {result['script_min_ratio_to_baseline']} (minimums)")
    print(f"load average: {result['loadavg']}")
    out = ROOT / "bench" / "results" / "widgetpaint.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slots", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--baseline", default="", help="a source tree to compare with (its server)")
    options = ap.parse_args()
    if options.baseline:
        options.baseline = Path(options.baseline).resolve()
    raise SystemExit(asyncio.run(main(options)))
