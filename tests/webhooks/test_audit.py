"""Webhook changes on the audit trail (migration 0006): registering and deleting an endpoint
over HTTP name the admin and the request; raw SQL changes name the database role; the secret
never reaches the trail; `realtime check` finds an endpoint without its row; 0006 goes down
and up."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import httpx
import jwt
import orjson

from realtime.booking.check import run_checks
from realtime.db.migrate import available, migrate
from tests.channels.conftest import start_live, stop_live
from tests.support.databases import create_database, drop_database

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
URL = "https://hooks.example.com/in?token=query-secret#frag"


def bearer(sub: str, admin: bool, request_id: str) -> dict[str, str]:
    claims: dict[str, Any] = {"sub": sub, "exp": int(time.time() + 300)}
    if admin:
        claims["role"] = "admin"
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}",
            "X-Request-Id": request_id}


async def _webhook_rows(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        """SELECT action, outcome, actor, request_id, detail::text FROM rt_audit
           WHERE action LIKE '%_webhook' ORDER BY id""")
    return [tuple(r) for r in rows]


async def _failed_checks(dsn: str) -> dict[str, list[tuple[str, str]]]:
    return {check.name: rows for check, rows in await run_checks(dsn) if rows}


async def test_admin_routes_name_the_admin_and_request_and_never_the_secret(database_url):
    """POST and DELETE /api/webhooks each write one audit row naming the admin's subject and
    the request's X-Request-Id, with the endpoint's id, URL (no query), events and vendor;
    refused and missing changes write none; no secret is on the trail; check passes."""
    live = await start_live(database_url, jwt_secret=SECRET, webhooks_allow_private=True)
    try:
        async with httpx.AsyncClient(base_url=live.url) as http:
            made = await http.post("/api/webhooks", json={"url": URL, "events": ["hold.created"]},
                                   headers=bearer("boss", True, "r-wh-create"))
            assert made.status_code == 201, made.text
            created = made.json()
            refused = await http.post("/api/webhooks", json={"url": URL},
                                      headers=bearer("ann", False, "r-wh-customer"))
            assert refused.status_code == 403
            gone = await http.delete(f"/api/webhooks/{created['id']}",
                                     headers=bearer("boss", True, "r-wh-delete"))
            assert gone.status_code == 200
            again = await http.delete(f"/api/webhooks/{created['id']}",
                                      headers=bearer("boss", True, "r-wh-again"))
            assert again.status_code == 404
    finally:
        await stop_live(live)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await _webhook_rows(conn)
        details = await conn.fetch(
            "SELECT detail FROM rt_audit WHERE action LIKE '%_webhook' ORDER BY id")
        trail = await conn.fetchval("SELECT string_agg(rt_audit::text, ' ') FROM rt_audit")
    finally:
        await conn.close()
    assert [r[:4] for r in rows] == [("create_webhook", "ok", "boss", "r-wh-create"),
                                     ("delete_webhook", "ok", "boss", "r-wh-delete")]
    expected = {"webhook_id": created["id"], "url": "https://hooks.example.com/in",
                "events": ["hold.created"]}
    assert [orjson.loads(d[0]) for d in details] == [expected, expected]
    assert created["secret"] not in trail and "query-secret" not in trail
    assert await _failed_checks(database_url) == {}


async def test_raw_sql_changes_are_audited_and_check_finds_a_missing_row(database_url):
    """A secret rotated and a URL changed by raw SQL make one update_webhook row naming what
    changed (not the secret) and the database role; the dispatcher's bookkeeping makes none;
    an endpoint whose create_webhook row is gone fails `audit-webhooks`."""
    conn = await asyncpg.connect(database_url)
    try:
        webhook = await conn.fetchval(
            """INSERT INTO rt_webhooks (url, events, secret, cursor)
               VALUES ('https://a.example/x', '{hold.created}', 'old-signing-secret', 0)
               RETURNING id::text""")
        await conn.execute(
            """UPDATE rt_webhooks SET secret = 'new-signing-secret',
                      url = 'https://b.example/y?key=k' WHERE id = $1""", webhook)
        await conn.execute(
            """UPDATE rt_webhooks SET cursor = 5, attempts = 2, lease_owner = 'p',
                      secret = secret WHERE id = $1""", webhook)
        user = await conn.fetchval("SELECT session_user")
        rows = await _webhook_rows(conn)
        trail = await conn.fetchval("SELECT string_agg(rt_audit::text, ' ') FROM rt_audit")
        assert await _failed_checks(database_url) == {}
        await conn.execute("DELETE FROM rt_audit WHERE action = 'create_webhook'")
        failed = await _failed_checks(database_url)
    finally:
        await conn.close()
    assert [(r[0], r[2]) for r in rows] == [("create_webhook", f"sql:{user}"),
                                            ("update_webhook", f"sql:{user}")]
    assert all(r[3].startswith("sql:") for r in rows)
    assert '"changed": ["url", "secret"]' in rows[1][4]
    assert '"url": "https://b.example/y"' in rows[1][4]
    assert "signing-secret" not in trail
    assert failed == {"audit-webhooks": [
        (webhook, "webhook endpoint without its create_webhook audit row")]}


async def test_migration_0006_goes_down_and_up(admin_dsn):
    """0006 down drops its triggers and keeps the rows they wrote; an endpoint made meanwhile
    has no row and is not held against the database; up again (twice: idempotent) audits."""
    dsn = await create_database(admin_dsn)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            insert = """INSERT INTO rt_webhooks (url, events, secret, cursor)
                        VALUES ($1, '{hold.created}', 's', 0) RETURNING id::text"""
            await conn.fetchval(insert, "https://a.example/")
            later = [m for m in available() if m.version >= 6]
            assert await migrate(dsn, down=len(later), echo=lambda _: None) == [
                f"down {m.version:04d}_{m.name}" for m in reversed(later)]
            triggers = await conn.fetchval(
                "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'rt_webhooks_%audit'")
            assert triggers == 0
            await conn.fetchval(insert, "https://b.example/")
            assert len(await _webhook_rows(conn)) == 1
            assert await migrate(dsn, echo=lambda _: None) == [
                f"up {m.version:04d}_{m.name}" for m in later]
            await conn.execute(later[0].up)  # idempotent: a second run changes nothing
            await conn.fetchval(insert, "https://c.example/")
            rows = await _webhook_rows(conn)
        finally:
            await conn.close()
        assert [r[0] for r in rows] == ["create_webhook", "create_webhook"]
        assert ['"https://a.example/"' in r[4] for r in rows] == [True, False]
        assert await _failed_checks(dsn) == {}
    finally:
        await drop_database(admin_dsn, dsn)
