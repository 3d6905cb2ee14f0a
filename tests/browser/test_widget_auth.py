"""<realtime-booking> on a site with signed-in customers, in real Chromium against a real server
with auth on (REALTIME_JWT_SECRET): docs/widget.md's signed-in page served by another origin,
whose own `/realtime-token` answers the signed-in customer's JWT."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio

from tests.browser.conftest import (
    ForeignSite,
    assert_accessible,
    rfc3339,
    serving,
    slot_el,
    wait_attr,
    wait_text,
)
from tests.browser.docs_example import DOCS, example_html
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

SECRET = "widget-auth-secret-of-sufficient-length-0123"


def mint(sub: str, ttl: float = 300, admin: bool = False) -> str:
    claims: dict[str, Any] = {"sub": sub, "exp": int(time.time() + ttl)}
    if admin:
        claims["role"] = "admin"
    return jwt.encode(claims, SECRET, algorithm="HS256")


class TokenSite(ForeignSite):
    """A shop with signed-in customers (another origin): every path serves its one page, but
    `/realtime-token`, which answers `{"token": ...}` for `subject` (null when nobody is signed
    in), each token valid for `ttl` seconds; `issued` counts them."""

    def __init__(self) -> None:
        self.subject: str | None = None
        self.ttl = 300.0
        self.issued = 0
        super().__init__()

    def answer(self, path: str) -> tuple[bytes, str]:
        if not path.startswith("/realtime-token"):
            return super().answer(path)
        token = mint(self.subject, self.ttl) if self.subject else None
        self.issued += token is not None
        return json.dumps({"token": token}).encode(), "application/json"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def auth_site(admin_dsn: str, tmp_path_factory) -> AsyncIterator[
        tuple[ServerProcess, TokenSite]]:
    """A server with auth on that allows the shop's origin, and the shop."""
    async with serving(TokenSite(), admin_dsn, tmp_path_factory.mktemp("widget-auth"),
                       {"REALTIME_JWT_SECRET": SECRET}) as both:
        yield both


