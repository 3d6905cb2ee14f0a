"""The HTTP edge: validation, error shapes, limits, auth, and a database that goes away."""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import urlsplit

import httpx
import jwt
import pytest

from tests.booking.helpers import client_for, one_slot
from tests.support.proxy import TcpProxy
from tests.support.server import ServerProcess

SECRET = "test-secret-of-sufficient-length-0123456789"


def token(sub: str, admin: bool = False, ttl: int = 300) -> str:
    claims = {"sub": sub, "exp": int(time.time()) + ttl}
    if admin:
        claims["role"] = "admin"
    return jwt.encode(claims, SECRET, algorithm="HS256")


def bearer(sub: str, admin: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, admin)}"}


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/vendors/not-a-uuid"), ("GET", "/api/services/123"),
    ("GET", "/api/bookings/%00"), ("POST", "/api/bookings/zzz/cancel"),
    ("DELETE", "/api/holds/1"), ("PATCH", "/api/slots/x"),
    ("GET", "/api/vendors/00000000-0000-0000-0000-000000000000"),
])
async def test_ids_that_do_not_parse_are_404_not_500(server, method, path):
    """Ids that are not ids (or name nothing) get a JSON 404 with the entity's code."""
    async with client_for(server.url) as client:
        response = await client.request(method, path, json={"capacity": 1})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"].endswith("NOT_FOUND")


