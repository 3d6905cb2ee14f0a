"""Checkout with holds (?checkout=hold) in real Chromium against a real server: a click holds,
the hold counts down, Confirm books it, Release gives it back, and expiry returns it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tests.browser.conftest import (
    api,
    assert_accessible,
    make_service,
    open_widget,
    slot_el,
    wait_attr,
)
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


RECORD_STATES = """(id) => {
    const el = deepQuery(`[data-slot-id="${id}"]`);
    window.__states = [el.dataset.state];
    new MutationObserver(() => {
        const s = el.dataset.state;
        if (window.__states[window.__states.length - 1] !== s) window.__states.push(s);
    }).observe(el, { attributes: true, attributeFilter: ["data-state"] });
}"""


def seconds(text: str) -> int:
    minutes, secs = text.strip().split(":")
    return int(minutes) * 60 + int(secs)


async def test_hold_count_down_and_confirm(server: ServerProcess, pages) -> None:
    """Held units leave the other page at once; the countdown runs; Confirm makes them mine."""
    data = make_service(server, [4, 1])
    big, single = (s["id"] for s in data["slots"])
    url = f"{server.url}/?service={data['service']['id']}&checkout=hold"
    a = await open_widget(pages, url)
    b = await open_widget(pages, url)
    await slot_el(a, big).locator("input[data-quantity]").fill("2")
    await slot_el(a, big).click()
    await wait_attr(a, big, "data-state", "held")
    await wait_attr(b, big, "data-available", "2")  # the other page: held is not available
    assert await slot_el(b, big).get_attribute("data-state") == "available"

    timer = a.locator("[data-hold-expires]")
    expires = datetime.fromisoformat((await timer.get_attribute("data-hold-expires")).replace(
        "Z", "+00:00"))
    left = (expires - datetime.now(UTC)).total_seconds()
    assert 290 < left <= 300, left  # the server's default: 5 minutes
    first = seconds(await timer.inner_text())
    assert abs(first - left) <= 2, (first, left)
    await a.wait_for_function(
        "(t) => { const [m, s] = deepQuery('[data-hold-expires]').textContent.split(':');"
        " return Number(m) * 60 + Number(s) < t; }", arg=first, timeout=3000)
    await assert_accessible(a, "a slot held, counting down")

    await a.click('[data-action="confirm"]')
    await wait_attr(a, big, "data-state", "mine")
    assert await a.locator("[data-hold-expires]").count() == 0
    await asyncio.sleep(0.3)
    assert await slot_el(b, big).get_attribute("data-available") == "2"
    slots = api(server, "GET", f"/api/services/{data['service']['id']}/availability",
                expect=200)["slots"]
    got = {s["id"]: (s["booked"], s["held"]) for s in slots}
    assert got[big] == (2, 0)

    # Release: the single slot is held, then given back; both pages see it free again.
    await slot_el(b, single).click()
    await wait_attr(b, single, "data-state", "held")
    await wait_attr(a, single, "data-state", "full")
    await b.click('[data-action="release"]')
    await wait_attr(b, single, "data-state", "available")
    await wait_attr(a, single, "data-state", "available")
    await wait_attr(a, single, "data-available", "1")


async def test_a_hold_that_expires_gives_the_slot_back(server: ServerProcess,
                                                       pages) -> None:
    """A 2-second hold (?hold_ttl=2) runs out: the slot is available again and the page says so."""
    data = make_service(server, [1])
    sid = data["slots"][0]["id"]
    url = f"{server.url}/?service={data['service']['id']}&checkout=hold&hold_ttl=2"
    a = await open_widget(pages, url)
    b = await open_widget(pages, url)
    await slot_el(a, sid).click()
    await wait_attr(a, sid, "data-state", "held")
    await wait_attr(b, sid, "data-state", "full")
    assert seconds(await a.locator("[data-hold-expires]").inner_text()) <= 2
    await a.evaluate(RECORD_STATES, sid)
    await wait_attr(a, sid, "data-state", "available", timeout_ms=6000)
    # Straight back to available: never shown as taken while the server takes the hold back.
    assert await a.evaluate("window.__states") == ["held", "available"]
    notice = a.locator("#rt-notice")
    assert "hold expired" in (await notice.inner_text()).lower()
    assert await a.locator("[data-hold-expires]").count() == 0
    await assert_accessible(a, "a hold expired")
    # The server gave the unit back too: the other page sees it free, and it can be held anew.
    await wait_attr(b, sid, "data-state", "available", timeout_ms=6000)
    await wait_attr(a, sid, "data-available", "1")
    await slot_el(b, sid).click()
    await wait_attr(b, sid, "data-state", "held")
