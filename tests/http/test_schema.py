"""The HTTP door's input rules, from the one schema, against a real server."""

from __future__ import annotations

import logging

import pytest

from realtime.db.connect import create_pool
from realtime.db.errors import retrying
from realtime.errors import RealtimeError
from tests.booking.helpers import client_for, make_service, one_slot

VALID = {"starts_at": "2030-01-07T09:00:00Z", "ends_at": "2030-01-07T10:00:00Z", "capacity": 1}


async def test_times_are_checked_in_utc_and_served_with_z(server):
    """Times are accepted only within 1970-9999 after conversion to UTC (422 naming the field,
    query parameters included, in the project's words); accepted ones are served as ...Z."""
    async with client_for(server.url) as client:
        service = await make_service(client)
        sid = service["id"]
        late = await client.post(f"/api/services/{sid}/slots", json={"slots": [
            {**VALID, "ends_at": "9999-12-31T23:59:59-01:00"}]})
        early = await client.post(f"/api/services/{sid}/slots", json={"slots": [
            VALID, {**VALID, "starts_at": "1969-12-31T23:59:59Z"}]})
        shifted = await client.post(f"/api/services/{sid}/slots", json={"slots": [
            {"starts_at": "1969-12-31T23:30:00-01:00", "ends_at": "9999-12-31T22:59:59-01:00",
             "capacity": 1}]})
        window = await client.get(f"/api/vendors/{service['vendor_id']}/availability",
                                  params={"from": "9999-12-31T23:59:59-01:00"})
        empty = await client.get(f"/api/services/{sid}/availability", params={"to": ""})
        spaced = await client.get(f"/api/services/{sid}/availability",
                                  params={"from": "2030-01-07 09:00:00Z"})
        served = (await client.get(f"/api/services/{sid}/availability")).json()["slots"]
    assert late.status_code == 422 and late.json()["error"]["field"] == "slots[0].ends_at"
    assert late.json()["error"]["message"] == "slots[0].ends_at: must be within years 1970-9999 in UTC"
    assert early.status_code == 422 and early.json()["error"]["field"] == "slots[1].starts_at"
    assert shifted.status_code == 201
    assert window.status_code == 422 and window.json()["error"]["field"] == "from"
    assert "out of range" not in window.text and "date value" not in window.text
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "to"
    assert spaced.status_code == 422 and spaced.json()["error"]["field"] == "from"
    assert [(s["starts_at"], s["ends_at"]) for s in served] == [
        ("1970-01-01T00:30:00Z", "9999-12-31T23:59:59Z")]


async def test_limits_the_schema_states_are_the_ones_enforced(server):
    """2.0 counts as the integer 2 and 2.5 is refused naming the field; names 1-200 characters,
    not blank, without NUL; null is not a value for an optional field; unknown fields are
    ignored; upper-case ids are the same ids."""
    async with client_for(server.url) as client:
        slot = await one_slot(client, capacity=5)
        whole = await client.post("/api/bookings", json={"slot_id": slot["id"], "quantity": 2.0})
        half = await client.post("/api/bookings", json={"slot_id": slot["id"], "quantity": 2.5})
        hold = await client.post("/api/holds", json={"slot_id": slot["id"].upper(),
                                                     "ttl_seconds": 60.0, "extra": [1]})
        capacity = await client.patch(f"/api/slots/{slot['id']}", json={"capacity": 9.0})
        nul = await client.post("/api/vendors", json={"name": "a\u0000b"})
        blank = await client.post("/api/vendors", json={"name": " \t"})
        long = await client.post("/api/vendors", json={"name": "x" * 201})
        null = await client.post(f"/api/vendors/{slot['vendor_id']}/services",
                                 json={"name": "s", "exclusive": None})
        customer = await client.post("/api/bookings", json={"slot_id": slot["id"],
                                                            "customer_id": "\u0000"})
        newline = await client.post("/api/bookings", json={"slot_id": slot["id"] + "\n"})
        key = await client.post("/api/bookings", json={"slot_id": slot["id"]},
                                headers={"Idempotency-Key": "caf\u00e9".encode()})
    assert whole.status_code == 201 and whole.json()["booking"]["quantity"] == 2
    assert half.status_code == 422 and half.json()["error"]["field"] == "quantity"
    assert half.json()["error"]["message"] == "quantity: must be an integer from 1 to 1000000"
    assert hold.status_code == 201 and hold.json()["hold"]["slot_id"] == slot["id"]
    assert capacity.status_code == 200 and capacity.json()["capacity"] == 9
    for response, field in ((nul, "name"), (blank, "name"), (long, "name"), (null, "exclusive"),
                            (customer, "customer_id"), (key, "Idempotency-Key"),
                            (newline, "slot_id")):
        assert response.status_code == 422, response.text
        assert response.json()["error"] == {
            "code": "VALIDATION_ERROR", "field": field,
            "message": response.json()["error"]["message"]}
        assert response.json()["error"]["message"].startswith(f"{field}: must be")


async def test_demo_and_documents_are_served(server):
    """GET /api/demo answers 404 VENDOR_NOT_FOUND without demo data; /openapi.json and
    /asyncapi.json are served as JSON documents."""
    async with client_for(server.url) as client:
        demo = await client.get("/api/demo")
        openapi = await client.get("/openapi.json")
        asyncapi = await client.get("/asyncapi.json")
    assert demo.status_code == 404 and demo.json()["error"]["code"] == "VENDOR_NOT_FOUND"
    assert openapi.headers["content-type"] == "application/json"
    assert "/api/demo" in openapi.json()["paths"]
    assert asyncapi.json()["asyncapi"] == "3.0.0"


async def test_a_value_the_database_refuses_is_not_shown(database_url, caplog):
    """A DataError (a value that got past the schema: a bug) is logged with the driver's text
    and answered with the project's own 500, never with the driver's text."""
    pool = await create_pool(database_url, 1)
    try:
        with caplog.at_level(logging.ERROR, logger="realtime.db"), \
                pytest.raises(RealtimeError) as info:
            await retrying(lambda: pool.fetchval("SELECT 'zzz'::uuid"))
    finally:
        await pool.close()
    assert info.value.status == 500 and info.value.code == "INTERNAL_ERROR"
    assert "zzz" not in info.value.message and "invalid" not in info.value.message
    assert any("zzz" in r.getMessage() for r in caplog.records)
