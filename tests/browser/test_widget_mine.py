"""Your bookings across reloads: the widget on a server with auth off keeps the ids of what this
browser booked, and after a reload shows them as `mine` again, in real Chromium against a real
server (the shared widget_site)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import (
    add_slots,
    api,
    assert_accessible,
    make_service,
    open_widget,
    slot_el,
    wait_attr,
)
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

MINE = "#rt-mine-list li[data-booking-id]"


async def booking_ids(page) -> list[str]:
    return [await li.get_attribute("data-booking-id") for li in await page.locator(MINE).all()]


async def reload(page) -> None:
    await page.reload()
    await page.wait_for_selector("[data-slot-id]")
    await page.wait_for_selector("[data-connection=live]")


async def test_bookings_show_as_mine_after_a_reload_and_cancel_from_the_list(
        server: ServerProcess, pages) -> None:
    """Booked this week and next: after a reload both are `mine` and listed (next week's too);
    one cancelled from the list is gone after the next reload, and another person sees none."""
    data = make_service(server, [3, 1, 2])
    here, single, spare = (s["id"] for s in data["slots"])
    later = add_slots(server, data["service"]["id"], [(8, 2)])[0]["id"]  # in the next week
    url = f"{server.url}/?service={data['service']['id']}"
    page = await open_widget(pages, url)
    await slot_el(page, here).click()
    await wait_attr(page, here, "data-state", "mine")
    await slot_el(page, single).click()
    await wait_attr(page, single, "data-state", "mine")
    await page.locator('[data-nav="next"]').click()
    await page.wait_for_selector(f'[data-slot-id="{later}"]')
    await slot_el(page, later).click()
    await wait_attr(page, later, "data-state", "mine")
    made = await booking_ids(page)
    assert len(made) == 3

    await reload(page)
    await wait_attr(page, here, "data-state", "mine")
    await wait_attr(page, single, "data-state", "mine")
    assert await slot_el(page, spare).get_attribute("data-state") == "available"
    await page.wait_for_function(
        "deepQuery('#rt-mine-list').querySelectorAll('li').length === 3")
    assert sorted(await booking_ids(page)) == sorted(made)
    assert not await page.locator("#rt-mine").is_hidden()
    await assert_accessible(page, "your bookings after a reload")

    # Cancelled from the list: free again, and forgotten after the next reload.
    await page.locator(f'[data-cancel-slot="{here}"]').click()
    await wait_attr(page, here, "data-state", "available")
    await wait_attr(page, here, "data-available", "3")
    # One cancelled elsewhere (the API, as another device would): forgotten too.
    single_booking = next(i for i in made if api(
        server, "GET", f"/api/bookings/{i}", expect=200)["booking"]["slot_id"] == single)
    api(server, "POST", f"/api/bookings/{single_booking}/cancel", expect=200)
    await wait_attr(page, single, "data-available", "1")
    await reload(page)
    await page.wait_for_function(
        "deepQuery('#rt-mine-list').querySelectorAll('li').length === 1")
    assert await booking_ids(page) == [i for i in made if api(
        server, "GET", f"/api/bookings/{i}", expect=200)["booking"]["slot_id"] == later]
    assert await slot_el(page, here).get_attribute("data-state") == "available"
    assert await slot_el(page, single).get_attribute("data-state") == "available"
    stored = await page.evaluate(
        "Object.keys(localStorage).filter((k) => k.startsWith('realtime-bookings:'))"
        ".map((k) => JSON.parse(localStorage.getItem(k)).length)")
    assert stored == [1]  # the cancelled ones are dropped from storage as well

    # Another person (another browser) sees the booked place as taken, never as theirs.
    other = await open_widget(pages, url)
    await other.locator('[data-nav="next"]').click()
    await wait_attr(other, later, "data-available", "1")
    assert await slot_el(other, later).get_attribute("data-state") == "available"
    assert await other.locator(MINE).count() == 0
