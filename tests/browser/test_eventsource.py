"""A browser's own EventSource on /sse: live updates, and across a server restart it resumes
with Last-Event-ID, showing exactly the changes it missed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.browser.conftest import api, make_service

pytestmark = pytest.mark.browser

LISTEN = """(channel) => {
  window.seen = [];
  const source = new EventSource(`/sse?channel=${channel}`);
  for (const type of ["subscribed", "availability:updated", "conflict:detected"]) {
    source.addEventListener(type, (e) => window.seen.push(
      {type, id: e.lastEventId, data: JSON.parse(e.data)}));
  }
  source.onerror = () => window.seen.push({type: "error", state: source.readyState});
}"""


async def seen(page: Any) -> list[dict[str, Any]]:
    return await page.evaluate("window.seen")  # type: ignore[no-any-return]


async def until(page: Any, check: Any, within: float = 20.0) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        got = await seen(page)
        if check(got):
            return got
        assert asyncio.get_running_loop().time() < deadline, got
        await asyncio.sleep(0.1)


def versions(events: list[dict[str, Any]]) -> list[int]:
    """The slot versions an EventSource was told about, live or in a resume's `events`."""
    out = []
    for e in events:
        if e["type"] == "availability:updated":
            out.append(e["data"]["slot"]["version"])
        elif e["type"] == "subscribed" and "events" in e["data"]:
            out += [m["slot"]["version"] for m in e["data"]["events"]]
    return out


async def test_eventsource_resumes_across_a_restart(live_server, pages) -> None:
    """Updates arrive live; while the server restarts, three bookings happen; the browser
    reconnects by itself with Last-Event-ID and gets exactly those three, then live again."""
    data = make_service(live_server, [20])
    slot = data["slots"][0]["id"]
    page = await pages()
    await page.goto(live_server.url + "/static/index.html")
    await page.evaluate(LISTEN, f"service:{data['service']['id']}")
    await until(page, lambda s: any(e["type"] == "subscribed" for e in s))
    api(live_server, "POST", "/api/bookings", {"slot_id": slot}, expect=201)
    before = await until(page, lambda s: versions(s) == [2])
    assert before[-1]["id"] == before[-1]["data"]["cursor"]
    live_server.stop()
    await until(page, lambda s: any(e["type"] == "error" for e in s))
    live_server.start()
    for _ in range(3):
        api(live_server, "POST", "/api/bookings", {"slot_id": slot}, expect=201)
    after = await until(page, lambda s: versions(s) == [2, 3, 4, 5])
    resumed = [e for e in after if e["type"] == "subscribed"][-1]["data"]
    assert "events" in resumed and "snapshot" not in resumed  # a resume, not a fresh snapshot
    api(live_server, "POST", "/api/bookings", {"slot_id": slot}, expect=201)
    await until(page, lambda s: versions(s) == [2, 3, 4, 5, 6])
