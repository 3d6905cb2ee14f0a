"""<realtime-booking> on another site's page (another origin) and the server's own page, with
REALTIME_ALLOWED_ORIGINS naming only that other site (the shared widget_site fixture), in real
Chromium against a real server."""

from __future__ import annotations

import pytest

from tests.browser.conftest import (
    api,
    assert_accessible,
    make_service,
    open_widget,
    slot_el,
    wait_attr,
)
from tests.browser.docs_example import example_html

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

# The host page's own styles: loud ones that would show if they reached the widget, and
# elements with the widget's class names that would change if its styles reached out.
HOST_STYLE = """<style>
  html { font-size: 10px; }
  body { font: 30px/1 serif; color: rgb(0, 128, 0); }
  button { background: rgb(255, 0, 0) !important; }
  .rt-intro, .rt-slot { color: rgb(0, 0, 255); display: inline; padding: 0; }
</style>
<p class="rt-intro" id="host-intro">The host's own paragraph</p>
<div class="rt-slot" id="host-slot">The host's own block</div>
"""


async def test_the_element_on_another_sites_page_books_and_updates(widget_site, pages) -> None:
    """docs/widget.md's example, served by another origin: live, books, hears others, no style leaks."""
    server, foreign_site = widget_site
    data = make_service(server, [3, 1])
    big, single = (s["id"] for s in data["slots"])
    page_html = example_html(server.url, data["service"]["id"], doc="widget.md")
    foreign_site.html = page_html.replace("<h1>", HOST_STYLE + "<h1>", 1)
    site = await pages()
    await site.goto(f"{foreign_site.origin}/booking.html")
    await site.wait_for_selector(f'[data-slot-id="{big}"]')
    await site.wait_for_selector("[data-connection=live]")
    here = await open_widget(pages, f"{server.url}/?service={data['service']['id']}")

    # It books over the socket, and hears what the server's own page books.
    await slot_el(site, single).click()
    await wait_attr(site, single, "data-state", "mine")
    await wait_attr(here, single, "data-state", "full")
    await slot_el(here, big).click()
    await wait_attr(here, big, "data-state", "mine")
    await wait_attr(site, big, "data-available", "2")
    api(server, "POST", "/api/bookings", {"slot_id": big}, expect=201)
    await wait_attr(site, big, "data-available", "1")
    await wait_attr(here, big, "data-available", "1")

    # Styles: the host's do not reach in, the widget's do not reach out.
    inside = await site.locator(f'[data-slot-id="{big}"] button').evaluate(
        "b => getComputedStyle(b).backgroundColor")
    assert inside != "rgb(255, 0, 0)", inside
    intro = await site.locator("realtime-booking .rt-intro").evaluate(
        "e => [getComputedStyle(e).color, getComputedStyle(e).fontSize]")
    assert intro[0] != "rgb(0, 128, 0)" and intro[1] == "16px", intro
    heights = await site.eval_on_selector_all(
        "[data-slot-id] button", "els => els.map(e => e.getBoundingClientRect().height)")
    assert min(heights) >= 44, heights  # not shrunk by the page's 10px root font size
    outside = await site.evaluate("""() => ['host-intro', 'host-slot'].map((id) => {
        const s = getComputedStyle(document.getElementById(id));
        return [s.color, s.display, s.borderStyle];
    })""")
    assert outside == [["rgb(0, 0, 255)", "inline", "none"]] * 2
    await assert_accessible(site, "embedded in another site's page")


async def test_the_servers_own_page_stays_live_when_origins_name_another_site(
        widget_site, pages) -> None:
    """REALTIME_ALLOWED_ORIGINS adds other sites; it never locks the server's own page out."""
    server, site = widget_site
    assert server.extra_env["REALTIME_ALLOWED_ORIGINS"] == site.origin  # not the server's own
    data = make_service(server, [1])
    sid = data["slots"][0]["id"]
    url = f"{server.url}/?service={data['service']['id']}"
    a = await open_widget(pages, url)  # waits for data-connection=live
    b = await open_widget(pages, url)
    await slot_el(a, sid).click()
    await wait_attr(a, sid, "data-state", "mine")
    await wait_attr(b, sid, "data-state", "full")
    assert (await a.locator("[data-connection]").inner_text()).strip() == "live"
