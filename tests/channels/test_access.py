"""One entry point: HTTP and WebSocket ask the same questions of the caller and agree."""

from __future__ import annotations

import time

import httpx
import jwt
from prometheus_client import REGISTRY

from tests.channels.conftest import World, client, start_live, stop_live

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def token(sub: str, admin: bool = False) -> str:
    claims = {"sub": sub, "exp": int(time.time() + 120)}
    if admin:
        claims["role"] = "admin"
    return jwt.encode(claims, SECRET, algorithm="HS256")


def bearer(sub: str, admin: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, admin)}"}


def booked(outcome: str) -> float:
    return REGISTRY.get_sample_value(
        "realtime_bookings_total", {"operation": "book", "outcome": outcome}) or 0.0


async def test_both_doors_agree_on_customer_ownership_and_idempotency(database_url: str,
                                                                     world: World) -> None:
    """A booking made over one door belongs to the same customer, is hidden from others and
    replays under the same Idempotency-Key over the other door; both count the same way."""
    live = await start_live(database_url, jwt_secret=SECRET)
    slot = world.slots[world.services[0]][0]["id"]
    ok_before = booked("ok")
    try:
        async with httpx.AsyncClient(base_url=live.url) as http:
            async with client(f"{live.ws_url}?token={token('ann')}") as ann:
                await ann.send(type="book", id="b", slot_id=slot, idempotency_key="order-7")
                over_ws = (await ann.expect("result", id="b", ok=True))["booking"]
                replay = await http.post("/api/bookings", json={"slot_id": slot},
                                         headers={**bearer("ann"), "Idempotency-Key": "order-7"})
                hold = (await http.post("/api/holds", json={"slot_id": slot},
                                        headers=bearer("ann"))).json()["hold"]
            assert over_ws["customer_id"] == "ann"
            assert replay.status_code == 201 and replay.json()["booking"]["id"] == over_ws["id"]
            bob_cancel = await http.post(f"/api/bookings/{over_ws['id']}/cancel",
                                         headers=bearer("bob"))
            assert bob_cancel.status_code == 404
            assert bob_cancel.json()["error"]["code"] == "BOOKING_NOT_FOUND"
            async with client(f"{live.ws_url}?token={token('bob')}") as bob:
                await bob.send(type="book", id="c", slot_id=slot, hold_id=hold["id"])
                refused = await bob.expect("result", id="c", ok=False)
                await bob.send(type="cancel", id="x", booking_id=over_ws["id"])
                hidden = await bob.expect("result", id="x", ok=False)
            assert refused["error"]["code"] == "HOLD_NOT_FOUND"
            assert hidden["error"]["code"] == "BOOKING_NOT_FOUND"
            async with client(f"{live.ws_url}?token={token('boss', admin=True)}") as boss:
                await boss.send(type="book", id="d", slot_id=slot, hold_id=hold["id"])
                confirmed = (await boss.expect("result", id="d", ok=True))["booking"]
            assert confirmed["customer_id"] == "ann"  # an admin confirms the customer's hold
            own = await http.post(f"/api/bookings/{over_ws['id']}/cancel", headers=bearer("ann"))
            assert own.status_code == 200 and own.json()["booking"]["status"] == "cancelled"
        # Three successful bookings through both doors (the replay books nothing new, and is
        # counted as the request it answered).
        assert booked("ok") - ok_before == 3
    finally:
        await stop_live(live)


async def test_401_names_the_scheme_and_405_names_the_methods(database_url: str) -> None:
    """A 401 carries WWW-Authenticate: Bearer; a 405 carries Allow."""
    live = await start_live(database_url, jwt_secret=SECRET)
    try:
        async with httpx.AsyncClient(base_url=live.url) as http:
            unauthorized = await http.post("/api/bookings", json={"slot_id": "x"})
            wrong_method = await http.get("/api/bookings")
            wrong_put = await http.put("/api/holds")
    finally:
        await stop_live(live)
    assert unauthorized.status_code == 401
    assert unauthorized.headers["www-authenticate"].startswith("Bearer")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_put.status_code == 405 and wrong_put.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_the_servers_own_page_is_never_locked_out(database_url: str, world: World) -> None:
    """With REALTIME_ALLOWED_ORIGINS naming another site, the server's own origin still
    connects, the listed site connects, and any other site is refused with 1008."""
    live = await start_live(database_url, allowed_origins=("https://shop.example",))
    try:
        async with client(live.ws_url, origin=f"http://127.0.0.1:{live.port}") as own:
            await own.send(type="ping", id="p")
            await own.expect("pong", id="p")
        async with client(live.ws_url, origin="https://shop.example") as listed:
            await listed.send(type="ping", id="p")
            await listed.expect("pong", id="p")
        async with client(live.ws_url, origin="https://evil.example") as other:
            assert await other.closed() == 1008
    finally:
        await stop_live(live)


async def test_confirming_a_multi_unit_hold_over_the_socket(live, world: World) -> None:
    """`book` with a `hold_id` and no quantity confirms the whole hold, as over HTTP."""
    slot = world.slots[world.services[0]][0]["id"]
    async with httpx.AsyncClient(base_url=live.url) as http:
        hold = (await http.post("/api/holds", json={"slot_id": slot, "quantity": 3})).json()["hold"]
    async with client(live.ws_url) as c:
        await c.send(type="book", id="b", slot_id=slot, hold_id=hold["id"])
        result = await c.expect("result", id="b")
    assert result["ok"] is True, result
    assert result["booking"]["quantity"] == 3
