"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, and a real server.

The server is `python -m realtime serve` as a subprocess against a fresh database (the shared
`database_url` fixture and `tests.support.server.ServerProcess`), so the pages talk to exactly
what a user would run. Chromium is /usr/bin/chromium (scripts/install-browser.sh).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import importlib.util
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio

from tests.support.databases import create_database, drop_database
from tests.support.server import ServerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
IN_CI = os.environ.get("CI") == "true"


def _need_browser() -> None:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        msg = f"{CHROMIUM} is missing: run scripts/install-browser.sh"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    if importlib.util.find_spec("playwright") is None:
        msg = "playwright (Python) is not installed: pip install -e '.[dev]'"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def _need_channels() -> None:
    # The widget is live only with the WebSocket channels (/ws); until they exist the tests
    # that need a live socket cannot run.
    if importlib.util.find_spec("realtime.channels.runtime") is None:
        pytest.skip("the WebSocket channels (realtime.channels.runtime) are not there yet")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    # The async API, on the test session's event loop: the sync API would hold a running loop
    # of its own and break every async fixture after it.
    _need_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture
def live_server(database_url: str, tmp_path) -> Iterator[ServerProcess]:
    """`realtime serve` with the channels, on a free port, against a fresh database."""
    _need_channels()
    proc = ServerProcess(database_url, log_dir=tmp_path).start()
    yield proc
    proc.stop()


# The widget lives in the open shadow root of <realtime-booking>: Playwright's locators reach
# into it, document.querySelector does not. Page scripts in the tests use deepQuery instead.
DEEP_QUERY = """window.deepQuery = (sel) => {
  const walk = (root) => {
    const hit = root.querySelector(sel);
    if (hit) return hit;
    for (const el of root.querySelectorAll("*")) {
      const inner = el.shadowRoot && walk(el.shadowRoot);
      if (inner) return inner;
    }
    return null;
  };
  return walk(document);
};"""


class ForeignSite:
    """Another web site (another origin: another port) serving one plain HTML page."""

    def __init__(self, html: str = "") -> None:
        self.html = html
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body, kind = site.answer(self.path)
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, path: str) -> tuple[bytes, str]:
        """The body and media type for a GET of `path`: the page, whatever the path."""
        return self.html.encode(), "text/html; charset=utf-8"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


S = TypeVar("S", bound=ForeignSite)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def widget_site(admin_dsn: str, tmp_path_factory) -> AsyncIterator[
        tuple[ServerProcess, ForeignSite]]:
    """One server for the widget's tests (each makes its own vendor, so they do not meet), and
    another site: the server's REALTIME_ALLOWED_ORIGINS names only that site, never the server
    itself, so every test also shows the server's own page staying live under that setting."""
    async with serving(ForeignSite(), admin_dsn, tmp_path_factory.mktemp("widget")) as both:
        yield both


@contextlib.asynccontextmanager
async def serving(site: S, admin_dsn: str, log_dir: Path, env: dict[str, str] | None = None,
                  ) -> AsyncIterator[tuple[ServerProcess, S]]:
    """A server on a database of its own whose REALTIME_ALLOWED_ORIGINS names `site` (plus
    `env`), and the site; both gone afterwards, with the database."""
    _need_channels()
    dsn = await create_database(admin_dsn)
    server = ServerProcess(dsn, log_dir=log_dir,
                           env={"REALTIME_ALLOWED_ORIGINS": site.origin, **(env or {})})
    try:
        await asyncio.to_thread(server.start)
        yield server, site
    finally:
        await asyncio.to_thread(server.stop)
        site.close()
        await drop_database(admin_dsn, dsn)


@pytest.fixture
def server(widget_site: tuple[ServerProcess, ForeignSite]) -> ServerProcess:
    """The widget tests' shared server (widget_site)."""
    return widget_site[0]


@pytest_asyncio.fixture(loop_scope="session")
async def pages(browser) -> AsyncIterator[Any]:
    """A factory of pages, each in its own browser context (a different person)."""
    contexts: list[Any] = []
    errors: list[str] = []

    async def new_page(viewport: dict[str, int] | None = None) -> Any:
        ctx = await browser.new_context(viewport=viewport or {"width": 900, "height": 1000})
        await ctx.add_init_script(DEEP_QUERY)
        contexts.append(ctx)
        page = await ctx.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        return page

    yield new_page
    for ctx in contexts:
        await ctx.close()
    assert not errors, f"uncaught errors in the pages: {errors}"


# --- data over the HTTP API --------------------------------------------------------------------


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api(server: ServerProcess, method: str, path: str, body: dict | None = None,
        expect: int | tuple[int, ...] | None = None, **kw: Any) -> Any:
    r = httpx.request(method, server.url + path, json=body, timeout=10, **kw)
    if expect is not None:
        codes = (expect,) if isinstance(expect, int) else expect
        assert r.status_code in codes, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def make_service(server: ServerProcess, capacities: list[int], name: str = "Cut & colour",
                 start_in_days: int = 1) -> dict[str, Any]:
    """A vendor with one service and one slot per capacity (hourly from tomorrow 09:00 UTC)."""
    vendor = api(server, "POST", "/api/vendors", {"name": "Browser Test Salon"}, expect=201)
    service = api(server, "POST", f"/api/vendors/{vendor['id']}/services", {"name": name},
                  expect=201)
    day = (datetime.now(UTC) + timedelta(days=start_in_days)).replace(
        hour=9, minute=0, second=0, microsecond=0)
    slots = [
        {"starts_at": rfc3339(day + timedelta(hours=i)),
         "ends_at": rfc3339(day + timedelta(hours=i, minutes=45)),
         "capacity": cap}
        for i, cap in enumerate(capacities)
    ]
    created = api(server, "POST", f"/api/services/{service['id']}/slots", {"slots": slots},
                  expect=201)["slots"]
    created.sort(key=lambda s: s["starts_at"])
    return {"vendor": vendor, "service": service, "slots": created}


