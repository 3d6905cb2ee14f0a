"""Take docs/widget.png: the demo widget in use, in headless Chromium.

Usage: python scripts/widget_screenshot.py [--url http://127.0.0.1:8000/] [--out docs/widget.png]
       [--width 900] [--height 1100] [--no-bookings]

Needs a running `realtime serve --demo`. Books a few units over HTTP first (so the picture shows
free, low, full and booked-by-you slots) unless --no-bookings, opens three pages (so presence
shows people looking), books one slot from the page, and screenshots it.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _post(url: str, body: dict) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=10).read()
    except urllib.error.HTTPError:
        pass


ARM = """([id, at]) => { setTimeout(
    () => document.querySelector(`[data-slot-id="${id}"]`).click(), Math.max(0, at - Date.now())); }"""


def _lose_a_race(page, rival) -> None:
    """Race `rival` for single-unit slots until `page` loses one: shows the conflict notice."""
    ids = page.eval_on_selector_all(
        "[data-slot-id][data-state=available]",
        "els => els.filter(e => /:.*Free/.test(e.textContent)).map(e => e.dataset.slotId)")
    for sid in ids[4:12]:
        at = page.evaluate("Date.now()") + 300
        rival.evaluate(ARM, [sid, at - 5])  # the rival clicks a hair earlier
        page.evaluate(ARM, [sid, at])
        page.wait_for_timeout(1200)
        if page.locator("#rt-notice:not([hidden])").count():
            return
        page.locator(f'#rt-mine [data-cancel-slot="{sid}"]').click() if page.locator(
            f'#rt-mine [data-cancel-slot="{sid}"]').count() else None
        page.wait_for_timeout(300)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000/")
    ap.add_argument("--out", default="docs/widget.png")
    ap.add_argument("--width", type=int, default=900)
    ap.add_argument("--height", type=int, default=1100)
    ap.add_argument("--scale", type=float, default=1.5)
    ap.add_argument("--no-bookings", action="store_true")
    ap.add_argument("--conflict", action="store_true",
                    help="lose a race for a slot first, so the picture shows the conflict notice")
    args = ap.parse_args()
    base = args.url.rstrip("/")

    if not args.no_bookings:
        vendor = _get(f"{base}/api/demo")["vendor_id"]
        from datetime import UTC, datetime, timedelta
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        frm = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        to = (now + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
        slots = _get(f"{base}/api/vendors/{vendor}/availability?from={frm}&to={to}")["slots"]
        singles = [s for s in slots if s["capacity"] == 1 and s["available"] == 1]
        multi = [s for s in slots if s["capacity"] > 1]
        # Some appointments taken by other customers, a class nearly full.
        for s in singles[1:12:3]:
            _post(f"{base}/api/bookings", {"slot_id": s["id"], "customer_id": "someone-else"})
        for s in multi[:1]:
            _post(f"{base}/api/bookings", {"slot_id": s["id"], "quantity": s["available"] - 1,
                                           "customer_id": "a-group"})

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": args.width, "height": args.height},
                                  device_scale_factor=args.scale)
        others = [ctx.new_page() for _ in range(2)]
        for o in others:
            o.goto(args.url)
        page = ctx.new_page()
        page.goto(args.url)
        page.wait_for_selector("[data-slot-id]")
        try:
            page.wait_for_selector("[data-connection=live]", timeout=5000)
        except Exception:
            print("warning: the widget is not live (is /ws up?)", file=sys.stderr)
        # Appointments (a time like 3:00), not multi-day rentals.
        free = page.locator("[data-slot-id][data-state=available]").filter(has_text=":")
        if free.count() > 3:
            free.nth(3).click()
            page.wait_for_selector("[data-state=mine]", timeout=5000)
        if args.conflict:
            _lose_a_race(page, others[0])
        page.wait_for_timeout(1500)  # presence is sent at most once a second
        page.mouse.move(0, 0)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.out)
        print(f"wrote {args.out}")
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
