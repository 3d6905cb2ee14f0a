"""What splitting realtime.js into modules costs a page: the time to import the client library
in Chromium over an emulated slow network, single file against modules, side by side.

    python bench/clientload.py                     # ~1 min
    python bench/clientload.py --rtt 150 --rounds 9

Three variants, served by the server's own /static code (StaticFiles behind PublicStatic: CORS,
`no-cache`, ETag) from one temporary directory, by uvicorn in this process:
`single` (realtime.js as one file, as of the commit given by --base), `modules` (the entry point
and static/realtime/ as they are now), and `modules-nested`, the same modules with the
entry point importing only what it re-exports (the browser discovers the rest one level at a
time). Each round opens a fresh browser context per variant (cold: nothing cached) and times
`await import(...)`, then reloads the page and times it again (warm: every file revalidated, 304).
Chromium's network emulation adds --rtt ms to every request. Figures are medians over rounds;
the variants take turns in a rotated order.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import HTMLResponse  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402

from realtime.http.system import PublicStatic  # noqa: E402

STATIC = ROOT / "realtime" / "static"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic"]


def build(base: str, tmp: Path) -> dict[str, str]:
    """The three variants under tmp/static; returns each one's entry URL path."""
    static = tmp / "static"
    (static / "single").mkdir(parents=True)
    single = subprocess.run(["git", "show", f"{base}:realtime/static/realtime.js"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    (static / "single" / "realtime.js").write_text(single)
    shutil.copytree(STATIC / "realtime", static / "modules" / "realtime")
    entry = (STATIC / "realtime.js").read_text()
    (static / "modules" / "realtime.js").write_text(entry)
    shutil.copytree(STATIC / "realtime", static / "nested" / "realtime")
    # Only the re-exports: what the entry point would be without its flat list of imports.
    nested = "\n".join(line for line in entry.splitlines() if not re.match(r'^import "\./realtime/', line))
    (static / "nested" / "realtime.js").write_text(nested)
    return {"single": "/static/single/realtime.js", "modules": "/static/modules/realtime.js",
            "modules-nested": "/static/nested/realtime.js"}


def serve(directory: Path) -> tuple[uvicorn.Server, int]:
    page = HTMLResponse("<!doctype html><title>load</title>")
    app = Starlette(routes=[Route("/", lambda request: page),
                            Mount("/static", PublicStatic(StaticFiles(directory=directory)))])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, port


IMPORT = """async (url) => {
  const t0 = performance.now();
  const m = await import(url);
  if (typeof m.RealtimeClient !== "function") throw new Error("no client");
  return performance.now() - t0;
}"""


async def measure(browser: Any, origin: str, path: str, rtt: float) -> tuple[float, float, int]:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/static/" in r.url else None)
    cdp = await ctx.new_cdp_session(page)
    await cdp.send("Network.enable")
    await cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": rtt, "downloadThroughput": -1, "uploadThroughput": -1})
    await page.goto(origin + "/")
    cold = await page.evaluate(IMPORT, path)
    files = len(requests)
    await page.reload()
    warm = await page.evaluate(IMPORT, path)
    await ctx.close()
    return cold, warm, files


async def run(args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as tmp:
        variants = build(args.base, Path(tmp))
        server, port = serve(Path(tmp) / "static")
        origin = f"http://127.0.0.1:{port}"
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            names = list(variants)
            for r in range(args.rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    results[name].append(await measure(browser, origin, variants[name], args.rtt))
            await browser.close()
        server.should_exit = True
    load = os.getloadavg()
    print(f"import of the client library in Chromium, {args.rtt:g} ms emulated RTT, median of "
          f"{args.rounds} rounds (load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    print(f"{'variant':<16}{'files':>6}{'cold ms':>10}{'warm ms':>10}")
    for name, rows in results.items():
        cold = statistics.median(r[0] for r in rows)
        warm = statistics.median(r[1] for r in rows)
        print(f"{name:<16}{rows[0][2]:>6}{cold:>10.0f}{warm:>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtt", type=float, default=100.0, help="emulated round-trip time, ms")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--base", default="c321e4d", help="the commit whose single-file realtime.js to compare")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
