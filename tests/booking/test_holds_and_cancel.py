"""Holds (confirm, release, expiry) and cancellation, through the HTTP API."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from tests.booking.helpers import client_for, one_slot, race


async def test_hold_then_confirm_turns_held_into_booked(any_server):
    """A hold sets units aside; confirming it books exactly those units."""
    async with client_for(any_server.url) as client:
        slot = await one_slot(client, capacity=3)
        held = await client.post("/api/holds", json={"slot_id": slot["id"], "quantity": 2,
                                                     "customer_id": "ann"})
        assert held.status_code == 201, held.text
        hold = held.json()["hold"]
        assert held.json()["slot"]["held"] == 2 and held.json()["slot"]["available"] == 1
        assert set(hold) == {"id", "slot_id", "quantity", "expires_at"}
        booked = await client.post("/api/bookings", json={"slot_id": slot["id"],
                                                          "hold_id": hold["id"]})
        assert booked.status_code == 201, booked.text
        body = booked.json()
        assert body["booking"]["quantity"] == 2 and body["booking"]["customer_id"] == "ann"
        assert (body["slot"]["booked"], body["slot"]["held"]) == (2, 0)
        again = await client.post("/api/bookings", json={"slot_id": slot["id"],
                                                         "hold_id": hold["id"]})
        assert again.status_code == 410
        assert again.json()["error"]["code"] == "HOLD_EXPIRED"


async def test_hold_on_a_full_slot_conflicts(any_server):
    """A hold asking more than is available is a BOOKING_CONFLICT with alternatives."""
    async with client_for(any_server.url) as client:
        slot = await one_slot(client, capacity=1)
        assert (await client.post("/api/holds", json={"slot_id": slot["id"]})).status_code == 201
        second = await client.post("/api/holds", json={"slot_id": slot["id"]})
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "BOOKING_CONFLICT"


async def test_release_gives_units_back_once(any_server):
    """DELETE /api/holds/{id} frees the units; a second DELETE changes nothing."""
    async with client_for(any_server.url) as client:
        slot = await one_slot(client, capacity=2)
        hold = (await client.post("/api/holds", json={"slot_id": slot["id"]})).json()["hold"]
        first = await client.delete(f"/api/holds/{hold['id']}")
        second = await client.delete(f"/api/holds/{hold['id']}")
        missing = await client.delete("/api/holds/00000000-0000-0000-0000-000000000000")
    assert first.status_code == second.status_code == 200
    assert first.json()["slot"]["held"] == 0 and first.json()["slot"]["available"] == 2
    assert second.json()["slot"]["version"] == first.json()["slot"]["version"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "HOLD_NOT_FOUND"


async def test_expired_holds_are_swept_within_two_seconds(any_server, any_database_url):
    """Holds whose TTL ends give their units back within 2 s, each with an 'expired' event."""
    async with client_for(any_server.url) as client:
        slot = await one_slot(client, capacity=5)
        holds = [(await client.post("/api/holds", json={"slot_id": slot["id"], "ttl_seconds": 1}))
                 .json()["hold"] for _ in range(3)]
        started = time.monotonic()
        while time.monotonic() - started < 4.0:
            state = (await client.get(f"/api/services/{slot['service_id']}/availability")).json()
            if state["slots"][0]["held"] == 0:
                break
            await asyncio.sleep(0.05)
        freed_after = time.monotonic() - started
        late = await client.post("/api/bookings", json={"slot_id": slot["id"],
                                                        "hold_id": holds[0]["id"]})
    assert state["slots"][0]["held"] == 0 and state["slots"][0]["available"] == 5
    assert freed_after < 2.5  # TTL 1 s + sweep: units back within 2 s of expiry
    assert late.status_code == 410
    conn = await asyncpg.connect(any_database_url)
    try:
        expired = await conn.fetchval(
            "SELECT count(*) FROM rt_events WHERE slot_id = $1 AND kind = 'expired'", slot["id"])
    finally:
        await conn.close()
    assert expired == 3


async def test_confirming_a_hold_past_its_time_expires_it(any_database_url):
    """A confirm that arrives after expires_at (before the sweeper) gets 410 and frees units."""
    conn = await asyncpg.connect(any_database_url)
    try:
        vendor = await conn.fetchval("INSERT INTO rt_vendors (name) VALUES ('v') RETURNING id")
        service = await conn.fetchval(
            "INSERT INTO rt_services (vendor_id, name) VALUES ($1, 's') RETURNING id", vendor)
        created = await conn.fetchval(
            """SELECT rt_create_slots($1, '[{"starts_at": "2030-01-01T10:00:00Z",
                   "ends_at": "2030-01-01T11:00:00Z", "capacity": 1}]')""", service)
        import json

        slot_id = json.loads(created)["slots"][0]["id"]
        hold = json.loads(await conn.fetchval("SELECT rt_hold($1, 1, 'x', 1)", slot_id))["hold"]
        await asyncio.sleep(1.1)
        result = json.loads(await conn.fetchval(
            "SELECT rt_book($1, NULL, 'x', $2, NULL, '', NULL, NULL)", slot_id, hold["id"]))
        row = await conn.fetchrow("SELECT held, booked, version FROM rt_slots WHERE id = $1",
                                  slot_id)
    finally:
        await conn.close()
    assert result["outcome"] == "hold_expired"
    assert (row["held"], row["booked"], row["version"]) == (0, 0, 3)


async def test_cancel_twice_changes_nothing_the_second_time(any_server):
    """Cancelling returns 200 both times; only the first gives the units back."""
    async with client_for(any_server.url) as client:
        slot = await one_slot(client, capacity=1)
        booking = (await client.post("/api/bookings", json={"slot_id": slot["id"]})).json()["booking"]
        first = await client.post(f"/api/bookings/{booking['id']}/cancel")
        second = await client.post(f"/api/bookings/{booking['id']}/cancel")
        fetched = await client.get(f"/api/bookings/{booking['id']}")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["booking"]["status"] == "cancelled"
    assert first.json()["slot"]["available"] == 1 and first.json()["slot"]["version"] == 3
    assert fetched.json() == first.json()


async def test_concurrent_cancels_free_units_once(any_server):
    """100 concurrent cancels of one booking give its units back exactly once."""
    async with client_for(any_server.url) as client:
        slot = await one_slot(client, capacity=1)
        booking = (await client.post("/api/bookings", json={"slot_id": slot["id"]})).json()["booking"]
        responses = await asyncio.gather(*[
            client.post(f"/api/bookings/{booking['id']}/cancel") for _ in range(100)])
        state = (await client.get(f"/api/services/{slot['service_id']}/availability")).json()
    assert {r.status_code for r in responses} == {200}
    assert state["slots"][0]["booked"] == 0 and state["slots"][0]["version"] == 3


async def test_holds_race_with_bookings_within_capacity(any_server):
    """Holds and bookings racing on one slot never exceed its capacity together."""
    async with client_for(any_server.url) as client:
        slot = await one_slot(client, capacity=5)

        async def hold() -> int:
            return (await client.post("/api/holds", json={"slot_id": slot["id"]})).status_code

        holds = [asyncio.create_task(hold()) for _ in range(100)]
        bookings = await race(client, 100, lambda i: {"slot_id": slot["id"]})
        hold_statuses = await asyncio.gather(*holds)
        state = (await client.get(f"/api/services/{slot['service_id']}/availability")).json()
    wins = hold_statuses.count(201) + sum(r.status_code == 201 for r in bookings)
    assert wins == 5
    s = state["slots"][0]
    assert s["booked"] + s["held"] == 5 and s["available"] == 0