def call(server: ServerProcess, method: str, path: str, body: dict | None = None,
         sub: str | None = None) -> Any:
    """The HTTP API as `sub` (a customer), or without a token; must succeed."""
    headers = {"Authorization": f"Bearer {mint(sub)}"} if sub else {}
    r = httpx.request(method, server.url + path, json=body, timeout=10, headers=headers)
    assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def as_admin(server: ServerProcess, method: str, path: str, body: dict | None = None) -> Any:
    r = httpx.request(method, server.url + path, json=body, timeout=10,
                      headers={"Authorization": f"Bearer {mint('boss', admin=True)}"})
    assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def a_service(server: ServerProcess, capacities: list[int]) -> tuple[str, list[str]]:
    """A service with one slot per capacity, hourly from tomorrow 09:00 UTC: (id, slot ids)."""
    vendor = as_admin(server, "POST", "/api/vendors", {"name": "Signed-in Salon"})
    service = as_admin(server, "POST", f"/api/vendors/{vendor['id']}/services", {"name": "Cut"})
    day = (datetime.now(UTC) + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    slots = [{"starts_at": rfc3339(day + timedelta(hours=i)),
              "ends_at": rfc3339(day + timedelta(hours=i, minutes=45)), "capacity": cap}
             for i, cap in enumerate(capacities)]
    made = as_admin(server, "POST", f"/api/services/{service['id']}/slots", {"slots": slots})
    return service["id"], [s["id"] for s in sorted(made["slots"], key=lambda s: s["starts_at"])]


def signed_in_page(server: ServerProcess, service_id: str) -> str:
    """docs/widget.md's second html example: the page of a site with signed-in customers."""
    blocks = re.findall(r"```html\n(.*?)```", (DOCS / "widget.md").read_text(), re.S)
    assert len(blocks) >= 2 and "getToken" in blocks[1], "docs/widget.md: no signed-in example"
    return blocks[1].replace("https://booking.example.com", server.url).replace(
        "SERVICE_ID", service_id)


async def shop_page(pages, url: str, errors: list[str]) -> Any:
    """A page of the shop, its console errors (failed requests included) collected."""
    page = await pages()
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    await page.goto(url)
    await page.wait_for_selector("[data-slot-id]")
    await page.wait_for_selector("[data-connection=live]")
    return page


async def test_without_a_token_the_widget_asks_for_a_sign_in(auth_site, pages) -> None:
    """No token: the times show live, a notice says to sign in, a click (or Enter) books nothing
    and fires realtime-signin; an expired fixed token says the sign-in expired; no console errors."""
    server, site = auth_site
    service_id, (first, second) = a_service(server, [2, 1])
    errors: list[str] = []
    site.subject = None
    site.html = signed_in_page(server, service_id)  # getToken answers null: nobody signed in
    page = await shop_page(pages, f"{site.origin}/book", errors)
    await page.wait_for_selector("[data-signin]:not([hidden])")
    await wait_text(page, "[data-signin]", "Sign in to book.")
    link = page.locator("[data-signin] a")
    assert await link.get_attribute("href") == f"{site.origin}/login"
    label = await slot_el(page, first).locator("button").get_attribute("aria-label")
    assert label.endswith("Sign in to book"), label

    await page.evaluate("""() => { window.asked = [];
        document.addEventListener('realtime-signin', (e) => window.asked.push(e.detail)); }""")
    await slot_el(page, first).click()
    assert await page.evaluate("window.asked") == [{"reason": "none", "slotId": first}]
    assert await link.evaluate("a => a.getRootNode().activeElement === a")  # the click points at it
    # The keyboard alone does the same: Enter on a time points at the sign-in link.
    await slot_el(page, second).locator("button").focus()
    await page.keyboard.press("Enter")
    await page.wait_for_function("window.asked.length === 2")
    assert await page.evaluate("window.asked[1]") == {"reason": "none", "slotId": second}
    assert await link.evaluate("a => a.getRootNode().activeElement === a")
    await asyncio.sleep(0.3)
    assert await slot_el(page, first).get_attribute("data-state") == "available"
    avail = call(server, "GET", f"/api/services/{service_id}/availability")["slots"]
    assert [s["available"] for s in avail] == [2, 1]  # nothing was booked

    # Still live: someone signed in elsewhere books, and this page sees it.
    call(server, "POST", "/api/bookings", {"slot_id": second}, sub="zoe")
    await wait_attr(page, second, "data-state", "full")
    await assert_accessible(page, "sign-in needed")

    # The plain example (no token at all), and a fixed token that has expired.
    site.html = example_html(server.url, service_id, doc="widget.md")
    plain = await shop_page(pages, f"{site.origin}/plain", errors)
    await wait_text(plain, "[data-signin]", "Sign in to book.")
    expired = mint("ann", ttl=-60)
    site.html = site.html.replace('service="', f'token="{expired}" service="', 1)
    stale = await shop_page(pages, f"{site.origin}/stale", errors)
    await wait_text(stale, "[data-signin]", "Your sign-in has expired.")
    await slot_el(stale, first).click()
    await wait_attr(stale, first, "data-state", "available")
    assert not errors, errors


async def test_with_get_token_it_books_for_the_tokens_subject(auth_site, pages) -> None:
    """Signed in through getToken: a click books, the booking is the token's sub's, it is
    `mine` again after a reload, and cancelling it from "Your bookings" works."""
    server, site = auth_site
    service_id, (first, second) = a_service(server, [3, 1])
    errors: list[str] = []
    site.subject, site.ttl = "customer-ann", 300
    site.html = signed_in_page(server, service_id)
    page = await shop_page(pages, f"{site.origin}/book", errors)
    assert await page.locator("[data-signin]").is_hidden()
    await slot_el(page, first).click()
    await wait_attr(page, first, "data-state", "mine")
    booking_id = await page.locator("#rt-mine-list li[data-booking-id]").get_attribute(
        "data-booking-id")
    booking = as_admin(server, "GET", f"/api/bookings/{booking_id}")["booking"]
    assert booking["customer_id"] == "customer-ann" and booking["status"] == "confirmed"

    await page.reload()
    await page.wait_for_selector("[data-connection=live]")
    await wait_attr(page, first, "data-state", "mine")
    assert await page.locator("#rt-mine-list li").count() == 1
    await page.locator(f'[data-cancel-slot="{first}"]').click()
    await wait_attr(page, first, "data-state", "available")
    assert as_admin(server, "GET", f"/api/bookings/{booking_id}")["booking"]["status"] == "cancelled"

    # Another customer in the same browser does not see ann's bookings as theirs.
    await slot_el(page, second).click()
    await wait_attr(page, second, "data-state", "mine")
    site.subject = "customer-bob"
    await page.reload()
    await page.wait_for_selector("[data-connection=live]")
    await wait_attr(page, second, "data-state", "full")
    assert await page.locator("#rt-mine-list li").count() == 0
    await assert_accessible(page, "signed in")
    assert not errors, errors


async def test_tokens_that_expire_are_refreshed_without_losing_live_updates(
        auth_site, pages) -> None:
    """Tokens of 4 s: getToken is asked again, the socket stays live and hears others'
    bookings, and a booking long after the first token expired is the customer's."""
    server, site = auth_site
    service_id, (first, second) = a_service(server, [3, 2])
    errors: list[str] = []
    site.subject, site.ttl, site.issued = "customer-kim", 4, 0
    site.html = signed_in_page(server, service_id)
    page = await shop_page(pages, f"{site.origin}/book", errors)
    await page.evaluate("""() => { window.states = [];
        const conn = deepQuery('[data-connection]');
        new MutationObserver(() => window.states.push(conn.dataset.connection))
            .observe(conn, { attributes: true, attributeFilter: ['data-connection'] }); }""")
    first_issued = site.issued
    await asyncio.sleep(7)  # the first token has expired
    # Asked again (the client checks every 4 s: before the expiry, or after it when a refused
    # booking asks for a fresh token; either way the page's getToken).
    assert site.issued >= first_issued + 1, site.issued
    call(server, "POST", "/api/bookings", {"slot_id": second}, sub="zoe")
    await wait_attr(page, second, "data-available", "1")
    await slot_el(page, first).click()
    await wait_attr(page, first, "data-state", "mine")
    booking_id = await page.locator("#rt-mine-list li[data-booking-id]").get_attribute(
        "data-booking-id")
    assert as_admin(server, "GET", f"/api/bookings/{booking_id}")["booking"]["customer_id"] == (
        "customer-kim")
    assert await page.evaluate("window.states") == []  # never left `live`
    assert await page.locator("[data-signin]").is_hidden()
    assert not errors, errors
