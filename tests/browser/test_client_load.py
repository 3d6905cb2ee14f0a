"""The demo page loads the widget and the client library in Chromium as the server names them:
every module once, from its versioned URL, fetched because the page preloads it (not found
import by import), and on the next visit from the browser's cache without asking the server."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from tests.browser.conftest import make_service, slot_el, wait_attr
from tests.support.modules import module_graph
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

# Each file under /static the page used and what it cost on the wire (transferSize: 0 when the
# browser's cache answered without asking the server, the headers' size for a 304).
RESOURCES = """() => performance.getEntriesByType("resource")
  .filter((e) => new URL(e.name).pathname.startsWith("/static/"))
  .map((e) => ({ path: new URL(e.name).pathname, bytes: e.transferSize }))"""


async def test_the_demo_page_loads_each_module_once_preloaded_then_from_cache(server: ServerProcess, pages) -> None:
    """Each module the widget imports is asked for once, versioned, by the page; it books; next visit: none asked."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        prefix = (await http.get("/static/v/manifest.json")).json()["prefix"]
    modules = {prefix + rel for rel in module_graph("widget.js")}
    data = make_service(server, [2, 1])
    url = f"{server.url}/?service={data['service']['id']}"

    requested: list[str] = []
    initiators: dict[str, str] = {}  # module -> the URL of what asked for it
    page = await pages()
    page.on("request", lambda r: requested.append(r.url.removeprefix(server.url)))
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Network.enable")
    cdp.on("Network.requestWillBeSent", lambda e: initiators.setdefault(
        e["request"]["url"].removeprefix(server.url), e["initiator"].get("url", "")))
    await page.goto(url)
    await page.wait_for_selector("[data-slot-id]")
    await page.wait_for_selector("[data-connection=live]")

    files = Counter(path for path in requested if path.startswith("/static/"))
    assert set(files) == modules | {prefix + "widget.css"}, set(files) ^ modules
    assert all(n == 1 for n in files.values()), files
    preloads = await page.eval_on_selector_all(
        'link[rel="modulepreload"]', "(links) => links.map((l) => new URL(l.href).pathname)")
    assert set(preloads) == modules
    # Asked for by the page (its Link header or its <link> tags), none by another module: a
    # module found by reading another one's imports would cost a round trip per level.
    found_late = {m: initiators.get(m) for m in modules if "/static/" in (initiators.get(m) or "/static/")}
    assert not found_late, found_late
    first: list[dict[str, Any]] = await page.evaluate(RESOURCES)
    scripts = {e["path"]: e["bytes"] for e in first if e["path"].endswith(".js")}
    assert set(scripts) == modules
    assert all(b > 0 for b in scripts.values()), scripts  # from the server this time

    target = data["slots"][0]["id"]
    await slot_el(page, target).click()
    await wait_attr(page, target, "data-state", "mine")

    # The next visit, same browser: the page is revalidated, the modules are not asked for.
    again = await page.context.new_page()
    await again.goto(url)
    await again.wait_for_selector("[data-connection=live]")
    second: list[dict[str, Any]] = await again.evaluate(RESOURCES)
    cached = {e["path"]: e["bytes"] for e in second if e["path"].endswith(".js")}
    assert set(cached) == modules
    assert all(b == 0 for b in cached.values()), cached
    await again.close()


async def test_a_page_importing_the_unversioned_url_still_works(server: ServerProcess, pages) -> None:
    """/static/widget.js as embedded before versioned URLs: its modules unversioned, revalidated on the next visit."""
    data = make_service(server, [1])
    html = (f'<!doctype html><script type="module" src="{server.url}/static/widget.js"></script>'
            f'<realtime-booking service="{data["service"]["id"]}"></realtime-booking>')
    page = await pages()
    await page.route(f"{server.url}/embed", lambda route: route.fulfill(body=html, content_type="text/html"))
    await page.goto(f"{server.url}/embed")
    await page.wait_for_selector("[data-connection=live]")
    resources: list[dict[str, Any]] = await page.evaluate(RESOURCES)
    scripts = {e["path"] for e in resources if e["path"].endswith(".js")}
    assert scripts == {"/static/" + rel for rel in module_graph("widget.js")}
    await page.reload()
    await page.wait_for_selector("[data-connection=live]")
    again: list[dict[str, Any]] = await page.evaluate(RESOURCES)
    # no-cache: each one asked again (a 304 costs its headers), none run from a stale copy.
    assert all(e["bytes"] > 0 for e in again if e["path"].endswith(".js")), again
