"""The widget's weeks and quantities in real Chromium against a real server: moving between
weeks (data-nav, data-range, ?date=), a week with nothing free, and booking several units."""

from __future__ import annotations

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


async def range_of(page) -> str | None:
    return await page.get_attribute("[data-range]", "data-range")


async def test_booking_in_next_weeks_view_shows_in_the_other_page(
        server: ServerProcess, pages) -> None:
    """Next week is one click away, and what is booked there reaches another page live."""
    data = make_service(server, [2])
    svc = data["service"]["id"]
    this_week = data["slots"][0]
    later = add_slots(server, svc, [(8, 2), (8, 1)])
    url = f"{server.url}/?service={svc}"
    a = await open_widget(pages, url)
    b = await open_widget(pages, url)
    for p in (a, b):
        assert await range_of(p) == local_day(0)
        assert await p.locator('[data-nav="prev"]').is_disabled()  # nothing to book before today
        assert await p.locator("[data-slot-id]").count() == 1
    await a.click('[data-nav="next"]')
    assert await range_of(a) == local_day(7)
    await a.wait_for_selector(f'[data-slot-id="{later[0]["id"]}"]')
    assert await a.locator("[data-slot-id]").count() == 2
    await slot_el(a, later[0]["id"]).click()
    await wait_attr(a, later[0]["id"], "data-state", "mine")
    await assert_accessible(a, "next week, one slot booked")

    await b.click('[data-nav="next"]')
    await wait_attr(b, later[0]["id"], "data-available", "1")
    assert await slot_el(b, later[0]["id"]).get_attribute("data-state") == "available"
    # While on next week, changes there keep arriving in both pages.
    api(server, "POST", "/api/bookings", {"slot_id": later[1]["id"]}, expect=201)
    for p in (a, b):
        await wait_attr(p, later[1]["id"], "data-state", "full")
    # And back: this week's slot is shown, live again, with what changed meanwhile.
    api(server, "POST", "/api/bookings", {"slot_id": this_week["id"]}, expect=201)
    await b.click('[data-nav="prev"]')
    assert await range_of(b) == local_day(0)
    await wait_attr(b, this_week["id"], "data-available", "1")
    api(server, "POST", "/api/bookings", {"slot_id": this_week["id"]}, expect=201)
    await wait_attr(b, this_week["id"], "data-state", "full")
    assert await b.locator(f'[data-slot-id="{later[0]["id"]}"]').count() == 0


async def test_an_empty_week_offers_the_next_free_one(server: ServerProcess, pages) -> None:
    """A week with nothing free says so and links to the next free week; first jumps there."""
    vendor = api(server, "POST", "/api/vendors", {"name": "Quiet Salon"}, expect=201)
    svc = api(server, "POST", f"/api/vendors/{vendor['id']}/services", {"name": "Cut"},
              expect=201)["id"]
    taken, free = add_slots(server, svc, [(9, 1), (23, 1)])
    api(server, "POST", "/api/bookings", {"slot_id": taken["id"]}, expect=201)
    page = await open_widget(pages, f"{server.url}/?service={svc}&date={local_day(7)}",
                             live=False)
    await page.wait_for_selector("[data-connection=live]")
    assert await range_of(page) == local_day(7)
    assert not await page.locator('[data-nav="prev"]').is_disabled()
    empty = page.locator("[data-empty]")
    await empty.wait_for()
    assert "Nothing free this week" in await empty.inner_text()
    offer = page.locator('[data-nav="next-free"]')
    await offer.wait_for()
    await assert_accessible(page, "a week with nothing free")
    await offer.click()
    await page.wait_for_selector(f'[data-slot-id="{free["id"]}"][data-state="available"]')
    assert await range_of(page) == local_day(21)  # weeks count from the date opened on
    assert await empty.is_hidden()

    await page.click('[data-nav="prev"]')
    await page.click('[data-nav="prev"]')
    assert await range_of(page) == local_day(7)
    await page.click('[data-nav="first"]')
    await page.wait_for_selector(f'[data-slot-id="{free["id"]}"]')
    assert await range_of(page) == local_day(21)
    # The last free unit goes: this week says so at once.
    api(server, "POST", "/api/bookings", {"slot_id": free["id"]}, expect=201)
    await empty.wait_for()


async def test_three_units_of_a_twelve_unit_slot(server: ServerProcess, pages) -> None:
    """The quantity input books several units, and follows what is left, live, elsewhere."""
    data = make_service(server, [12, 1])
    big, single = (s["id"] for s in data["slots"])
    url = f"{server.url}/?service={data['service']['id']}"
    a = await open_widget(pages, url)
    b = await open_widget(pages, url)
    assert await slot_el(a, single).locator("input[data-quantity]").count() == 0
    qty_a = slot_el(a, big).locator("input[data-quantity]")
    qty_b = b.locator("input[data-quantity]")
    assert await qty_a.get_attribute("max") == "12"
    await qty_a.fill("3")
    await slot_el(a, big).click()
    await wait_attr(a, big, "data-state", "mine")
    await wait_attr(a, big, "data-available", "9")
    await wait_attr(b, big, "data-available", "9")
    await b.wait_for_function(
        "() => deepQuery('input[data-quantity]').max === '9'")
    booked = api(server, "GET", f"/api/services/{data['service']['id']}/availability",
                 expect=200)
    assert {s["id"]: s["booked"] for s in booked["slots"]}[big] == 3
    assert "\u00d7 3" in await a.locator("#rt-mine").inner_text()  # times 3

    # B asks for 8; someone takes 7 first: B's input comes down to what is left.
    await qty_b.fill("8")
    api(server, "POST", "/api/bookings", {"slot_id": big, "quantity": 7}, expect=201)
    await wait_attr(b, big, "data-available", "2")
    assert await qty_b.get_attribute("max") == "2"
    assert await qty_b.input_value() == "2"
    await assert_accessible(b, "quantity inputs")
    await slot_el(b, big).click()
    await wait_attr(b, big, "data-state", "mine")
    await wait_attr(a, big, "data-available", "0")
    await wait_attr(a, big, "data-state", "mine")  # A's own booking still shows as A's
