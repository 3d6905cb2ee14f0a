"""Hundreds of real concurrent requests against a real server and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import asyncpg

from tests.booking.helpers import BASE_TIME, client_for, make_service, make_slots, one_slot, race


async def test_capacity_one_has_exactly_one_winner(any_server, any_database_url):
    """200 racers on a capacity-1 slot: exactly one 201 and 199 BOOKING_CONFLICT."""
    async with client_for(any_server.url) as client:
        slot = await one_slot(client, capacity=1)
        responses = await race(client, 200, lambda i: {"slot_id": slot["id"], "customer_id": f"c{i}"})
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 199}
    conflicts = [r.json()["error"] for r in responses if r.status_code == 409]
    assert all(e["code"] == "BOOKING_CONFLICT" for e in conflicts)
    assert all(e["slot"]["id"] == slot["id"] for e in conflicts)
    assert all(isinstance(e["alternatives"], list) for e in conflicts)
    conn = await asyncpg.connect(any_database_url)
    try:
        row = await conn.fetchrow("SELECT booked, held, version FROM rt_slots WHERE id = $1",
                                  slot["id"])
        confirmed = await conn.fetchval(
            "SELECT count(*) FROM rt_reservations WHERE slot_id = $1 AND status = 'confirmed'",
            slot["id"])
        conflict_audits = await conn.fetchval(
            "SELECT count(*) FROM rt_audit WHERE slot_id = $1 AND outcome = 'conflict'", slot["id"])
        conflict_events = await conn.fetchval(
            "SELECT count(*) FROM rt_events WHERE slot_id = $1 AND kind = 'conflict'", slot["id"])
    finally:
        await conn.close()
    assert (row["booked"], row["held"], row["version"]) == (1, 0, 2)
    assert confirmed == 1
    assert conflict_audits == conflict_events == 199


async def test_capacity_n_has_exactly_n_winners(any_server, any_database_url):
    """200 racers on a capacity-7 slot: exactly 7 bookings, never more."""
    async with client_for(any_server.url) as client:
        slot = await one_slot(client, capacity=7)
        responses = await race(client, 200, lambda i: {"slot_id": slot["id"]})
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 7, 409: 193}
    versions = sorted(r.json()["slot"]["version"] for r in responses if r.status_code == 201)
    assert versions == list(range(2, 9))


async def test_mixed_quantities_never_overbook(any_server, any_database_url):
    """Racers asking 1-3 units of a capacity-10 slot never exceed 10 units in total."""
    async with client_for(any_server.url) as client:
        slot = await one_slot(client, capacity=10)
        responses = await race(client, 150, lambda i: {"slot_id": slot["id"], "quantity": 1 + i % 3})
    won = sum(r.json()["booking"]["quantity"] for r in responses if r.status_code == 201)
    assert 8 <= won <= 10
    assert all(r.status_code in (201, 409) for r in responses)


async def test_exclusive_service_never_overlaps(any_server, any_database_url):
    """Racers on overlapping slots of an exclusive service: no two confirmed bookings overlap."""
    day = timedelta(days=1)
    spans = [(BASE_TIME + i * day, BASE_TIME + (i + length) * day, 1)
             for i in range(6) for length in (1, 2, 3)]
    async with client_for(any_server.url) as client:
        service = await make_service(client, exclusive=True, name="car")
        slots = await make_slots(client, service["id"], spans)
        responses = await race(client, 240, lambda i: {"slot_id": slots[i % len(slots)]["id"]})
    assert all(r.status_code in (201, 409) for r in responses), {r.status_code for r in responses}
    assert sum(r.status_code == 201 for r in responses) >= 2
    conn = await asyncpg.connect(any_database_url)
    try:
        overlaps = await conn.fetchval(
            """SELECT count(*) FROM rt_reservations a JOIN rt_reservations b
               ON a.service_key = b.service_key AND a.id < b.id
              AND tstzrange(a.starts_at, a.ends_at) && tstzrange(b.starts_at, b.ends_at)
               WHERE a.status = 'confirmed' AND b.status = 'confirmed'""")
    finally:
        await conn.close()
    assert overlaps == 0


async def test_concurrent_idempotent_replays_book_once(any_server, any_database_url):
    """50 concurrent requests with one Idempotency-Key give one booking and identical answers."""
    async with client_for(any_server.url) as client:
        slot = await one_slot(client, capacity=100)
        import asyncio

        body = {"slot_id": slot["id"], "quantity": 2}
        responses = await asyncio.gather(*[
            client.post("/api/bookings", json=body, headers={"Idempotency-Key": "order-42"})
            for _ in range(50)])
        other = await client.post("/api/bookings", json={"slot_id": slot["id"], "quantity": 3},
                                  headers={"Idempotency-Key": "order-42"})
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    conn = await asyncpg.connect(any_database_url)
    try:
        booked = await conn.fetchval("SELECT booked FROM rt_slots WHERE id = $1", slot["id"])
    finally:
        await conn.close()
    assert booked == 2


async def test_idempotent_replay_of_a_conflict_returns_the_conflict(any_server):
    """A replayed key returns the first response even when that was a 409."""
    async with client_for(any_server.url) as client:
        slot = await one_slot(client, capacity=1)
        await client.post("/api/bookings", json={"slot_id": slot["id"]})
        first = await client.post("/api/bookings", json={"slot_id": slot["id"]},
                                  headers={"Idempotency-Key": "k-conflict"})
        bookings = await client.get(f"/api/services/{slot['service_id']}/availability")
        cancel_target = bookings.json()["slots"][0]
        assert cancel_target["available"] == 0
        second = await client.post("/api/bookings", json={"slot_id": slot["id"]},
                                   headers={"Idempotency-Key": "k-conflict"})
    assert first.status_code == second.status_code == 409
    assert first.content == second.content