async def test_validation_errors_name_the_field(server):
    """Wrong or missing fields give 422 VALIDATION_ERROR naming the field; nothing changes."""
    async with client_for(server.url) as client:
        slot = await one_slot(client, capacity=2)
        cases = [
            ({}, "slot_id"), ({"slot_id": 5}, "slot_id"), ({"slot_id": "nope"}, "slot_id"),
            ({"slot_id": slot["id"], "quantity": 0}, "quantity"),
            ({"slot_id": slot["id"], "quantity": "2"}, "quantity"),
            ({"slot_id": slot["id"], "quantity": True}, "quantity"),
            ({"slot_id": slot["id"], "hold_id": "x"}, "hold_id"),
        ]
        for body, field in cases:
            response = await client.post("/api/bookings", json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.json()["error"]["code"] == "VALIDATION_ERROR"
            assert response.json()["error"]["field"] == field
        array = await client.post("/api/bookings", json=[1, 2])
        ttl = await client.post("/api/holds", json={"slot_id": slot["id"], "ttl_seconds": 3601})
        window = await client.get(f"/api/services/{slot['service_id']}/availability",
                                  params={"from": "yesterday"})
        state = (await client.get(f"/api/services/{slot['service_id']}/availability")).json()
    assert array.status_code == 422
    assert ttl.status_code == 422 and ttl.json()["error"]["field"] == "ttl_seconds"
    assert window.status_code == 422 and window.json()["error"]["field"] == "from"
    assert state["slots"][0]["version"] == 1  # no rejected request changed anything


async def test_malformed_json_and_oversized_bodies(server):
    """Malformed JSON is 400 INVALID_JSON; a body over 64 KiB is 413 PAYLOAD_TOO_LARGE."""
    async with client_for(server.url) as client:
        bad = await client.post("/api/vendors", content=b'{"name": ',
                                headers={"content-type": "application/json"})
        big = await client.post("/api/vendors", content=b'{"name": "' + b"x" * 70000 + b'"}')

        async def chunks():
            for _ in range(20):
                yield b" " * 8192

        streamed = await client.post("/api/vendors", content=chunks())
        # POST /api/bookings and /api/holds skip Starlette's routing (realtime/app.py): the
        # same answers there.
        bad_booking = await client.post("/api/bookings", content=b'{"slot_id": ',
                                        headers={"content-type": "application/json"})
        streamed_hold = await client.post("/api/holds", content=chunks())
        not_object = await client.post("/api/bookings", content=b"[1]")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_JSON"
    assert big.status_code == 413 and big.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert streamed.status_code == 413
    assert bad_booking.status_code == 400
    assert bad_booking.json()["error"]["code"] == "INVALID_JSON"
    assert streamed_hold.status_code == 413
    assert streamed_hold.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert not_object.status_code in (400, 422) and "error" in not_object.json()


async def test_slot_creation_and_capacity_changes(server):
    """Slots validate their window; capacity never drops below booked + held (409)."""
    async with client_for(server.url) as client:
        slot = await one_slot(client, capacity=3)
        backwards = await client.post(f"/api/services/{slot['service_id']}/slots", json={
            "slots": [{"starts_at": "2030-01-01T10:00:00Z", "ends_at": "2030-01-01T09:00:00Z",
                       "capacity": 1}]})
        await client.post("/api/bookings", json={"slot_id": slot["id"], "quantity": 2})
        too_low = await client.patch(f"/api/slots/{slot['id']}", json={"capacity": 1})
        ok = await client.patch(f"/api/slots/{slot['id']}", json={"capacity": 5})
    assert backwards.status_code == 422 and "ends_at" in backwards.json()["error"]["field"]
    assert too_low.status_code == 409
    assert too_low.json()["error"]["code"] == "CAPACITY_BELOW_USAGE"
    assert ok.status_code == 200
    assert (ok.json()["capacity"], ok.json()["available"], ok.json()["version"]) == (5, 3, 3)


async def test_health_metrics_openapi_and_request_ids(server):
    """/healthz, /readyz, /metrics and /openapi.json answer; responses carry a request id."""
    async with client_for(server.url) as client:
        slot = await one_slot(client)
        won = await client.post("/api/bookings", json={"slot_id": slot["id"]},
                                headers={"X-Request-Id": "trace-42"})
        lost = await client.post("/api/bookings", json={"slot_id": slot["id"]})
        wrong_method = await client.get("/api/bookings")
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        metrics = await client.get("/metrics")
        spec = await client.get("/openapi.json")
    assert health.status_code == ready.status_code == 200
    assert len(health.headers["x-request-id"]) >= 16
    assert (won.status_code, won.headers["x-request-id"]) == (201, "trace-42")
    assert lost.status_code == 409 and len(lost.headers["x-request-id"]) == 32
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    for line in ('route="create_booking",status="201"} 1.0',
                 'route="create_booking",status="409"} 1.0', 'route="healthz",status="200"} 1.0',
                 'realtime_http_request_seconds_count{method="POST",route="create_booking"} 2.0'):
        assert line in metrics.text
    assert 'realtime_bookings_total{operation="book",outcome="ok"} 1.0' in metrics.text
    assert 'realtime_bookings_total{operation="book",outcome="conflict"} 1.0' in metrics.text
    pool = {state: float(re.search(rf'realtime_db_pool_connections{{state="{state}"}} (\S+)',
                                    metrics.text).group(1)) for state in ("idle", "in_use")}
    assert 1 <= pool["idle"] + pool["in_use"] <= 10  # the default REALTIME_POOL_SIZE
    assert "realtime_db_pool_waiting 0.0" in metrics.text
    paths = spec.json()["paths"]
    for path in ("/api/bookings", "/api/holds/{id}", "/api/slots/{id}",
                 "/api/vendors/{id}/availability", "/readyz"):
        assert path in paths


@pytest.fixture
def auth_server(database_url, tmp_path):
    proc = ServerProcess(database_url, env={"REALTIME_JWT_SECRET": SECRET}, log_dir=tmp_path).start()
    yield proc
    proc.stop()


async def test_auth_roles_and_ownership(auth_server):
    """With auth on: 401 without a token, 403 for non-admins on admin routes, and other
    customers' bookings and holds look exactly like missing ones (404)."""
    async with client_for(auth_server.url) as client:
        anonymous = await client.post("/api/vendors", json={"name": "v"})
        forged = await client.post("/api/vendors", json={"name": "v"},
                                   headers={"Authorization": "Bearer not.a.jwt"})
        customer = await client.post("/api/vendors", json={"name": "v"}, headers=bearer("ann"))
        admin = httpx.AsyncClient(base_url=auth_server.url, headers=bearer("boss", admin=True))
        async with admin:
            slot = await one_slot(admin, capacity=5)
        unauth_book = await client.post("/api/bookings", json={"slot_id": slot["id"]})
        mine = await client.post("/api/bookings", json={"slot_id": slot["id"], "customer_id": "x"},
                                 headers=bearer("ann"))
        booking = mine.json()["booking"]
        theirs = await client.get(f"/api/bookings/{booking['id']}", headers=bearer("bob"))
        their_cancel = await client.post(f"/api/bookings/{booking['id']}/cancel",
                                         headers=bearer("bob"))
        hold = (await client.post("/api/holds", json={"slot_id": slot["id"]},
                                  headers=bearer("ann"))).json()["hold"]
        their_release = await client.delete(f"/api/holds/{hold['id']}", headers=bearer("bob"))
        their_confirm = await client.post("/api/bookings", json={
            "slot_id": slot["id"], "hold_id": hold["id"]}, headers=bearer("bob"))
        admin_view = await client.get(f"/api/bookings/{booking['id']}",
                                      headers=bearer("boss", admin=True))
        own_cancel = await client.post(f"/api/bookings/{booking['id']}/cancel",
                                       headers=bearer("ann"))
        reads = await client.get(f"/api/services/{slot['service_id']}/availability")
    assert anonymous.status_code == forged.status_code == 401
    assert anonymous.json()["error"]["code"] == "UNAUTHORIZED"
    assert customer.status_code == 403 and customer.json()["error"]["code"] == "FORBIDDEN"
    assert unauth_book.status_code == 401
    assert mine.status_code == 201 and booking["customer_id"] == "ann"  # the token's sub wins
    assert theirs.status_code == their_cancel.status_code == 404
    assert theirs.json()["error"]["code"] == "BOOKING_NOT_FOUND"
    assert their_release.status_code == 404 and their_confirm.status_code == 404
    assert admin_view.status_code == 200
    assert own_cancel.status_code == 200 and own_cancel.json()["booking"]["status"] == "cancelled"
    assert reads.status_code == 200  # reading availability needs no token


async def test_me_says_whether_booking_needs_a_token_and_whose_it_is(auth_server, server):
    """GET /api/me needs no token: with auth on it names the token's sub (null without one)
    and refuses an expired or forged token with 401; with auth off it says so, token or not."""
    async with client_for(auth_server.url) as client:
        nobody = await client.get("/api/me")
        ann = await client.get("/api/me", headers=bearer("ann"))
        expired = await client.get("/api/me", headers={
            "Authorization": f"Bearer {token('ann', ttl=-30)}"})
        forged = await client.get("/api/me", headers={"Authorization": "Bearer not.a.jwt"})
    async with client_for(server.url) as client:
        open_ = await client.get("/api/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert nobody.status_code == 200 and nobody.json() == {"auth": True, "customer_id": None}
    assert ann.status_code == 200 and ann.json() == {"auth": True, "customer_id": "ann"}
    assert expired.status_code == forged.status_code == 401
    assert expired.json()["error"]["code"] == "UNAUTHORIZED"
    assert expired.headers["www-authenticate"].startswith("Bearer")
    assert open_.status_code == 200 and open_.json() == {"auth": False, "customer_id": None}


async def test_database_outage_is_503_and_changes_nothing(database_url, tmp_path):
    """With the database cut off, writes get 503 DATABASE_UNAVAILABLE and /readyz 503; after
    it returns, the same server works and no half-done change is visible."""
    parts = urlsplit(database_url)
    proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    proxied = database_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    server = await asyncio.to_thread(ServerProcess(proxied, log_dir=tmp_path).start)
    try:
        async with client_for(server.url) as client:
            slot = await one_slot(client, capacity=2)
            await proxy.cut()
            down = await client.post("/api/bookings", json={"slot_id": slot["id"]})
            ready = await client.get("/readyz")
            await proxy.start()
            for _ in range(100):
                after = await client.post("/api/bookings", json={"slot_id": slot["id"]})
                if after.status_code != 503:
                    break
            state = (await client.get(f"/api/services/{slot['service_id']}/availability")).json()
    finally:
        await asyncio.to_thread(server.stop)
        await proxy.cut()
    assert down.status_code == 503, down.text
    assert down.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
    assert ready.status_code == 503 and "database" in ready.json()["error"]["message"]
    assert after.status_code == 201
    assert state["slots"][0]["booked"] == 1


async def test_cors_for_the_allowed_origins(database_url, tmp_path):
    """Origins in REALTIME_ALLOWED_ORIGINS may call the API from a page; others get no CORS."""
    server = ServerProcess(database_url, env={"REALTIME_ALLOWED_ORIGINS": "https://shop.example"},
                           log_dir=tmp_path)
    await asyncio.to_thread(server.start)
    try:
        async with client_for(server.url) as client:
            preflight = await client.options("/api/bookings", headers={
                "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,idempotency-key"})
            allowed = await client.get("/healthz", headers={"Origin": "https://shop.example"})
            other = await client.get("/healthz", headers={"Origin": "https://evil.example"})
            slot = await one_slot(client, capacity=2)
            booked = await client.post("/api/bookings", json={"slot_id": slot["id"]},
                                       headers={"Origin": "https://shop.example"})
            plain = await client.post("/api/bookings", json={"slot_id": slot["id"]})
    finally:
        await asyncio.to_thread(server.stop)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    assert "idempotency-key" in preflight.headers["access-control-allow-headers"].lower()
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert "access-control-allow-origin" not in other.headers
    assert booked.status_code == 201
    assert booked.headers["access-control-allow-origin"] == "https://shop.example"
    assert booked.headers["access-control-expose-headers"]
    assert plain.status_code == 201 and "access-control-allow-origin" not in plain.headers
