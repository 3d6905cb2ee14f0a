"""realtime.js in real Chromium switched offline (Playwright's `set_offline`): the state is
`offline` within 2 s, a booking made offline rejects with OFFLINE in plain words, a booking
made with `whenOnline` waits and books exactly once when the network is back, and a retry
after a lost answer (same Idempotency-Key) books nothing more. One test, one server: the CI
budget."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from tests.browser.conftest import make_service
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

SETUP = """async ({channel}) => {
  const { RealtimeClient } = await import("/static/realtime.js");
  const rt = new RealtimeClient({ baseDelay: 200 });
  const seen = { states: [] };
  rt.on("state", ({ state }) => seen.states.push(state));
  // A request's outcome as plain data: {ok, value} or {ok: false, name, code, message}.
  const settle = (p) => p.then((value) => ({ ok: true, value }),
    (e) => ({ ok: false, name: e.name, code: e.code, message: e.message }));
  Object.assign(window, { rt, seen, settle, channel: rt.subscribe(channel) });
  await window.channel.ready;
}"""


async def open_client(pages: Any, server: ServerProcess, service_id: str) -> Any:
    page = await pages()
    await page.goto(server.url + "/healthz")  # any document of the server's origin
    await page.evaluate(SETUP, {"channel": f"service:{service_id}"})
    await page.wait_for_function("rt.state === 'live'")
    return page


async def bookings_of(database_url: str, slot_id: str) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT status, quantity FROM rt_reservations WHERE slot_id = $1 AND kind = 'booking'",
                                slot_id)
    finally:
        await conn.close()
    return [(r["status"], r["quantity"]) for r in rows]


async def test_offline_within_2s_rejects_plainly_and_books_once_when_back(live_server: ServerProcess,
                                                                           pages: Any) -> None:
    """Offline in under 2 s; book rejects OFFLINE; whenOnline books once after set_offline(False) or a lost answer."""
    data = make_service(live_server, [10, 10])
    slot = data["slots"][0]["id"]
    page = await open_client(pages, live_server, data["service"]["id"])

    await page.context.set_offline(True)
    await page.wait_for_function("rt.state === 'offline'", timeout=2_000, polling=50)

    refused = await page.evaluate(f"settle(rt.book('{slot}'))")
    assert refused["ok"] is False and refused["name"] == "RealtimeError"
    assert refused["code"] == "OFFLINE"
    assert refused["message"] == "You are offline, so this was not sent. Try again when you are back online."
    read = await page.evaluate(f"settle(rt.getService('{data['service']['id']}'))")
    assert read["code"] == "OFFLINE"

    await page.evaluate(f"void (window.queued = settle(rt.book('{slot}', {{ quantity: 2, whenOnline: true }})))")
    await asyncio.sleep(1.0)
    assert await page.evaluate("Promise.race([queued, new Promise((r) => setTimeout(() => r('pending'), 50))])") \
        == "pending"
    assert await bookings_of(live_server.database_url, slot) == []

    await page.context.set_offline(False)
    result = await page.evaluate("queued")
    assert result["ok"] is True, result
    assert result["value"]["booking"]["quantity"] == 2
    assert await bookings_of(live_server.database_url, slot) == [("confirmed", 2)]
    await page.wait_for_function("rt.state === 'live'")
    states = await page.evaluate("seen.states")
    assert states[-3:] == ["offline", "reconnecting", "live"], states
    await page.wait_for_function(f"channel.get('{slot}')?.booked === 2")

    # The server books but its answer is lost on the way back (NETWORK_ERROR): whenOnline
    # retries with the same Idempotency-Key, and the second answer is the first booking's.
    slot = data["slots"][1]["id"]
    keys: list[str] = []

    async def lose_first_answer(route: Any) -> None:
        keys.append(route.request.headers.get("idempotency-key", ""))
        if len(keys) == 1:
            await route.fetch()  # the server books it ...
            await route.abort("connectionreset")  # ... and the page never hears back
        else:
            await route.continue_()

    await page.route("**/api/bookings", lose_first_answer)
    result = await page.evaluate(f"settle(rt.book('{slot}', {{ whenOnline: true, customerId: 'c-1' }}))")
    assert result["ok"] is True, result
    assert len(keys) == 2 and keys[0] == keys[1] != "", keys
    assert await bookings_of(live_server.database_url, slot) == [("confirmed", 1)]
    await page.wait_for_function(f"channel.get('{slot}')?.booked === 1")
