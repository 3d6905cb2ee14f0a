"""Threats of docs/security.md that no other test covered: a customer replaying another's
Idempotency-Key, SQL in the fields a client sends, forged log lines, secrets in the log,
webhook signatures forged or replayed, and a webhook endpoint that has come to resolve to a
private address since it was registered."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import timedelta

import asyncpg
import httpx
import jwt
import orjson

from realtime.logs import JsonFormatter
from realtime.webhooks.signing import TOLERANCE, new_secret, sign, verify
from tests.booking.helpers import BASE_TIME, client_for, make_service, make_slots
from tests.channels.conftest import World, start_live, stop_live
from tests.support.server import ServerProcess
from tests.webhooks.receiver import Receiver

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def bearer(sub: str) -> dict[str, str]:
    claims = {"sub": sub, "exp": int(time.time() + 120)}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


async def test_another_customers_idempotency_key_books_for_themselves(database_url: str,
                                                                       world: World) -> None:
    """Bob sending Ann's Idempotency-Key and body gets a booking of his own, never hers."""
    live = await start_live(database_url, jwt_secret=SECRET)
    slot = world.slots[world.services[0]][0]["id"]
    try:
        async with httpx.AsyncClient(base_url=live.url) as http:
            key = {"Idempotency-Key": "order-" + uuid.uuid4().hex}
            ann = await http.post("/api/bookings", json={"slot_id": slot},
                                  headers={**bearer("ann"), **key})
            bob = await http.post("/api/bookings", json={"slot_id": slot},
                                  headers={**bearer("bob"), **key})
    finally:
        await stop_live(live)
    assert ann.status_code == bob.status_code == 201, (ann.text, bob.text)
    assert bob.json()["booking"]["customer_id"] == "bob"
    assert bob.json()["booking"]["id"] != ann.json()["booking"]["id"]


async def test_sql_in_fields_is_stored_as_text(database_url: str, world: World) -> None:
    """A customer id made of SQL is booked and read back verbatim; a slot id made of SQL is
    404; the tables are all there afterwards."""
    live = await start_live(database_url)
    slot = world.slots[world.services[0]][1]["id"]
    evil = "x'); DROP TABLE rt_slots; --"
    try:
        async with httpx.AsyncClient(base_url=live.url) as http:
            made = await http.post("/api/bookings", json={"slot_id": slot, "customer_id": evil})
            lookup = await http.post("/api/bookings",
                                     json={"slot_id": "1' OR '1'='1", "customer_id": "c"})
    finally:
        await stop_live(live)
    assert made.status_code == 201 and made.json()["booking"]["customer_id"] == evil, made.text
    assert lookup.status_code in (404, 422), lookup.text
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT customer_id FROM rt_reservations WHERE id = $1",
                                     made.json()["booking"]["id"])
        slots = await conn.fetchval("SELECT count(*) FROM rt_slots")
    finally:
        await conn.close()
    assert stored == evil and slots > 0


def test_a_log_line_cannot_be_forged_through_a_message() -> None:
    """A message carrying a newline and a JSON object of its own stays one line, one object."""
    forged = 'bad id\n{"level": "error", "msg": "admin logged in"}'
    record = logging.LogRecord("realtime", logging.WARNING, __file__, 1, "refused %s",
                               (forged,), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert orjson.loads(line)["msg"] == f"refused {forged}"


def test_webhook_signatures_refuse_forgery_and_replay() -> None:
    """verify() accepts the signed body once in tolerance, and refuses another body, another
    secret, and a timestamp older or newer than the tolerance (a replay)."""
    secret, body, now = new_secret(), b'{"type":"booking.created"}', time.time()
    header = sign(secret, body, int(now))
    assert verify(secret, body, header, now=now)
    assert not verify(secret, body + b" ", header, now=now)
    assert not verify(new_secret(), body, header, now=now)
    assert not verify(secret, body, header, now=now + TOLERANCE + 1)
    assert not verify(secret, body, header, now=now - TOLERANCE - 1)
    assert not verify(secret, body, header.split(",")[1], now=now)  # no timestamp


async def test_secrets_and_tokens_never_reach_the_log(database_url: str, tmp_path) -> None:
    """A server given a JWT secret and sent good, forged and expired tokens (header and query
    string) logs none of them, nor the secret."""
    server = ServerProcess(database_url, log_dir=tmp_path,
                           env={"REALTIME_JWT_SECRET": SECRET, "LOG_LEVEL": "debug"}).start()
    good = bearer("ann")["Authorization"].split()[1]
    expired = jwt.encode({"sub": "ann", "exp": 1}, SECRET, algorithm="HS256")
    forged = jwt.encode({"sub": "ann", "exp": int(time.time() + 60)},
                        "not-the-secret-but-just-as-long-as-it-is", algorithm="HS256")
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            for token in (good, expired, forged):
                await http.post("/api/bookings", json={"slot_id": str(uuid.uuid4())},
                                headers={"Authorization": f"Bearer {token}"})
                await http.get(f"/ws?token={token}")
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace")
    assert log, "the server logged nothing at all"
    for secret in (SECRET, good, expired, forged):
        assert secret not in log


async def test_a_webhook_now_on_a_private_address_gets_nothing(database_url: str) -> None:
    """An endpoint registered while private addresses were allowed (as one whose name resolved
    to a public address then) is checked again before its attempts: a server that refuses
    private addresses makes attempts, counted, and delivers nothing."""
    receiver = Receiver()
    lenient = await start_live(database_url, webhooks_allow_private=True)
    try:
        async with client_for(lenient.url) as http:
            service = await make_service(http, name="rebinding")
            made = await http.post("/api/webhooks", json={"url": receiver.url})
            assert made.status_code == 201, made.text
            await make_slots(http, service["id"], [(BASE_TIME, BASE_TIME + timedelta(hours=1), 2)])
            for _ in range(200):  # the control: this server delivers to it
                if receiver.received:
                    break
                await asyncio.sleep(0.05)
    finally:
        await stop_live(lenient)
    assert receiver.received, "the lenient server delivered nothing"
    delivered = len(receiver.received)
    strict = await start_live(database_url, webhooks_allow_private=False)
    try:
        async with client_for(strict.url) as http:
            before = (await http.get("/api/webhooks")).json()["webhooks"][0]["attempts"]
            slots = await make_slots(http, service["id"],
                                     [(BASE_TIME, BASE_TIME + timedelta(hours=2), 1)])
            await http.post("/api/bookings", json={"slot_id": slots[0]["id"], "customer_id": "c"})
            for _ in range(200):
                hooks = (await http.get("/api/webhooks")).json()["webhooks"]
                if hooks[0]["attempts"] > before:
                    break
                await asyncio.sleep(0.05)
    finally:
        await stop_live(strict)
        receiver.stop()
    assert hooks[0]["attempts"] > before, (before, hooks)
    assert len(receiver.received) == delivered
