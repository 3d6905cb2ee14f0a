"""The audit trail: every change names its actor, its action, its outcome and its request,
through both doors (HTTP and WebSocket), the sweeper and raw SQL; `realtime check` finds a
change without its audit row; migration 0004 goes down and up on a populated database."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import asyncpg
import httpx
import jwt

from realtime.booking.check import run_checks
from realtime.db.migrate import available, migrate
from tests.booking.helpers import BASE_TIME, iso
from tests.channels.conftest import client, start_live, stop_live
from tests.support.databases import create_database, drop_database

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
HEX32 = r"[0-9a-f]{32}"


def bearer(sub: str, admin: bool = False, request_id: str | None = None) -> dict[str, str]:
    claims: dict[str, Any] = {"sub": sub, "exp": int(time.time() + 300)}
    if admin:
        claims["role"] = "admin"
    headers = {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}
    if request_id:
        headers["X-Request-Id"] = request_id
    return headers


async def _trail(dsn: str, request_id: str | None = None) -> list[tuple[Any, ...]]:
    """(action, outcome, actor, request_id) of the audit rows, oldest first."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT action, outcome, actor, request_id FROM rt_audit
               WHERE $1::text IS NULL OR request_id = $1 ORDER BY id""", request_id)
    finally:
        await conn.close()
    return [tuple(r) for r in rows]


async def _failed_checks(dsn: str) -> dict[str, list[tuple[str, str]]]:
    return {check.name: rows for check, rows in await run_checks(dsn) if rows}


async def test_http_changes_name_the_admin_or_customer_and_the_request(database_url):
    """Over HTTP with auth on, each change's audit rows carry the token's subject (admin or
    customer), the action, the outcome and the request's X-Request-Id; check passes."""
    live = await start_live(database_url, jwt_secret=SECRET)
    try:
        async with httpx.AsyncClient(base_url=live.url) as http:
            async def call(method: str, path: str, who: str, rid: str, admin: bool = False,
                           **body: Any) -> dict[str, Any]:
                response = await http.request(method, path, json=body or None,
                                              headers=bearer(who, admin, rid))
                assert response.status_code < 500, response.text
                assert response.headers["x-request-id"] == rid
                return response.json()  # type: ignore[no-any-return]

            vendor = await call("POST", "/api/vendors", "boss", "r-vendor", True, name="V")
            service = await call("POST", f"/api/vendors/{vendor['id']}/services", "boss",
                                 "r-service", True, name="S")
            slots = await call("POST", f"/api/services/{service['id']}/slots", "boss",
                               "r-slots", True, slots=[{
                                   "starts_at": iso(BASE_TIME), "capacity": 2,
                                   "ends_at": iso(BASE_TIME.replace(hour=10))}])
            slot = slots["slots"][0]["id"]
            await call("PATCH", f"/api/slots/{slot}", "boss", "r-capacity", True, capacity=3)
            booking = await call("POST", "/api/bookings", "ann", "r-book", slot_id=slot)
            hold = await call("POST", "/api/holds", "ann", "r-hold", slot_id=slot)
            await call("POST", "/api/bookings", "ann", "r-confirm", slot_id=slot,
                       hold_id=hold["hold"]["id"])
            other = await call("POST", "/api/holds", "ann", "r-hold-2", slot_id=slot)
            await call("DELETE", f"/api/holds/{other['hold']['id']}", "ann", "r-release")
            await call("POST", "/api/bookings", "bob", "r-lost", slot_id=slot, quantity=2)
            await call("POST", f"/api/bookings/{booking['booking']['id']}/cancel", "ann",
                       "r-cancel")
        trail = await _trail(database_url)
    finally:
        await stop_live(live)
    mine = [row for row in trail if row[3].startswith("r-")]
    assert mine == [
        ("create_vendor", "ok", "boss", "r-vendor"),
        ("create_service", "ok", "boss", "r-service"),
        ("create_slot", "ok", "boss", "r-slots"),
        ("set_capacity", "ok", "boss", "r-capacity"),
        ("book", "ok", "ann", "r-book"),
        ("hold", "ok", "ann", "r-hold"),
        ("confirm", "ok", "ann", "r-confirm"),
        ("hold", "ok", "ann", "r-hold-2"),
        ("release", "ok", "ann", "r-release"),
        ("book", "conflict", "bob", "r-lost"),
        ("cancel", "ok", "ann", "r-cancel"),
    ]
    assert await _failed_checks(database_url) == {}


