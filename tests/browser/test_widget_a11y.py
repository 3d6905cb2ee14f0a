"""The widget with the keyboard alone on a 375 px phone, and offline, in real Chromium against a
real server; axe-core checks each state (tests/browser/conftest.py: assert_accessible)."""

from __future__ import annotations

import time

import pytest

from tests.browser.conftest import (
    add_slots,
    api,
    assert_accessible,
    local_day,
    make_service,
    open_widget,
    slot_el,
    wait_attr,
)
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

# What has the keyboard focus, looking through shadow roots.
FOCUSED = """(() => {
    let el = document.activeElement;
    while (el?.shadowRoot?.activeElement) el = el.shadowRoot.activeElement;
    return { nav: el?.dataset?.nav ?? null, action: el?.dataset?.action ?? null,
             slot: el?.closest?.('[data-slot-id]')?.dataset.slotId ?? null,
             quantity: el?.matches?.('input[data-quantity]') ?? false, tag: el?.tagName };
})()"""


async def tab_to(page, want: dict, limit: int = 80) -> None:
    """Press Tab until the focused element matches every key of `want`."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        got = await page.evaluate(FOCUSED)
        if all(got.get(k) == v for k, v in want.items()):
            return
    pytest.fail(f"Tab never reached {want}")


async def fits(page) -> bool:
    return await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


async def test_keyboard_alone_on_a_375px_phone(server: ServerProcess, pages) -> None:
    """Next week, two places of a class held, confirmed: Tab, typing and Enter only, at 375 px."""
    data = make_service(server, [1])
    svc = data["service"]["id"]
    cls = add_slots(server, svc, [(8, 12)])[0]["id"]
    page = await pages(viewport={"width": 375, "height": 740})
    await page.goto(f"{server.url}/?service={svc}&checkout=hold")
    await page.wait_for_selector("[data-slot-id]")
    await page.wait_for_selector("[data-connection=live]")
    assert await fits(page)
    await assert_accessible(page, "a week, at 375 px")

    await tab_to(page, {"nav": "next"})
    await page.keyboard.press("Enter")
    await page.wait_for_selector(f'[data-slot-id="{cls}"]')
    assert await page.get_attribute("[data-range]", "data-range") == local_day(7)
    await tab_to(page, {"slot": cls, "quantity": True})
    await page.keyboard.press("Control+A")
    await page.keyboard.type("2")
    await page.keyboard.press("Shift+Tab")
    assert await page.evaluate(FOCUSED) == {"nav": None, "action": None, "slot": cls,
                                             "quantity": False, "tag": "BUTTON"}
    await page.keyboard.press("Enter")
    await wait_attr(page, cls, "data-state", "held")
    # The hold hands the focus to its Confirm button: Enter books what was held.
    await page.wait_for_function(f"{FOCUSED}.action === 'confirm'")
    assert await fits(page)
    await assert_accessible(page, "held, at 375 px")
    await page.keyboard.press("Enter")
    await wait_attr(page, cls, "data-state", "mine")
    await wait_attr(page, cls, "data-available", "10")
    assert await fits(page)
    await assert_accessible(page, "booked, at 375 px")
    await page.emulate_media(color_scheme="dark")
    assert await page.locator(".rt-widget").evaluate(
        "e => getComputedStyle(e).backgroundColor") == "rgb(15, 17, 23)"  # the dark palette
    await assert_accessible(page, "booked, at 375 px, dark")
    # Slots are tappable: at least 44 px tall.
    heights = await page.eval_on_selector_all(
        "[data-slot-id] button", "els => els.map(e => e.getBoundingClientRect().height)")
    assert heights and min(heights) >= 44
    booked = api(server, "GET", f"/api/services/{svc}/availability", expect=200)["slots"]
    assert {s["id"]: s["booked"] for s in booked}[cls] == 2


async def test_offline_is_shown_at_once_and_a_click_books_nothing(
        server: ServerProcess, pages) -> None:
    """The browser goes offline: `offline` within 2 s, a click says so plainly, back live after."""
    data = make_service(server, [2, 1])
    big, single = (s["id"] for s in data["slots"])
    page = await open_widget(pages, f"{server.url}/?service={data['service']['id']}")
    went = time.monotonic()
    await page.context.set_offline(True)
    await page.wait_for_selector("[data-connection=offline]", timeout=2000)
    assert time.monotonic() - went < 2.5

    await slot_el(page, single).click()
    notice = page.locator("#rt-notice")
    await notice.wait_for()
    text = await notice.inner_text()
    assert "You are offline: nothing was booked" in text
    assert "fetch" not in text.lower() and "error" not in text.lower()
    assert await slot_el(page, single).get_attribute("data-state") == "available"
    # Another week cannot be read while offline: the page says so and stays where it was.
    await page.click('[data-nav="next"]')
    await page.wait_for_function(
        "() => deepQuery('#rt-notice-title').textContent.startsWith('You are offline')")
    assert await page.get_attribute("[data-range]", "data-range") == local_day(0)
    await assert_accessible(page, "offline")
    slots = api(server, "GET", f"/api/services/{data['service']['id']}/availability",
                expect=200)["slots"]
    assert all(s["booked"] == 0 for s in slots)

    await page.context.set_offline(False)
    await page.wait_for_selector("[data-connection=live]", timeout=15_000)
    await slot_el(page, big).click()
    await wait_attr(page, big, "data-state", "mine")
    await wait_attr(page, big, "data-available", "1")
