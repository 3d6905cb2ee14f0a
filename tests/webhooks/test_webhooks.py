"""Webhooks: registered endpoints get every committed change, signed, in log order, at least
once, through failures, redirects, timeouts and restarts, from several processes."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import pytest_asyncio

from realtime.schema.webhooks import Event as WebhookEvent
from tests.booking.helpers import BASE_TIME, client_for, make_service, make_slots
from tests.channels.conftest import Live, start_live, stop_live
from tests.support.server import ServerProcess
from tests.webhooks.receiver import Receiver

ALL = ["booking.confirmed", "booking.cancelled", "hold.created", "hold.released", "hold.expired",
       "slot.created", "slot.changed", "booking.conflict"]


async def eventually(check: Callable[[], bool], within: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture(loop_scope="session")
async def live(database_url: str) -> AsyncIterator[Live]:
    server = await start_live(database_url, webhooks_allow_private=True)
    yield server
    await stop_live(server)


async def register(http: httpx.AsyncClient, receiver: Receiver, **body: Any) -> dict[str, Any]:
    response = await http.post("/api/webhooks", json={"url": receiver.url, **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    receiver.secret = created["secret"]
    return created


async def logged_events(dsn: str, after: int, vendor_id: str | None = None) -> list[str]:
    """The ids of the events the log holds after a position, in log order."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT id FROM rt_events WHERE pos > $1 AND ($2::uuid IS NULL OR vendor_id = $2)
               ORDER BY pos""", after, vendor_id)
    finally:
        await conn.close()
    return [f"evt_{r['id']}" for r in rows]


def in_log_order(receiver: Receiver) -> bool:
    cursors = [int(r.event["cursor"].split("@")[0]) for r in receiver.first_arrivals()]
    return cursors == sorted(cursors) and len(set(cursors)) == len(cursors)


async def test_endpoints_are_registered_listed_and_deleted(live: Live) -> None:
    """POST shows the secret once, GET lists without secrets, DELETE removes; bad input 422."""
    receiver = Receiver()
    async with httpx.AsyncClient(base_url=live.url) as http:
        created = await register(http, receiver)
        assert created["secret"].startswith("whsec_") and created["events"] == ALL
        assert created["vendor_id"] is None and created["url"] == receiver.url
        listed = (await http.get("/api/webhooks")).json()["webhooks"]
        assert [w["id"] for w in listed] == [created["id"]]
        assert "secret" not in listed[0] and listed[0]["status"] == "active"
        some = await http.post("/api/webhooks", json={"url": receiver.url,
                                                      "events": ["hold.created", "slot.created"]})
        assert some.json()["events"] == ["hold.created", "slot.created"]
        bad = {
            "url": {"url": "ftp://example.com/x"},
            "events": {"url": receiver.url, "events": ["booking.exploded"]},
            "vendor_id": {"url": receiver.url, "vendor_id": "00000000-0000-0000-0000-000000000000"},
        }
        for field, body in bad.items():
            response = await http.post("/api/webhooks", json=body)
            assert response.status_code == 422, (field, response.text)
            assert response.json()["error"]["field"].split("[")[0] == field
        assert (await http.get(f"/api/webhooks/{created['id']}/deliveries")).json() == {
            "deliveries": []}
        gone = await http.delete(f"/api/webhooks/{created['id']}")
        assert gone.status_code == 200 and gone.json() == {"id": created["id"]}
        again = await http.delete(f"/api/webhooks/{created['id']}")
        assert again.status_code == 404 and again.json()["error"]["code"] == "WEBHOOK_NOT_FOUND"
        missing = await http.get(f"/api/webhooks/{created['id']}/deliveries")
        assert missing.status_code == 404
    receiver.stop()


async def test_private_addresses_are_refused_unless_allowed(database_url: str) -> None:
    """Loopback, private and link-local URLs are 422 naming `url` by default."""
    live = await start_live(database_url)
    try:
        async with httpx.AsyncClient(base_url=live.url) as http:
            for url in ("http://127.0.0.1:9/h", "http://10.1.2.3/h", "http://169.254.169.254/x",
                        "http://[::1]:9/h", "http://localhost:9/h"):
                response = await http.post("/api/webhooks", json={"url": url})
                assert response.status_code == 422, (url, response.text)
                assert response.json()["error"]["field"] == "url"
                assert "REALTIME_WEBHOOKS_ALLOW_PRIVATE" in response.json()["error"]["message"]
    finally:
        await stop_live(live)


async def test_every_kind_of_change_arrives_signed_with_what_a_backend_needs(live: Live) -> None:
    """Booked, held, confirmed, released, cancelled, expired, created, changed and lost races
    reach the receiver once each, signed, with ids, customer, quantity and slot."""
    receiver = Receiver()
    other = Receiver()
    async with client_for(live.url) as http:
        service = await make_service(http, name="yoga")
        vendor_id = service["vendor_id"]
        hook = await register(http, receiver, vendor_id=vendor_id)
        only_holds = await http.post("/api/webhooks", json={"url": other.url,
                                                           "events": ["hold.created"]})
        other.secret = only_holds.json()["secret"]
        start = BASE_TIME
        slot, spare = await make_slots(http, service["id"], [
            (start, start + timedelta(hours=1), 2), (start, start + timedelta(hours=2), 1)])
        elsewhere = await make_service(http, name="other vendor")
        await make_slots(http, elsewhere["id"], [(start, start + timedelta(hours=1), 1)])
        booked = (await http.post("/api/bookings", json={"slot_id": slot["id"],
                                                         "customer_id": "ann"})).json()
        held = (await http.post("/api/holds", json={"slot_id": slot["id"], "customer_id": "bob",
                                                     "ttl_seconds": 60})).json()
        conflict = await http.post("/api/bookings", json={"slot_id": slot["id"], "quantity": 2,
                                                          "customer_id": "cy"})
        assert conflict.status_code == 409
        confirmed = (await http.post("/api/bookings", json={
            "slot_id": slot["id"], "hold_id": held["hold"]["id"], "customer_id": "bob"})).json()
        await http.post(f"/api/bookings/{booked['booking']['id']}/cancel")
        second = (await http.post("/api/holds", json={"slot_id": spare["id"],
                                                       "customer_id": "dee"})).json()
        await http.delete(f"/api/holds/{second['hold']['id']}")
        short = (await http.post("/api/holds", json={"slot_id": spare["id"],
                                                      "customer_id": "eve", "ttl_seconds": 1})).json()
        await http.patch(f"/api/slots/{spare['id']}", json={"capacity": 3})
        kinds = ["slot.created", "slot.created", "booking.confirmed", "hold.created",
                 "booking.conflict", "booking.confirmed", "booking.cancelled", "hold.created",
                 "hold.released", "hold.created", "slot.changed", "hold.expired"]
        await eventually(lambda: len(receiver.received) >= len(kinds), what="all kinds")
        await eventually(lambda: len(other.received) >= 3, what="the filtered endpoint")
        for _ in range(100):  # the receiver answers before the dispatcher records the batch
            deliveries = (await http.get(f"/api/webhooks/{hook['id']}/deliveries")).json()
            if len(deliveries["deliveries"]) == len(kinds):
                break
            await asyncio.sleep(0.05)
    got = [r.event for r in receiver.received]
    for event in got:  # every delivery is what the schema (and the OpenAPI document) says
        msgspec.convert(event, WebhookEvent)
    assert sorted(e["type"] for e in got) == sorted(kinds)
    assert all(r.signed for r in receiver.received)
    assert all(r.headers["realtime-event-id"] == r.event["id"] for r in receiver.received)
    assert in_log_order(receiver)
    assert {e["data"]["slot"]["vendor_id"] for e in got} == {vendor_id}  # filtered by vendor
    assert [r.event["type"] for r in other.received] == ["hold.created"] * 3
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in got:
        by_type.setdefault(event["type"], []).append(event)
    first_booking = by_type["booking.confirmed"][0]["data"]
    assert first_booking["booking"]["id"] == booked["booking"]["id"]
    assert first_booking["customer_id"] == "ann" and first_booking["quantity"] == 1
    assert first_booking["booking"]["status"] == "confirmed"  # as of the event, not now
    from_hold = by_type["booking.confirmed"][1]["data"]
    assert from_hold["booking"]["id"] == confirmed["booking"]["id"]
    assert from_hold["customer_id"] == "bob"
    assert by_type["booking.cancelled"][0]["data"]["booking"]["status"] == "cancelled"
    lost = by_type["booking.conflict"][0]["data"]
    assert lost["customer_id"] == "cy" and lost["quantity"] == 2 and "booking" not in lost
    expired = by_type["hold.expired"][0]["data"]
    assert expired["hold"]["id"] == short["hold"]["id"] and expired["customer_id"] == "eve"
    changed = by_type["slot.changed"][0]["data"]["slot"]
    assert changed["id"] == spare["id"] and changed["capacity"] == 3
    assert {d["event_id"] for d in deliveries["deliveries"]} == {e["id"] for e in got}
    assert all(d["status"] == "delivered" and d["attempts"] == 1 for d in deliveries["deliveries"])
    receiver.stop()
    other.stop()


async def test_a_failing_endpoint_is_retried_and_holds_up_only_itself(live: Live) -> None:
    """While one receiver answers 500 (then redirects), its events wait and are retried with
    backoff; another endpoint gets everything at once; then the first catches up in order."""
    failing = Receiver(mode="fail")
    healthy = Receiver()
    async with client_for(live.url) as http:
        service = await make_service(http, name="cuts")
        hook = await register(http, failing, vendor_id=service["vendor_id"])
        await register(http, healthy, vendor_id=service["vendor_id"])
        slots = await make_slots(http, service["id"], [(BASE_TIME, BASE_TIME + timedelta(hours=1), 50)])
        for _ in range(5):
            assert (await http.post("/api/bookings", json={"slot_id": slots[0]["id"]})).status_code == 201
        await eventually(lambda: len(healthy.received) == 6, what="the healthy endpoint")
        await eventually(lambda: failing.attempts >= 2, what="a retry")
        deliveries = (await http.get(f"/api/webhooks/{hook['id']}/deliveries")).json()["deliveries"]
        assert len(deliveries) == 1  # only the head event was tried: the rest wait behind it
        head = deliveries[0]
        assert head["status"] == "retrying" and head["last_status_code"] == 500
        assert head["attempts"] >= 1 and head["next_attempt_at"] is not None
        failing.mode = "redirect"
        attempts = failing.attempts
        await eventually(lambda: failing.attempts > attempts, within=30, what="a redirect attempt")
        assert failing.received == []  # a redirect is a failure, and is not followed
        failing.mode = "ok"
        await eventually(lambda: len(failing.received) == 6, within=60, what="catching up")
    assert in_log_order(failing)
    assert [r.event["id"] for r in failing.first_arrivals()] == healthy.ids()
    failing.stop()
    healthy.stop()


@pytest.mark.slow
async def test_an_endpoint_that_does_not_answer_times_out(live: Live) -> None:
    """An attempt unanswered for 10 s fails and is retried; others are not held up."""
    hanging = Receiver(mode="hang", hang_seconds=15)
    healthy = Receiver()
    async with client_for(live.url) as http:
        service = await make_service(http, name="slow")
        hook = await register(http, hanging, vendor_id=service["vendor_id"])
        await register(http, healthy, vendor_id=service["vendor_id"])
        await make_slots(http, service["id"], [(BASE_TIME, BASE_TIME + timedelta(hours=1), 5)])
        await eventually(lambda: len(healthy.received) == 1, within=5, what="the other endpoint")
        started = time.monotonic()

        async def failed() -> bool:
            rows = (await http.get(f"/api/webhooks/{hook['id']}/deliveries")).json()["deliveries"]
            return bool(rows) and rows[0]["status"] == "retrying"

        while not await failed():
            assert time.monotonic() - started < 15, "the attempt did not time out"
            await asyncio.sleep(0.2)
    assert time.monotonic() - started >= 9
    hanging.stop()
    healthy.stop()


async def churn(http: httpx.AsyncClient, slots: list[dict[str, Any]], n: int,
                rng: random.Random) -> None:
    """n bookings, holds, cancels and releases over the slots, 16 at a time."""
    bookings: list[str] = []
    holds: list[str] = []

    async def one(i: int) -> None:
        slot = rng.choice(slots)["id"]
        pick = rng.random()
        if pick < 0.5:
            r = await http.post("/api/bookings", json={"slot_id": slot, "customer_id": f"c{i}"})
            if r.status_code == 201:
                bookings.append(r.json()["booking"]["id"])
        elif pick < 0.75:
            r = await http.post("/api/holds", json={"slot_id": slot, "customer_id": f"c{i}"})
            if r.status_code == 201:
                holds.append(r.json()["hold"]["id"])
        elif pick < 0.9 and bookings:
            await http.post(f"/api/bookings/{bookings.pop(rng.randrange(len(bookings)))}/cancel")
        elif holds:
            await http.delete(f"/api/holds/{holds.pop(rng.randrange(len(holds)))}")

    for start in range(0, n, 16):
        await asyncio.gather(*(one(i) for i in range(start, min(n, start + 16))))


@pytest.mark.slow
async def test_two_processes_a_restart_and_a_receiver_that_comes_and_goes(database_url: str,
                                                                          tmp_path) -> None:
    """2,000 bookings, holds, cancels and releases through two server processes, the receiver
    away part of the time and one server restarted mid-backlog: every event arrives, in log
    order, signed, never twice at the same time, and the deliveries list agrees."""
    env = {"REALTIME_WEBHOOKS_ALLOW_PRIVATE": "1", "LOG_LEVEL": "warning"}
    a = ServerProcess(database_url, env=env, log_dir=tmp_path).start()
    b = ServerProcess(database_url, env=env, log_dir=tmp_path).start()
    receiver = Receiver()
    rng = random.Random(7)
    try:
        async with client_for(a.url) as http_a, client_for(b.url) as http_b:
            service = await make_service(http_a, name="busy")
            hook = await register(http_a, receiver, vendor_id=service["vendor_id"])
            slots = await make_slots(http_a, service["id"], [
                (BASE_TIME + timedelta(hours=h), BASE_TIME + timedelta(hours=h + 1), 40)
                for h in range(20)])
            await churn(http_a, slots, 550, rng)
            receiver.stop()  # away: the backlog grows
            await churn(http_b, slots, 550, rng)
            b.stop()
            b.start()  # restarted in the middle of the backlog
            await churn(http_a, slots, 550, rng)
            receiver.start()
            await churn(http_b, slots, 550, rng)
            conn = await asyncpg.connect(database_url)
            created_at = await conn.fetchval("SELECT min(pos) - 1 FROM rt_events WHERE vendor_id = $1",
                                             service["vendor_id"])
            await conn.close()
            expected = await logged_events(database_url, created_at, service["vendor_id"])
            await eventually(lambda: set(receiver.ids()) >= set(expected), within=120,
                             what=f"{len(expected)} events delivered")
            for _ in range(100):  # the receiver answers before the dispatcher records the batch
                deliveries = (await http_b.get(f"/api/webhooks/{hook['id']}/deliveries")).json()
                if deliveries["deliveries"][0]["event_id"] == expected[-1]:
                    break
                await asyncio.sleep(0.05)
    finally:
        a.stop()
        b.stop()
        receiver.stop()
    assert len(expected) >= 2000
    assert [r.event["id"] for r in receiver.first_arrivals()] == expected
    assert in_log_order(receiver)
    assert all(r.signed for r in receiver.received)
    assert receiver.overlaps == []
    newest = [d["event_id"] for d in deliveries["deliveries"]]
    assert newest == list(reversed(expected))[:len(newest)] and len(newest) == 100
    assert all(d["status"] == "delivered" for d in deliveries["deliveries"])