async def test_socket_changes_name_the_customer_and_a_request_id_per_message(database_url):
    """Over the WebSocket, each booking message's audit rows carry the token's subject and
    `<socket>.<n>[:<message id>]`, <socket> being the upgrade's X-Request-Id or one of ours."""
    live = await start_live(database_url, jwt_secret=SECRET)
    try:
        async with httpx.AsyncClient(base_url=live.url) as http:
            admin = bearer("boss", admin=True)
            vendor = (await http.post("/api/vendors", json={"name": "V"}, headers=admin)).json()
            service = (await http.post(f"/api/vendors/{vendor['id']}/services",
                                       json={"name": "S"}, headers=admin)).json()
            slot = (await http.post(f"/api/services/{service['id']}/slots", headers=admin, json={
                "slots": [{"starts_at": iso(BASE_TIME), "ends_at": iso(BASE_TIME.replace(hour=10)),
                           "capacity": 1}]})).json()["slots"][0]["id"]
        token = bearer("ann")["Authorization"].split()[1]
        async with client(f"{live.ws_url}?token={token}",
                          additional_headers={"X-Request-Id": "sock-1"}) as ann:
            await ann.send(type="hold", id="h", slot_id=slot)
            hold = (await ann.expect("result", id="h", ok=True))["hold"]
            await ann.send(type="book", id="c", slot_id=slot, hold_id=hold["id"])
            booking = (await ann.expect("result", id="c", ok=True))["booking"]
            await ann.send(type="book", slot_id=slot)  # no id, and the slot is full
            assert (await ann.expect("result", id=None, ok=False))["error"]["code"] == \
                "BOOKING_CONFLICT"
            await ann.send(type="cancel", id="x", booking_id=booking["id"])
            await ann.expect("result", id="x", ok=True)
        async with client(f"{live.ws_url}?token={token}") as again:  # no X-Request-Id
            await again.send(type="hold", id="h", slot_id=slot)
            await again.expect("result", id="h", ok=True)
        trail = await _trail(database_url)
    finally:
        await stop_live(live)
    ws = [row for row in trail if row[2] == "ann"]
    assert ws[:4] == [("hold", "ok", "ann", "sock-1.1:h"), ("confirm", "ok", "ann", "sock-1.2:c"),
                      ("book", "conflict", "ann", "sock-1.3"), ("cancel", "ok", "ann", "sock-1.4:x")]
    assert ws[4][:3] == ("hold", "ok", "ann") and re.fullmatch(HEX32 + r"\.1:h", ws[4][3])
    assert await _failed_checks(database_url) == {}


async def test_sweeper_auth_off_and_raw_sql_are_attributed(database_url):
    """An expired hold's row names the sweeper; with auth off the actor is the customer the
    request names (else "anonymous") and the request id is ours; raw SQL names its role."""
    live = await start_live(database_url, sweep_interval_seconds=0.1)
    try:
        async with httpx.AsyncClient(base_url=live.url) as http:
            vendor = (await http.post("/api/vendors", json={"name": "V"})).json()
            service = (await http.post(f"/api/vendors/{vendor['id']}/services",
                                       json={"name": "S"})).json()
            slot = (await http.post(f"/api/services/{service['id']}/slots", json={
                "slots": [{"starts_at": iso(BASE_TIME), "ends_at": iso(BASE_TIME.replace(hour=10)),
                           "capacity": 5}]})).json()["slots"][0]["id"]
            held = await http.post("/api/holds", json={"slot_id": slot, "ttl_seconds": 1,
                                                      "customer_id": "cy"})
            hold_rid = held.headers["x-request-id"]
            await http.post("/api/bookings", json={"slot_id": slot})
        deadline = time.monotonic() + 10
        while not [r for r in await _trail(database_url) if r[0] == "expire"]:
            assert time.monotonic() < deadline, "the hold never expired"
            await asyncio.sleep(0.1)
    finally:
        await stop_live(live)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.fetchval("SELECT rt_book($1, 1, 'raw', NULL, NULL, '', NULL, NULL)", slot)
        user = await conn.fetchval("SELECT session_user")
    finally:
        await conn.close()
    trail = await _trail(database_url)
    assert ("hold", "ok", "cy", hold_rid) in trail and re.fullmatch(HEX32, hold_rid)
    assert [r[:3] for r in trail if r[0] == "expire"] == [("expire", "ok", "sweeper")]
    assert re.fullmatch(HEX32, next(r[3] for r in trail if r[0] == "expire"))
    assert [r[:3] for r in trail if r[0] == "book"] == [
        ("book", "ok", "anonymous"), ("book", "ok", f"sql:{user}")]
    assert re.fullmatch(r"sql:\d+", trail[-1][3])
    assert await _failed_checks(database_url) == {}


