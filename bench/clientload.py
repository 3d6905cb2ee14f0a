"""What it costs a page to load the client library: the time from opening a page until
`realtime.js` is imported in Chromium over an emulated slow network, for each way of serving it,
side by side, on a first visit and on the next one.

    python bench/clientload.py                     # ~1 min
    python bench/clientload.py --rtt 150 --rounds 9

Five variants, each a page whose inline module imports the client and notes `performance.now()`
(counted from the start of the navigation, so the page's own round trip is in every figure),
served by the server's own /static code (realtime/http/assets.py) by uvicorn in this process:

- `single`: realtime.js as one file, as of the commit given by --base, unversioned (`no-cache`);
- `modules`: the entry point and static/realtime/ as they are now, at the unversioned URL
  (`no-cache`, ETag): what a page that imports /static/realtime.js gets, as before versioned URLs;
- `modules-nested`: the same, with the entry point importing only what it re-exports (the
  browser discovers the rest one level at a time);
- `versioned`: the same modules at /static/v/<version>/ (immutable), imported by URL alone;
- `versioned+preload`: that, and the page lists the module graph as `<link rel="modulepreload">`
  and in a `Link` header, as the demo page at GET / does;
- `modules h2`, `versioned+preload h2`: those two pages through nginx speaking HTTP/2 over TLS to
  the browser (a self-signed certificate, in a temporary directory), which lifts HTTP/1.1's limit
  of six requests at a time per server (`--no-http2` leaves them out).

Each round opens a fresh browser context per variant (first visit: nothing cached), then opens
the page again in that context (next visit: what the cache answers alone, what it revalidates).
Chromium's network emulation adds --rtt ms to every request; it speaks HTTP/1.1 to uvicorn, at
most six connections at a time, except through nginx. `files` counts the JavaScript requests the server received per
visit. Figures are medians over rounds, and minimums (the figure the machine's load disturbs
least: a server starved of CPU answers late); the variants take turns in a rotated order. The
figures go to bench/results/clientload.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
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
from starlette.requests import Request  # noqa: E402
from starlette.responses import HTMLResponse  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402
from starlette.types import Receive, Scope, Send  # noqa: E402

from realtime.http.assets import Assets, PublicStatic  # noqa: E402

STATIC = ROOT / "realtime" / "static"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic"]
NGINX = """daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    upstream app {{ server 127.0.0.1:{upstream}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {tmp}/cert.pem;
        ssl_certificate_key {tmp}/key.pem;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
RESULTS = ROOT / "bench" / "results" / "clientload.json"
PAGE = """<!doctype html><title>load</title>
{preloads}<script type="module">
import {{ RealtimeClient }} from "{entry}";
if (typeof RealtimeClient !== "function") throw new Error("no client");
window.loaded = performance.now();
</script>"""


def build(base: str, tmp: Path) -> None:
    """tmp/static: realtime.js and realtime/ as now; tmp/single: --base's one file; tmp/nested."""
    single = subprocess.run(["git", "show", f"{base}:realtime/static/realtime.js"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    (tmp / "single").mkdir()
    (tmp / "single" / "realtime.js").write_text(single)
    entry = (STATIC / "realtime.js").read_text()
    for name in ("static", "nested"):
        shutil.copytree(STATIC / "realtime", tmp / name / "realtime")
    (tmp / "static" / "realtime.js").write_text(entry)
    # Only the re-exports: what the entry point would be without its flat list of imports.
    nested = "\n".join(line for line in entry.splitlines() if not re.match(r'^import "\./realtime/', line))
    (tmp / "nested" / "realtime.js").write_text(nested)


class Counted:
    """The app, counting the JavaScript files it is asked for (a 304 counts too)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.files = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).endswith(".js"):
            self.files += 1
        await self.app(scope, receive, send)


def pages(assets: Assets) -> dict[str, tuple[str, str]]:
    """Each variant's page: (HTML, Link header)."""
    graph = [assets.url(rel) for rel in assets.graphs["realtime.js"]]
    tags = "".join(f'<link rel="modulepreload" href="{url}">\n' for url in graph)
    link = ", ".join(f"<{url}>; rel=modulepreload" for url in graph)
    entries = {"single": "/single/realtime.js", "modules": "/static/realtime.js",
               "modules-nested": "/nested/realtime.js", "versioned": assets.url("realtime.js")}
    variants = {name: (PAGE.format(preloads="", entry=url), "") for name, url in entries.items()}
    variants["versioned+preload"] = (PAGE.format(preloads=tags, entry=assets.url("realtime.js")), link)
    return variants


def serve(tmp: Path) -> tuple[uvicorn.Server, int, Counted, dict[str, tuple[str, str]]]:
    assets = Assets(tmp / "static")
    variants = pages(assets)

    def page(request: Request) -> HTMLResponse:
        html, link = variants[request.path_params["variant"]]
        return HTMLResponse(html, headers={"Cache-Control": "no-cache", **({"Link": link} if link else {})})

    app = Counted(Starlette(routes=[
        Route("/page/{variant}", page),
        Mount("/single", PublicStatic(StaticFiles(directory=tmp / "single"))),
        Mount("/nested", PublicStatic(StaticFiles(directory=tmp / "nested"))),
        Mount("/static/v/{version}", assets.versioned),
        Mount("/static", assets.unversioned),
    ]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, port, app, variants


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_h2(tmp: Path, upstream: int) -> tuple[subprocess.Popen[bytes], int, str]:
    """nginx on a free port, HTTP/2 over TLS, in front of the app on `upstream`; and the
    Chromium flag that trusts its certificate (made for this run). Trusted, not merely let
    through with --ignore-certificate-errors: Chromium caches nothing from a host whose
    certificate is in error, which would make every next visit a first one."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem")],
                   check=True, capture_output=True)
    public = subprocess.run(["openssl", "x509", "-in", str(tmp / "cert.pem"), "-pubkey", "-noout"],
                            check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=public,
                         check=True, capture_output=True).stdout
    trust = "--ignore-certificate-errors-spki-list=" + base64.b64encode(hashlib.sha256(der).digest()).decode()
    port = free_port()
    (tmp / "nginx.conf").write_text(NGINX.format(tmp=tmp, upstream=upstream, port=port))
    proc = subprocess.Popen(["nginx", "-e", str(tmp / "nginx.log"), "-p", str(tmp),
                             "-c", str(tmp / "nginx.conf")], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port, trust
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {(tmp / 'nginx.log').read_text()}") from None
            time.sleep(0.05)


async def visit(ctx: Any, url: str, rtt: float, counted: Counted) -> tuple[float, int]:
    """Opens `url` in a new page of `ctx`: ms until the client was imported, files asked for."""
    page = await ctx.new_page()
    cdp = await ctx.new_cdp_session(page)
    await cdp.send("Network.enable")
    await cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": rtt, "downloadThroughput": -1, "uploadThroughput": -1})
    counted.files = 0
    await page.goto(url)
    await page.wait_for_function("window.loaded !== undefined", timeout=30_000)
    ms = await page.evaluate("window.loaded")
    files = counted.files
    await page.close()
    return float(ms), files


async def measure(browser: Any, url: str, rtt: float, counted: Counted) -> dict[str, float]:
    ctx = await browser.new_context()
    cold, cold_files = await visit(ctx, url, rtt, counted)
    warm, warm_files = await visit(ctx, url, rtt, counted)
    await ctx.close()
    return {"cold": cold, "warm": warm, "cold_files": cold_files, "warm_files": warm_files}


async def run(args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as tmp:
        build(args.base, Path(tmp))
        server, port, counted, variants = serve(Path(tmp))
        urls = {name: f"http://127.0.0.1:{port}/page/{name}" for name in variants}
        nginx, flags = None, []
        if args.http2:
            nginx, tls_port, trust = nginx_h2(Path(tmp), port)
            flags.append(trust)
            urls |= {f"{name} h2": f"https://127.0.0.1:{tls_port}/page/{name}"
                     for name in ("modules", "versioned+preload")}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS + flags)
                names = list(urls)
                for r in range(args.rounds):
                    for name in names[r % len(names):] + names[:r % len(names)]:
                        results[name].append(await measure(browser, urls[name], args.rtt, counted))
                await browser.close()
        finally:
            if nginx is not None:
                nginx.terminate()
                nginx.wait(10)
            server.should_exit = True
    load = os.getloadavg()
    rows = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            | {"cold_min": min(r["cold"] for r in runs), "warm_min": min(r["warm"] for r in runs)}
            for name, runs in results.items()}
    print(f"page open until the client library is imported, Chromium, {args.rtt:g} ms emulated RTT, "
          f"median of {args.rounds} rounds (load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    print(f"{'':<24}{'first visit':^22}{'next visit':^22}")
    print(f"{'variant':<24}{'files':>6}{'median':>8}{'min':>8}{'files':>6}{'median':>8}{'min':>8}")
    for name, row in rows.items():
        print(f"{name:<24}{row['cold_files']:>6.0f}{row['cold']:>8.0f}{row['cold_min']:>8.0f}"
              f"{row['warm_files']:>6.0f}{row['warm']:>8.0f}{row['warm_min']:>8.0f}")
    RESULTS.write_text(json.dumps({"rtt_ms": args.rtt, "rounds": args.rounds, "base": args.base,
                                   "load_average": [round(x, 1) for x in load], "median": rows,
                                   "runs": results}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtt", type=float, default=100.0, help="emulated round-trip time, ms")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--base", default="c321e4d", help="the commit whose single-file realtime.js to compare")
    parser.add_argument("--no-http2", dest="http2", action="store_false",
                        help="leave out the variants through nginx (HTTP/2)")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
