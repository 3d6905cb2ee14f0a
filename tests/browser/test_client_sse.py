"""realtime.js in real Chromium where every WebSocket to the server fails (as behind a proxy
that breaks them) while HTTP works: the library falls back to Server-Sent Events by itself,
gets live updates, books over HTTP, resumes across a server restart with nothing missed, and
goes back to the WebSocket once one works again. Confirming a multi-unit hold books the
hold's own quantity, over HTTP and over the socket."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.browser.conftest import api, make_service
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

# The client, as a page would use it (defaults except the retry delays, shortened for the test).
SETUP = """async ({channel, options}) => {
  const { RealtimeClient } = await import("/static/realtime.js");
  const rt = new RealtimeClient(options);
  const seen = { transports: [], states: [], versions: [], subscribed: [] };
  rt.on("transport", ({ transport }) => seen.transports.push(transport));
  rt.on("state", ({ state }) => seen.states.push(state));
  rt.on("availability:updated", ({ slot }) => seen.versions.push(slot.version));
  rt.on("subscribed", ({ resumed, missed }) => seen.subscribed.push({ resumed, missed }));
  Object.assign(window, { rt, seen, channel: rt.subscribe(channel) });
}"""


class Proxy:
    """Playwright's WebSocket routing as a proxy that breaks WebSockets (each attempt is closed
    before it opens) until `allow` is set."""

    def __init__(self) -> None:
        self.attempts = 0
        self.allow = False

    async def handle(self, ws: Any) -> None:
        self.attempts += 1
        if self.allow:
            ws.connect_to_server()
        else:
            await ws.close()


async def until(page: Any, expression: str, within: float = 30.0) -> None:
    await page.wait_for_function(expression, timeout=within * 1000, polling=100)


async def open_client(pages: Any, server: ServerProcess, channel: str, proxy: Proxy,
                      **options: Any) -> tuple[Any, list[tuple[str, str]]]:
    page = await pages()
    await page.route_web_socket("**/ws*", proxy.handle)
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.method, urlparse(r.url).path)))
    await page.goto(server.url + "/healthz")  # any document of the server's origin
    await page.evaluate(SETUP, {"channel": channel, "options": {"baseDelay": 200, **options}})
    return page, requests


def slot_state(server: ServerProcess, service_id: str, slot_id: str) -> dict[str, Any]:
    slots = api(server, "GET", f"/api/services/{service_id}/availability", expect=200)["slots"]
    return next(s for s in slots if s["id"] == slot_id)  # type: ignore[no-any-return]


async def test_falls_back_to_sse_books_over_http_and_resumes_across_a_restart(
        live_server: ServerProcess, pages: Any) -> None:
    """No WebSocket opens: live over SSE, a 3-unit hold confirmed over HTTP, nothing missed across a restart."""
    data = make_service(live_server, [20])
    service, slot = data["service"]["id"], data["slots"][0]["id"]
    proxy = Proxy()
    page, requests = await open_client(pages, live_server, f"service:{service}", proxy)
    await until(page, "rt.transport === 'sse' && rt.state === 'live'")
    assert proxy.attempts >= 4, "three failed WebSocket attempts, and a fourth beside the stream"
    assert await page.evaluate("seen.transports") == ["sse"]
    assert ("GET", "/sse") in requests

    # Someone else books over HTTP: the page sees it live.
    api(live_server, "POST", "/api/bookings", {"slot_id": slot}, expect=201)
    await until(page, f"channel.get('{slot}')?.version === 2 && channel.get('{slot}').booked === 1")

    # The page holds 3 units and confirms the hold: both over HTTP (the socket never opened).
    booking = await page.evaluate("""async (slot) => {
      const { hold } = await rt.hold(slot, { quantity: 3 });
      const { booking } = await rt.book(slot, { holdId: hold.id });
      return booking;
    }""", slot)
    assert booking["quantity"] == 3 and booking["status"] == "confirmed"
    assert ("POST", "/api/holds") in requests and ("POST", "/api/bookings") in requests
    server_slot = slot_state(live_server, service, slot)
    assert (server_slot["booked"], server_slot["held"]) == (4, 0)
    await until(page, f"channel.get('{slot}').version === {server_slot['version']}")

    # A restart: three bookings while the page is away, one after it is back.
    live_server.stop()
    await until(page, "rt.state !== 'live'")
    live_server.start()
    for _ in range(3):
        api(live_server, "POST", "/api/bookings", {"slot_id": slot}, expect=201)
    await until(page, "rt.state === 'live'")
    api(live_server, "POST", "/api/bookings", {"slot_id": slot}, expect=201)
    final = slot_state(live_server, service, slot)
    await until(page, f"channel.get('{slot}').version === {final['version']}")
    local = await page.evaluate(f"channel.get('{slot}')")
    assert (local["booked"], local["available"]) == (final["booked"], final["available"]) == (8, 12)
    seen = await page.evaluate("seen")
    assert seen["versions"] == list(range(2, final["version"] + 1)), "every version, once, in order"
    assert seen["subscribed"][-1]["resumed"] is True, "a resume from the cursor, not a snapshot"
    assert seen["transports"] == ["sse"]
    assert await page.evaluate("rt.transport") == "sse"


async def test_goes_back_to_the_websocket_once_one_works(live_server: ServerProcess,
                                                         pages: Any) -> None:
    """On SSE a WebSocket is retried; once one gets through it takes over while live, and confirms a 2-unit hold."""
    data = make_service(live_server, [5])
    service, slot = data["service"]["id"], data["slots"][0]["id"]
    proxy = Proxy()
    page, _ = await open_client(pages, live_server, f"service:{service}", proxy,
                                wsRetryInterval=1500)
    await until(page, "rt.transport === 'sse' && rt.state === 'live'")
    tried = proxy.attempts
    for _ in range(150):  # the retry is due after 1.5 s, checked at the client's next tick
        if proxy.attempts > tried:
            break
        await asyncio.sleep(0.1)
    assert proxy.attempts > tried, "a WebSocket is tried again while on SSE"
    assert await page.evaluate("rt.transport + ' ' + rt.state") == "sse live"
    proxy.allow = True
    await until(page, "rt.transport === 'websocket'")
    assert await page.evaluate("rt.state") == "live"
    api(live_server, "POST", "/api/bookings", {"slot_id": slot}, expect=201)
    await until(page, f"channel.get('{slot}')?.version === 2")
    seen = await page.evaluate("seen")
    assert seen["transports"] == ["sse", "websocket"]
    assert seen["states"][-1] == "live" and seen["states"].count("live") == 1, seen["states"]
    # Presence is back with the WebSocket.
    await until(page, "channel.presence === 1")
    # Over the socket too, confirming a hold books the hold's own quantity.
    booking = await page.evaluate("""async (slot) => {
      const { hold } = await rt.hold(slot, { quantity: 2 });
      return (await rt.book(slot, { holdId: hold.id })).booking;
    }""", slot)
    assert await page.evaluate("rt.transport") == "websocket"
    assert booking["quantity"] == 2
    assert slot_state(live_server, service, slot)["booked"] == 3
