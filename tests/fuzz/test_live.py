"""Fuzzing a real `realtime serve`: hostile bodies to every route and hostile frames to /ws get
the documented 4xx or error frame, never a 500 or a dead socket, and a refused request changes
nothing in the database."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from realtime.channels.protocol import MAX_FRAME_BYTES
from realtime.schema import http
from realtime.schema import webhooks as webhook_schema
from tests.fuzz.strategies import bodies
from tests.fuzz.test_decoders import WS_CODES, WS_FIELDS, WS_TYPES, _fields
from tests.support.server import ServerProcess

LIVE = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
# Every route, with the Struct its body is (None: it reads no body).
ROUTES: list[tuple[str, str, type | None]] = [
    ("POST", "/api/vendors", http.CreateVendor),
    ("GET", "/api/vendors/{vendor}", None),
    ("POST", "/api/vendors/{vendor}/services", http.CreateService),
    ("GET", "/api/vendors/{vendor}/availability", None),
    ("GET", "/api/services/{service}", None),
    ("POST", "/api/services/{service}/slots", http.CreateSlots),
    ("GET", "/api/services/{service}/availability", None),
    ("PATCH", "/api/slots/{slot}", http.PatchSlot),
    ("POST", "/api/bookings", http.CreateBooking),
    ("GET", "/api/bookings/{booking}", None),
    ("POST", "/api/bookings/{booking}/cancel", None),
    ("POST", "/api/holds", http.CreateHold),
    ("DELETE", "/api/holds/{hold}", None),
    ("GET", "/api/demo", None),
    ("POST", "/api/webhooks", webhook_schema.CreateWebhook),
    ("GET", "/api/webhooks", None),
    ("DELETE", "/api/webhooks/{webhook}", None),
    ("GET", "/api/webhooks/{webhook}/deliveries", None),
    ("GET", "/healthz", None), ("GET", "/readyz", None), ("GET", "/openapi.json", None),
]
HTTP_STATUSES = {200, 201, 400, 404, 405, 409, 410, 413, 415, 422}
# Everything the database holds that a request could change.
STATE_SQL = """SELECT (SELECT count(*) FROM rt_vendors), (SELECT count(*) FROM rt_services),
                      (SELECT count(*) FROM rt_slots), (SELECT coalesce(sum(version), 0) FROM rt_slots),
                      (SELECT count(*) FROM rt_reservations),
                      (SELECT count(*) FROM rt_reservations WHERE status IN ('active', 'confirmed')),
                      (SELECT count(*) FROM rt_webhooks), (SELECT count(*) FROM rt_idempotency_keys)"""


class Target:
    """The server, its database, and one of everything for the paths to name."""

    def __init__(self, server: ServerProcess) -> None:
        self.loop = asyncio.new_event_loop()
        self.db = self.loop.run_until_complete(asyncpg.connect(server.database_url))
        self.http = httpx.Client(base_url=server.url, timeout=30)
        post = self.http.post
        vendor = post("/api/vendors", json={"name": "fuzz"}).json()["id"]
        service = post(f"/api/vendors/{vendor}/services", json={"name": "fuzz"}).json()["id"]
        slot = post(f"/api/services/{service}/slots", json={"slots": [{
            "starts_at": "2030-01-07T09:00:00Z", "ends_at": "2030-01-07T10:00:00Z",
            "capacity": 5}]}).json()["slots"][0]["id"]
        booking = post("/api/bookings", json={"slot_id": slot}).json()["booking"]["id"]
        hold = post("/api/holds", json={"slot_id": slot}).json()["hold"]["id"]
        webhook = post("/api/webhooks", json={"url": "http://127.0.0.1:9/hook"}).json()["id"]
        self.ids = {"vendor": vendor, "service": service, "slot": slot, "booking": booking,
                    "hold": hold, "webhook": webhook}

    def state(self) -> tuple[Any, ...]:
        return tuple(self.loop.run_until_complete(self.db.fetchrow(STATE_SQL)))

    def close(self) -> None:
        self.http.close()
        self.loop.run_until_complete(self.db.close())
        self.loop.close()


@pytest.fixture(scope="module")
def target(tmp_path_factory, admin_dsn):
    """A server (auth off, so every body reaches its decoder) on a database of its own."""
    from tests.support.databases import create_database, drop_database

    dsn = asyncio.run(create_database(admin_dsn))
    server = ServerProcess(dsn, log_dir=tmp_path_factory.mktemp("fuzz"), env={
        "REALTIME_WEBHOOKS_ALLOW_PRIVATE": "1", "REALTIME_WS_RATE": "0",
        "LOG_LEVEL": "warning"}).start()
    t = Target(server)
    yield t, server
    t.close()
    server.stop()
    asyncio.run(drop_database(admin_dsn, dsn))


def _route_and_body() -> st.SearchStrategy[tuple[str, str, bytes]]:
    def one(route: tuple[str, str, type | None]) -> st.SearchStrategy[tuple[str, str, bytes]]:
        method, path, struct = route
        names = _fields(struct) if struct else ["slot_id", "capacity", "name"]
        return bodies(names).map(lambda raw: (method, path, raw))
    return st.sampled_from(ROUTES).flatmap(one)


def test_fuzzed_bodies_to_every_route_get_4xx_and_change_nothing(target) -> None:
    """Hostile bodies to every route: a documented status with a JSON error naming the field
    for 422, never a 5xx; a refused request leaves the database as it was."""
    t, server = target

    @LIVE
    @given(_route_and_body(), st.sampled_from(["application/json", "text/plain", None]))
    def check(route: tuple[str, str, bytes], content_type: str | None) -> None:
        method, path, raw = route
        before = t.state()
        headers = {"content-type": content_type} if content_type else {}
        response = t.http.request(method, path.format(**t.ids), content=raw, headers=headers)
        assert response.status_code in HTTP_STATUSES, (route, response.status_code, response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert error["code"] and error["message"], error
            if response.status_code == 422:
                assert error.get("field"), error
            assert t.state() == before, (route, response.text)

    check()
    assert '"level":"error"' not in server.log(), server.log()


def test_fuzzed_frames_get_error_frames_and_the_socket_lives(target) -> None:
    """Hostile text and binary frames (up to the 64 KiB limit) to /ws: each gets its error
    frame (or result) naming the field, the socket still answers a ping after it, and nothing
    in the database changed."""
    t, server = target
    with connect(server.ws_url, compression=None, max_size=None) as ws:
        counter = iter(range(10**9))

        @LIVE
        @given(bodies(WS_FIELDS, ("type", WS_TYPES)), st.booleans())
        def check(raw: bytes, binary: bool) -> None:
            frame: str | bytes = raw if binary else raw.decode("utf-8", "replace")
            # Past 64 KiB the socket is closed with 1009, as documented: not this test's case.
            assume(len(frame if binary else frame.encode()) <= MAX_FRAME_BYTES)
            before = t.state()
            ws.send(frame)
            probe = f"probe-{next(counter)}"
            ws.send(orjson.dumps({"type": "ping", "id": probe}).decode())
            replies = []
            while True:
                reply = msgspec.json.decode(ws.recv(timeout=10))
                if reply.get("type") == "pong" and reply.get("id") == probe:
                    break
                replies.append(reply)
            for reply in replies:
                if reply["type"] == "error" or (reply["type"] == "result" and not reply["ok"]):
                    assert reply["error"]["code"] in WS_CODES | {"SLOT_NOT_FOUND",
                                                                 "BOOKING_NOT_FOUND",
                                                                 "HOLD_NOT_FOUND"}, reply
                    assert reply["error"].get("field") or reply["type"] == "result", reply
            if all(r["type"] in ("error", "result") and not r.get("ok", False) for r in replies):
                assert t.state() == before, (raw, replies)

        check()
    assert '"level":"error"' not in server.log(), server.log()
