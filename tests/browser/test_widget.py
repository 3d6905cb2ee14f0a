"""The demo widget (`GET /`, realtime/static/widget.js) in real headless Chromium against a real server.

Each page is a separate browser context, that is a different person. The server is a subprocess,
shared by the tests (conftest's widget_site: each makes its own vendor); the restart test starts
its own, stops it and starts it again on the same port and database, and the foreign page's test
starts one allowing that page's origin.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest

from tests.browser.conftest import (
    ForeignSite,
    _need_channels,
    api,
    assert_accessible,
    make_service,
    open_widget,
    slot_el,
    wait_attr,
)
from tests.browser.docs_example import example_html
from tests.support.server import ServerProcess, free_port

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

# The slot whose button has the keyboard focus, inside the widget's shadow root.
FOCUSED_SLOT = """(() => {
    let el = document.activeElement;
    while (el?.shadowRoot?.activeElement) el = el.shadowRoot.activeElement;
    return el?.closest?.('[data-slot-id]')?.dataset.slotId ?? null;
})()"""


async def test_booking_in_one_page_shows_in_the_other(server: ServerProcess, pages) -> None:
    data = make_service(server, [3, 1, 2])
    url = f"{server.url}/?service={data['service']['id']}"
    a = await open_widget(pages, url)
    b = await open_widget(pages, url)
    target = data["slots"][0]["id"]
    for p in (a, b):
        assert await slot_el(p, target).get_attribute("data-state") == "available"
        assert await slot_el(p, target).get_attribute("data-available") == "3"
        assert await p.locator("[data-slot-id]").count() == 3

    # Presence: the first page sees the second person arrive.
    await a.wait_for_function(
        "deepQuery('[data-presence]').textContent.trim() === '2'")

    await slot_el(a, target).click()
    await wait_attr(a, target, "data-state", "mine")
    await wait_attr(b, target, "data-available", "2")
    assert await slot_el(b, target).get_attribute("data-state") == "available"
    assert await slot_el(a, target).get_attribute("data-available") == "2"

    # A booking made elsewhere (over HTTP) shows in both.
    api(server, "POST", "/api/bookings", {"slot_id": data["slots"][1]["id"]}, expect=201)
    for p in (a, b):
        await wait_attr(p, data["slots"][1]["id"], "data-state", "full")
        await wait_attr(p, data["slots"][1]["id"], "data-available", "0")

    # Keyboard: focus the last slot in page B and press Enter.
    last = data["slots"][2]["id"]
    await slot_el(b, last).focus()
    await b.keyboard.press("Enter")
    await wait_attr(b, last, "data-state", "mine")
    await wait_attr(a, last, "data-available", "1")

    # The aria-live region announced it.
    await b.wait_for_function(
        "deepQuery('[aria-live=polite]').textContent.includes('Booked')")


async def test_presence_reaches_everyone_looking(server: ServerProcess, pages) -> None:
    data = make_service(server, [1])
    url = f"{server.url}/?service={data['service']['id']}"
    a = await open_widget(pages, url)
    b = await open_widget(pages, url)
    for p in (a, b):
        await p.wait_for_function(
            "deepQuery('[data-presence]').textContent.trim() === '2'",
            timeout=5000)
    await b.context.close()
    await a.wait_for_function(
        "deepQuery('[data-presence]').textContent.trim() === '1'", timeout=5000)


async def _record_states(page, slot_id: str) -> None:
    await page.evaluate(
        """(id) => {
            const el = deepQuery(`[data-slot-id="${id}"]`);
            window.__states = [el.dataset.state];
            new MutationObserver(() => {
                const s = el.dataset.state;
                if (window.__states[window.__states.length - 1] !== s) window.__states.push(s);
            }).observe(el, { attributes: true, attributeFilter: ["data-state"] });
        }""",
        slot_id,
    )


async def _click_at(page, slot_id: str, at_ms: float) -> None:
    # Arm a click at the same wall-clock instant in both pages, so that neither page has
    # heard of the other's booking when it clicks.
    await page.evaluate(
        """([id, at]) => { setTimeout(
            () => deepQuery(`[data-slot-id="${id}"]`).click(),
            Math.max(0, at - Date.now())); }""",
        [slot_id, at_ms],
    )


SETTLED = """(id) => {
    const el = deepQuery(`[data-slot-id="${id}"]`);
    return window.__states.length > 1 && ['mine', 'full'].includes(el.dataset.state);
}"""


async def test_two_pages_racing_for_the_last_unit(server: ServerProcess, pages) -> None:
    # Three single-unit slots to race for (a race is only real when both clicks left before
    # either page heard of the other's booking; retried on the next slot if not), and free
    # ones after them to be offered as alternatives.
    data = make_service(server, [1, 1, 1, 2, 2, 2])
    ids = {s["id"] for s in data["slots"]}
    url = f"{server.url}/?service={data['service']['id']}"
    a = await open_widget(pages, url)
    b = await open_widget(pages, url)

    raced = False
    for contested in [s["id"] for s in data["slots"][:3]]:
        for p in (a, b):
            await _record_states(p, contested)
        at = await a.evaluate("Date.now()") + 400
        await _click_at(a, contested, at)
        await _click_at(b, contested, at)
        for p in (a, b):
            await p.wait_for_function(SETTLED, arg=contested)
        await asyncio.sleep(0.3)  # let any late update arrive, then read the outcome
        states = {p: await slot_el(p, contested).get_attribute("data-state") for p in (a, b)}
        assert sorted(states.values()) == ["full", "mine"], states
        winner = a if states[a] == "mine" else b
        loser = b if winner is a else a
        for p in (a, b):
            assert await slot_el(p, contested).get_attribute("data-available") == "0"
        history = await loser.evaluate("window.__states")
        if "pending" not in history:
            continue  # the loser had already heard of the winner's booking: try again
        # The loser showed its booking optimistically, then rolled back to full...
        assert history[0] == "available" and history[-1] == "full", history
        raced = True
        # ...and says why, offering alternatives that can be clicked.
        notice = loser.locator("#rt-notice")
        assert await notice.is_visible()
        assert "Someone else" in await notice.inner_text()
        alts = loser.locator("[data-alternatives] [data-alternative-slot-id]")
        assert await alts.count() >= 1
        await assert_accessible(loser, "a lost race, with alternatives")
        alt_id = await alts.first.get_attribute("data-alternative-slot-id")
        assert alt_id in ids and alt_id != contested
        await alts.first.click()
        await wait_attr(loser, alt_id, "data-state", "mine")
        capacity = next(s["capacity"] for s in data["slots"] if s["id"] == alt_id)
        await wait_attr(winner, alt_id, "data-available", str(capacity - 1))
        break
    assert raced, "the two clicks never raced (each page saw the other's booking first)"


async def test_server_restart_under_the_pages(live_server: ServerProcess, pages,
                                              database_url: str, tmp_path) -> None:
    data = make_service(live_server, [2, 2, 2, 1])
    s0, s1, s2, s3 = (s["id"] for s in data["slots"])
    url = f"{live_server.url}/?service={data['service']['id']}"
    a = await open_widget(pages, url)
    b = await open_widget(pages, url)
    await slot_el(a, s0).click()
    await wait_attr(a, s0, "data-state", "mine")
    await wait_attr(b, s0, "data-available", "1")

    await asyncio.to_thread(live_server.stop)
    for p in (a, b):
        await p.wait_for_selector("[data-connection=reconnecting]", timeout=20_000)
        assert (await p.locator("[data-connection]").inner_text()).strip() == "reconnecting"

    # While the pages are away, another server process on the same database takes bookings.
    other = await asyncio.to_thread(ServerProcess(database_url, log_dir=tmp_path).start)
    try:
        api(other, "POST", "/api/bookings", {"slot_id": s1}, expect=201)
        api(other, "POST", "/api/bookings", {"slot_id": s3}, expect=201)
        booked = api(other, "POST", "/api/bookings", {"slot_id": s2}, expect=201)["booking"]
        api(other, "POST", f"/api/bookings/{booked['id']}/cancel", expect=200)
    finally:
        await asyncio.to_thread(other.stop)
    for p in (a, b):  # nothing reached the pages yet
        assert await slot_el(p, s1).get_attribute("data-available") == "2"
        assert (await p.locator("[data-connection]").inner_text()).strip() == "reconnecting"

    await asyncio.to_thread(live_server.start)
    for p in (a, b):
        await p.wait_for_selector("[data-connection=live]", timeout=45_000)
        await wait_attr(p, s1, "data-available", "1")
        await wait_attr(p, s3, "data-state", "full")
        await wait_attr(p, s2, "data-available", "2")
        assert await slot_el(p, s0).get_attribute("data-available") == "1"
    assert await slot_el(a, s0).get_attribute("data-state") == "mine"

    # And live again, both ways.
    await slot_el(b, s1).click()
    await wait_attr(b, s1, "data-state", "mine")
    await wait_attr(a, s1, "data-state", "full")


async def test_a_page_that_is_not_ours_uses_the_client(database_url: str, tmp_path,
                                                       pages) -> None:
    """The embedding example of docs/client.md, served by another site, works as shown."""
    _need_channels()
    site = ForeignSite()  # its origin first: the server must allow it
    # Known before the server starts, to name its own origin too: ServerProcess starts on a
    # port given to it again while another process holds it.
    port = free_port()
    server = ServerProcess(
        database_url, port=port, log_dir=tmp_path,
        env={"REALTIME_ALLOWED_ORIGINS": f"{site.origin},http://127.0.0.1:{port}"},
    )
    await asyncio.to_thread(server.start)
    try:
        js = await asyncio.to_thread(httpx.get, server.url + "/static/realtime.js",
                                     headers={"Origin": site.origin})
        cors = js.headers.get("access-control-allow-origin") in ("*", site.origin)
        assert cors, "a page on another origin cannot import realtime.js without CORS"
        data = make_service(server, [2, 1])
        site.html = example_html(server.url, data["service"]["id"])
        page = await pages()
        await page.goto(f"{site.origin}/booking.html")
        first, second = (s["id"] for s in data["slots"])
        await page.wait_for_selector(f'[data-slot-id="{first}"]')
        await page.wait_for_function("deepQuery('#state').textContent === 'live'")
        # Someone books over HTTP: the foreign page hears it.
        api(server, "POST", "/api/bookings", {"slot_id": first}, expect=201)
        await page.wait_for_function(
            "(id) => deepQuery(`[data-slot-id=\"${id}\"]`)"
            ".textContent.includes('1 left')", arg=first)
        # It books over the socket with the library.
        await page.locator(f'[data-slot-id="{second}"]').click()
        await page.wait_for_function(
            "deepQuery('#log').textContent.includes('Booked')")
        avail = api(server, "GET", f"/api/services/{data['service']['id']}/availability"
                    "?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z", expect=200)
        assert {s["id"]: s["available"] for s in avail["slots"]}[second] == 0
        await page.wait_for_function(
            "(id) => deepQuery(`[data-slot-id=\"${id}\"]`).disabled", arg=second)
    finally:
        site.close()
        await asyncio.to_thread(server.stop)


async def test_demo_page_on_a_phone_is_accessible(server: ServerProcess, pages) -> None:
    """`GET /` with no parameters shows the demo vendor; it fits a phone and works by keyboard."""
    env = {**os.environ, "DATABASE_URL": server.database_url}
    seeded = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "realtime", "seed", "--demo"],
        env=env, capture_output=True, text=True, timeout=60)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    page = await pages(viewport={"width": 375, "height": 720})
    await page.goto(server.url + "/")
    await page.wait_for_selector("[data-slot-id]")
    await page.wait_for_selector("[data-connection=live]")

    # Fits the screen: nothing scrolls sideways.
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # Every slot holds a real button with a spoken label, and carries the contract's attributes.
    info = await page.eval_on_selector_all(
        "[data-slot-id]",
        """els => els.map(e => ({tag: e.querySelector('button')?.tagName,
                                 label: e.querySelector('button')?.getAttribute('aria-label') || '',
                                 state: e.dataset.state, available: e.dataset.available}))""")
    assert info and all(i["tag"] == "BUTTON" and i["label"] for i in info)
    assert all(i["state"] in ("available", "pending", "mine", "full") for i in info)
    assert all(i["available"].isdigit() for i in info)
    assert await page.locator("[aria-live]").count() >= 1
    # Tappable: slots are at least 44 px tall.
    heights = await page.eval_on_selector_all(
        "[data-slot-id] button", "els => els.map(e => e.getBoundingClientRect().height)")
    assert heights and min(heights) >= 44

    # Keyboard only: Tab to the first free slot, Enter books it.
    target = await page.get_attribute("[data-slot-id][data-state=available]", "data-slot-id")
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await page.evaluate(FOCUSED_SLOT) == target:
            break
    else:
        pytest.fail("Tab never reached the first free slot")
    await page.keyboard.press("Enter")
    await wait_attr(page, target, "data-state", "mine")
    await page.wait_for_function(
        "deepQuery('[aria-live=polite]').textContent.includes('Booked')")
