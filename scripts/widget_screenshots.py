"""Screenshots of every state of the booking widget, for docs/widget.md and the README.

Usage: python scripts/widget_screenshots.py [--out docs] [--database-url URL]

Starts its own `realtime serve` on a free port (on DATABASE_URL or --database-url when given,
else on an embedded PostgreSQL in a temporary directory), makes a vendor with its own slots over
the HTTP API, drives the widget in headless Chromium (/usr/bin/chromium, as the browser tests
do) into each state, and writes docs/img/widget-<state>.png and docs/widget.png. A second local
HTTP server on another port plays "another site" for the embedded picture.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARM = """([id, at]) => setTimeout(() => document.querySelector("realtime-booking").shadowRoot
    .querySelector(`[data-slot-id="${id}"]`).click(), Math.max(0, at - Date.now()))"""
SHOP = """<!doctype html><html lang="en"><meta charset="utf-8">
<title>Studio Nord: book online</title>
<style>
  body { margin: 0; font: 17px/1.5 Georgia, serif; background: #fbf7f0; color: #2b2118; }
  header { padding: 1.2rem 2rem; background: #2b2118; color: #fbf7f0; }
  main { max-width: 860px; margin: 1.5rem auto; padding: 0 1rem; }
  button { background: hotpink; }  /* the shop's own buttons: not the widget's */
</style>
<header><strong>Studio Nord</strong> · Haircuts and yoga since 1998</header>
<main><h1>Book online</h1><p>Pick a time below; it is yours the moment you click.</p>
<script type="module" src="SERVER/static/widget.js"></script>
<realtime-booking vendor="VENDOR" server="SERVER"></realtime-booking></main></html>"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(base: str, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b"{}")


def at(days: int, hour: int, minutes: int = 45) -> tuple[str, str]:
    start = (datetime.now(UTC) + timedelta(days=days)).replace(hour=hour, minute=0, second=0,
                                                               microsecond=0)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return start.strftime(fmt), (start + timedelta(minutes=minutes)).strftime(fmt)


def seed(base: str) -> dict:
    vendor = call(base, "POST", "/api/vendors", {"name": "Studio Nord"})
    cut = call(base, "POST", f"/api/vendors/{vendor['id']}/services", {"name": "Haircut"})
    yoga = call(base, "POST", f"/api/vendors/{vendor['id']}/services", {"name": "Yoga class"})
    quiet = call(base, "POST", f"/api/vendors/{vendor['id']}/services", {"name": "Colour"})
    cuts = [dict(zip(("starts_at", "ends_at"), at(d, h), strict=True), capacity=1)
            for d in range(1, 6) for h in (9, 10, 11, 13, 14, 15)]
    classes = [dict(zip(("starts_at", "ends_at"), at(d, 18, 60), strict=True), capacity=12)
               for d in range(1, 6)]
    later = [dict(zip(("starts_at", "ends_at"), at(d, 10, 90), strict=True), capacity=1)
             for d in (16, 17)]
    cut_slots = call(base, "POST", f"/api/services/{cut['id']}/slots", {"slots": cuts})["slots"]
    yoga_slots = call(base, "POST", f"/api/services/{yoga['id']}/slots", {"slots": classes})["slots"]
    call(base, "POST", f"/api/services/{quiet['id']}/slots", {"slots": later})
    cut_slots.sort(key=lambda s: s["starts_at"])
    yoga_slots.sort(key=lambda s: s["starts_at"])
    for s in cut_slots[1:20:3]:  # other customers' bookings
        call(base, "POST", "/api/bookings", {"slot_id": s["id"], "customer_id": "someone-else"})
    for s, n in zip(yoga_slots, (9, 4, 12, 2), strict=False):
        call(base, "POST", "/api/bookings", {"slot_id": s["id"], "quantity": n,
                                             "customer_id": "a-group"})
    return {"vendor": vendor["id"], "cut": cut["id"], "yoga": yoga["id"], "quiet": quiet["id"],
            "cut_slots": cut_slots, "yoga_slots": yoga_slots}


class Site:
    """Another origin: a plain static web server on its own port, serving one page from a
    temporary directory."""

    def __init__(self, directory: str) -> None:
        self.page = Path(directory) / "index.html"
        handler = functools.partial(Quiet, directory=directory)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def start_server(port: int, database_url: str | None, data_dir: str, origin: str):
    env = {**os.environ, "REALTIME_ALLOWED_ORIGINS": origin, "REALTIME_RATE_LIMIT": "0",
           "REALTIME_DATA_DIR": data_dir, "LOG_LEVEL": "warning"}
    if database_url:
        env["DATABASE_URL"] = database_url
    proc = subprocess.Popen([sys.executable, "-m", "realtime", "serve", "--port", str(port)],
                            env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=1):
                return proc, base
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("the server did not get ready in 90 s")


def shoot(page, out: Path, name: str) -> None:
    page.mouse.move(0, 0)
    page.wait_for_timeout(400)  # animations settle
    page.evaluate("window.scrollTo(0, 0)")
    # The whole page, not the element: an element taller than the window is shot while scrolled,
    # with the sticky day bar painted over it.
    page.screenshot(path=str(out / f"widget-{name}.png"), full_page=True)
    print(f"wrote {out / f'widget-{name}.png'}")


def lose_a_race(page, rival, slots: list[dict]) -> bool:
    """Race `rival` for single-unit slots until `page` loses one (the conflict notice)."""
    for s in slots:
        if page.get_attribute(f'[data-slot-id="{s["id"]}"]', "data-state") != "available":
            continue
        when = page.evaluate("Date.now()") + 300
        rival.evaluate(ARM, [s["id"], when - 5])  # the rival clicks a hair earlier
        page.evaluate(ARM, [s["id"], when])
        page.wait_for_timeout(1200)
        if page.locator('#rt-notice[data-kind="conflict"]:not([hidden])').count():
            return True
    return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs")
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = ap.parse_args()
    docs = Path(args.out)
    out = docs / "img"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as www:
        site = Site(www)
        proc, base = start_server(free_port(), args.database_url, data_dir, site.origin)
        try:
            d = seed(base)
            site.page.write_text(SHOP.replace("SERVER", base).replace("VENDOR", d["vendor"]))
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=CHROMIUM_ARGS)
                take(browser, base, site, d, out, docs)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(30)
            site.httpd.shutdown()
    return 0


def take(browser, base: str, site: Site, d: dict, out: Path, docs: Path) -> None:
    def page(url: str, width: int = 900, height: int = 1000, slots: bool = True):
        ctx = browser.new_context(viewport={"width": width, "height": height},
                                  device_scale_factor=1)
        pg = ctx.new_page()
        pg.goto(url)
        if slots:
            pg.wait_for_selector("[data-slot-id]")
        pg.wait_for_selector("[data-connection=live]")
        return pg

    vendor = f"{base}/?vendor={d['vendor']}"
    week = page(vendor)
    rival = page(vendor)
    free = week.locator("[data-slot-id][data-state=available]")
    free.nth(2).click()
    week.wait_for_selector("[data-state=mine]")
    week.wait_for_timeout(1200)  # presence: at most once a second
    shoot(week, out, "week")
    week.screenshot(path=str(docs / "widget.png"))
    print(f"wrote {docs / 'widget.png'}")
    if lose_a_race(week, rival, d["cut_slots"][6:]):
        shoot(week, out, "conflict")
    else:
        print("warning: never lost a race; widget-conflict.png not taken", file=sys.stderr)

    yoga = page(f"{base}/?service={d['yoga']}")
    qty = yoga.locator(f'[data-slot-id="{d["yoga_slots"][1]["id"]}"] input[data-quantity]')
    qty.fill("3")
    qty.focus()
    shoot(yoga, out, "quantity")

    held = page(f"{base}/?service={d['yoga']}&checkout=hold")
    held.locator(f'[data-slot-id="{d["yoga_slots"][4]["id"]}"] input[data-quantity]').fill("2")
    held.locator(f'[data-slot-id="{d["yoga_slots"][4]["id"]}"]').click()
    held.wait_for_selector("[data-hold-expires]")
    held.wait_for_timeout(1500)
    shoot(held, out, "held")

    expiring = page(f"{base}/?service={d['cut']}&checkout=hold&hold_ttl=2")
    expiring.locator("[data-slot-id][data-state=available]").first.click()
    expiring.wait_for_selector("[data-hold-expires]")
    expiring.wait_for_selector('#rt-notice[data-kind="info"]:not([hidden])', timeout=10_000)
    shoot(expiring, out, "expired")

    empty = page(f"{base}/?service={d['quiet']}", slots=False)
    empty.wait_for_selector('[data-nav="next-free"]')
    shoot(empty, out, "empty")

    offline = page(f"{base}/?service={d['cut']}")
    offline.context.set_offline(True)
    offline.wait_for_selector("[data-connection=offline]")
    offline.locator("[data-slot-id][data-state=available]").first.click()
    offline.wait_for_selector('#rt-notice[data-kind="offline"]:not([hidden])')
    shoot(offline, out, "offline")
    offline.context.set_offline(False)

    phone = page(f"{base}/?service={d['yoga']}&checkout=hold", width=375, height=812)
    phone.locator("[data-slot-id][data-state=available]").first.click()
    phone.wait_for_selector("[data-hold-expires]")
    phone.evaluate("window.scrollTo(0, 0)")
    phone.wait_for_timeout(400)
    phone.screenshot(path=str(out / "widget-phone.png"))
    print(f"wrote {out / 'widget-phone.png'}")

    ctx = browser.new_context(viewport={"width": 1000, "height": 1100}, device_scale_factor=1)
    shop = ctx.new_page()
    shop.goto(f"{site.origin}/")
    shop.wait_for_selector("[data-connection=live]")
    shop.wait_for_timeout(600)
    shop.screenshot(path=str(out / "widget-embedded.png"))
    print(f"wrote {out / 'widget-embedded.png'}")


if __name__ == "__main__":
    raise SystemExit(main())