async def test_check_finds_a_change_without_its_audit_row(database_url):
    """Deleting a cancel's audit row, or blanking a row's actor, fails `realtime check`
    naming the booking or the row."""
    conn = await asyncpg.connect(database_url)
    try:
        vendor = await conn.fetchval("SELECT rt_create_vendor('V', 'boss', 'r1')->>'id'")
        service = await conn.fetchval(
            "SELECT rt_create_service($1, 'S', false, 'boss', 'r2')->>'id'", vendor)
        slot = await conn.fetchval(
            """SELECT rt_create_slots($1, jsonb_build_array(jsonb_build_object(
                   'starts_at', '2030-01-01T09:00:00Z', 'ends_at', '2030-01-01T10:00:00Z',
                   'capacity', 2)), 'boss', 'r3')#>>'{slots,0,id}'""", service)
        booking = await conn.fetchval(
            "SELECT rt_book($1, 1, 'ann', NULL, NULL, '', NULL, NULL, 'ann', 'r4')#>>'{booking,id}'",
            slot)
        await conn.fetchval("SELECT rt_cancel($1, NULL, 'ann', 'r5')", booking)
        assert await _failed_checks(database_url) == {}
        await conn.execute("DELETE FROM rt_audit WHERE action = 'cancel'")
        await conn.execute("DELETE FROM rt_audit WHERE action = 'create_service'")
        await conn.execute("UPDATE rt_audit SET actor = NULL WHERE action = 'book'")
        failed = await _failed_checks(database_url)
    finally:
        await conn.close()
    assert failed["audit-reservations"] == [(booking, "booking cancelled: no cancel audit row")]
    assert failed["audit-admin"] == [(service, "service without its create_service audit row")]
    assert [d for _, d in failed["audit-attribution"]] == ["book: actor=NULL request_id=r4"]


async def test_migration_0004_goes_down_and_up_keeping_the_trail_rows(admin_dsn):
    """0004 down drops the actor and request id (columns, overloads, triggers) and keeps the
    audit rows; up again, older rows are unattributed, new ones attributed, check passes."""
    dsn = await create_database(admin_dsn)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            vendor = await conn.fetchval("SELECT rt_create_vendor('V', 'boss', 'r1')->>'id'")
            before = await conn.fetchval("SELECT count(*) FROM rt_audit")
            # 0004 and whatever came after it, newest first (0006 adds webhook rows; none are made here)
            names = [f"{m.version:04d}_{m.name}" for m in available() if m.version >= 4]
            downs = await migrate(dsn, down=len(names), echo=lambda _: None)
            assert downs == [f"down {n}" for n in reversed(names)]
            columns = await conn.fetchval(
                """SELECT count(*) FROM information_schema.columns
                   WHERE table_name = 'rt_audit' AND column_name IN ('actor', 'request_id')""")
            overloads = await conn.fetchval(
                "SELECT count(*) FROM pg_proc WHERE proname IN ('rt_book', 'rt_create_vendor')")
            triggers = await conn.fetchval(
                "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'rt_%_audit'")
            assert (columns, overloads, triggers) == (0, 1, 0)
            assert await conn.fetchval("SELECT count(*) FROM rt_audit") == before
            service = await conn.fetchval(
                "INSERT INTO rt_services (vendor_id, name) VALUES ($1, 'S') RETURNING id", vendor)
            assert await migrate(dsn, echo=lambda _: None) == [f"up {n}" for n in names]
            assert await migrate(dsn, echo=lambda _: None) == []
            await conn.fetchval("SELECT rt_create_vendor('W', 'boss', 'r2')")
            rows = await conn.fetch("SELECT action, actor, request_id FROM rt_audit ORDER BY id")
        finally:
            await conn.close()
        assert [tuple(r) for r in rows] == [("create_vendor", None, None),
                                            ("create_vendor", "boss", "r2")]
        assert service is not None  # made while 0004 was down: no audit row, not held against it
        assert await _failed_checks(dsn) == {}
    finally:
        await drop_database(admin_dsn, dsn)