async def open_widget(new_page: Any, url: str, live: bool = True) -> Any:
    page = await new_page()
    await page.goto(url)
    await page.wait_for_selector("[data-slot-id]")
    if live:
        await page.wait_for_selector("[data-connection=live]")
    return page


def slot_el(page: Any, slot_id: str) -> Any:
    return page.locator(f'[data-slot-id="{slot_id}"]')


async def wait_attr(page: Any, slot_id: str, attr: str, value: str,
                    timeout_ms: float = 15_000) -> None:
    await page.wait_for_selector(f'[data-slot-id="{slot_id}"][{attr}="{value}"]',
                                 state="attached", timeout=timeout_ms)


async def wait_text(page: Any, selector: str, text: str, timeout_ms: float = 15_000) -> None:
    """Until the element matching `selector` (shadow roots included) contains `text`."""
    await page.wait_for_function(
        "([sel, text]) => (window.deepQuery(sel)?.textContent ?? '').includes(text)",
        arg=[selector, text], timeout=timeout_ms)


# --- accessibility (axe-core, installed by scripts/install-axe.sh) -------------------------------

def _axe_path() -> Path:
    script = (Path(__file__).resolve().parents[2] / "scripts" / "install-axe.sh").read_text()
    match = re.search(r'^VERSION="([^"]+)"', script, re.M)
    assert match, "scripts/install-axe.sh names no VERSION"
    tools = Path(os.environ.get("REALTIME_TOOLS_DIR") or Path.home() / ".cache" / "realtime-test-tools")
    return tools / f"axe-core-{match.group(1)}" / "node_modules" / "axe-core" / "axe.min.js"


# Colours are judged once transitions and finite animations have ended (a slot that just turned
# `mine` is still fading from its previous colour for 0.2 s).
# Each shadow root is asked for its own animations too (document.getAnimations() is not
# guaranteed to report those inside shadow trees).
SETTLE = """() => {
  const roots = [document];
  for (let i = 0; i < roots.length; i++) {
    for (const el of roots[i].querySelectorAll("*")) if (el.shadowRoot) roots.push(el.shadowRoot);
  }
  return Promise.all(roots.flatMap((r) => r.getAnimations())
    .filter((a) => a.effect?.getComputedTiming().iterations !== Infinity)
    .map((a) => a.finished.catch(() => {})));
}"""

AXE_RUN = """async () => {
  const r = await axe.run(document);
  // A node inside a shadow root is named by a list of selectors (host, then inside it).
  const inShadow = r.passes.flatMap((v) => v.nodes).filter((n) => Array.isArray(n.target[0])).length;
  const violations = r.violations.filter((v) => ["serious", "critical"].includes(v.impact)).map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 4).map((n) => `${JSON.stringify(n.target)}: ${n.failureSummary}`),
  }));
  return { inShadow, violations };
}"""


async def assert_accessible(page: Any, state: str) -> None:
    """axe-core finds no serious or critical violation on the page (shadow roots included)."""
    path = _axe_path()
    if not path.exists():
        msg = f"{path} is missing: run scripts/install-axe.sh"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    if not await page.evaluate("typeof window.axe === 'object'"):
        await page.add_script_tag(path=str(path))
    await page.evaluate(SETTLE)
    result = await page.evaluate(AXE_RUN)
    assert result["inShadow"] > 0, "axe did not look inside the widget's shadow root"
    assert not result["violations"], f"accessibility, {state}: {result['violations']}"


def add_slots(server: ServerProcess, service_id: str,
              specs: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Slots of (days from today, capacity), 45 minutes each at 09:00 UTC (then 10:00, ... on
    the same day), in the order given."""
    per_day: dict[int, int] = {}
    slots = []
    for days, cap in specs:
        start = (datetime.now(UTC) + timedelta(days=days)).replace(
            hour=9 + per_day.get(days, 0), minute=0, second=0, microsecond=0)
        per_day[days] = per_day.get(days, 0) + 1
        slots.append({"starts_at": rfc3339(start), "ends_at": rfc3339(start + timedelta(minutes=45)),
                      "capacity": cap})
    created = api(server, "POST", f"/api/services/{service_id}/slots", {"slots": slots},
                  expect=201)["slots"]
    by_start = {s["starts_at"]: s for s in created}
    return [by_start[s["starts_at"]] for s in slots]


def local_day(days: int = 0) -> str:
    """The browser's (this machine's) calendar date `days` from today, as YYYY-MM-DD."""
    return (date.today() + timedelta(days=days)).isoformat()
