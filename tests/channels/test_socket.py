"""The socket's behaviour: bad input, limits, booking over the socket, presence, origins, auth."""

from __future__ import annotations

import asyncio
import time

import jwt
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.channels.conftest import Live, World, client, start_live, stop_live
from tests.channels.streams import slot_versions


async def test_junk_frames_get_errors_and_the_socket_stays_usable(live: Live, world: World) -> None:
    """Every kind of bad message gets its error frame; nothing changes; the socket still works."""
    svc = world.services[0]
    slot = world.slots[svc][0]["id"]
    before = await slot_versions(world.pool)
    cases: list[tuple[str | bytes, str, str | None]] = [
        ("not json", "BAD_MESSAGE", None),
        ("[1]", "BAD_MESSAGE", None),
        ('{"type": 42}', "BAD_MESSAGE", None),
        ('{"type":"ping","id":' + orjson.dumps("x" * 65).decode() + "}", "BAD_MESSAGE", None),
        ('{"type":"fly","id":"u"}', "UNKNOWN_TYPE", "u"),
        ('{"type":"subscribe","id":"c","channel":"room:1"}', "UNKNOWN_CHANNEL", "c"),
        ('{"type":"subscribe","id":"m","channel":"service:00000000-0000-0000-0000-000000000000"}',
         "UNKNOWN_CHANNEL", "m"),
        ('{"type":"subscribe","id":"v","channel":"vendor:00000000-0000-0000-0000-000000000000",'
         '"since":"0@abcdef12"}', "UNKNOWN_CHANNEL", "v"),
        (f'{{"type":"unsubscribe","id":"n","channel":"service:{svc}"}}', "NOT_SUBSCRIBED", "n"),
        (f'{{"type":"book","id":"q","slot_id":"{slot}","quantity":"2"}}', "BAD_MESSAGE", "q"),
        ('{"type":"book","id":"r"}', "BAD_MESSAGE", "r"),
        (b'{"type":"ping"}', "BAD_MESSAGE", None),
    ]
    async with client(live.ws_url) as c:
        for raw, code, msg_id in cases:
            await c.ws.send(raw)
            msg = await c.expect("error")
            assert msg["error"]["code"] == code, (raw, msg)
            assert msg.get("id") == msg_id, (raw, msg)
            assert msg["error"]["message"]
        await c.send(type="book", id="z", slot_id=slot, quantity=0)
        res = await c.expect("result", id="z", ok=False)
        assert res["error"]["code"] == "VALIDATION_ERROR"
        await c.send(type="book", id="nf", slot_id="00000000-0000-0000-0000-000000000000")
        assert (await c.expect("result", id="nf"))["error"]["code"] == "SLOT_NOT_FOUND"
        await c.send(type="ping", id="still-here")
        await c.expect("pong", id="still-here")
        await c.subscribe(f"service:{svc}")
    assert await slot_versions(world.pool) == before


async def test_frame_over_64_kib_closes_1009(live: Live, world: World) -> None:
    """A frame over 64 KiB closes the socket with 1009; one just under is merely bad."""
    async with client(live.ws_url, max_size=None) as c:
        await c.ws.send('{"type":"ping","pad":"' + "x" * (60 * 1024) + '"}')
        await c.expect("pong")
        await c.ws.send('{"type":"ping","pad":"' + "x" * (65 * 1024) + '"}')
        assert await c.closed() == 1009


async def test_booking_over_the_socket_and_conflicts_broadcast(live: Live, world: World) -> None:
    """book/hold/cancel answer `result`; a lost race is a result error and a conflict frame."""
    svc = world.services[0]
    made = await world.booking.create_slots(svc, [{
        "starts_at": "2030-02-01T09:00:00Z", "ends_at": "2030-02-01T10:00:00Z", "capacity": 1}])
    slot = made["slots"][0]["id"]
    async with client(live.ws_url) as watcher, client(live.ws_url) as buyer:
        await watcher.subscribe(f"service:{svc}")
        await buyer.send(type="hold", id="h", slot_id=slot, ttl_seconds=60)
        held = await buyer.expect("result", id="h", ok=True)
        assert held["hold"]["slot_id"] == slot and held["slot"]["held"] == 1
        up = await watcher.expect("availability:updated")
        assert up["reason"] == "held" and up["slot"]["available"] == 0
        await buyer.send(type="book", id="b", slot_id=slot)
        lost = await buyer.expect("result", id="b", ok=False)
        assert lost["error"]["code"] == "BOOKING_CONFLICT"
        assert lost["error"]["slot"]["id"] == slot and isinstance(lost["error"]["alternatives"], list)
        conflict = await watcher.expect("conflict:detected")
        assert conflict["slot"]["id"] == slot and conflict["quantity"] == 1
        assert conflict["alternatives"] and conflict["channel"] == f"service:{svc}"
        await buyer.send(type="book", id="b2", slot_id=slot, hold_id=held["hold"]["id"])
        booked = await buyer.expect("result", id="b2", ok=True)
        assert booked["booking"]["status"] == "confirmed"
        assert (await watcher.expect("availability:updated"))["reason"] == "booked"
        await buyer.send(type="cancel", id="c", booking_id=booked["booking"]["id"])
        cancelled = await buyer.expect("result", id="c", ok=True)
        assert cancelled["booking"]["status"] == "cancelled"
        up = await watcher.expect("availability:updated")
        assert up["reason"] == "cancelled" and up["slot"]["available"] == 1


async def test_presence_counts_sockets_on_change(live: Live, world: World) -> None:
    """Presence frames tell subscribers how many sockets watch the channel, as it changes."""
    channel = f"service:{world.services[0]}"
    async with client(live.ws_url) as a:
        await a.subscribe(channel)
        assert (await a.expect("presence", within=3))["count"] == 1
        async with client(live.ws_url) as b:
            await b.subscribe(channel)
            assert (await a.expect("presence", within=3))["count"] == 2
            assert (await b.expect("presence", within=3))["count"] == 2
        assert (await a.expect("presence", within=3))["count"] == 1
        await a.send(type="unsubscribe", id="u", channel=channel)
        await a.expect("unsubscribed", id="u", channel=channel)


async def test_too_many_subscriptions(database_url: str, world: World) -> None:
    """Past ws_max_subscriptions a subscribe is refused with TOO_MANY_SUBSCRIPTIONS."""
    live = await start_live(database_url, ws_max_subscriptions=1)
    try:
        async with client(live.ws_url) as c:
            await c.subscribe(f"service:{world.services[0]}")
            await c.send(type="subscribe", id="2", channel=f"service:{world.services[1]}")
            assert (await c.expect("error", id="2"))["error"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
            await c.subscribe(f"service:{world.services[0]}")  # the same one again is fine
    finally:
        await stop_live(live)


async def test_rate_limit_answers_rate_limited(database_url: str, world: World) -> None:
    """Messages past the per-socket rate get RATE_LIMITED errors; the socket stays open."""
    live = await start_live(database_url, ws_messages_per_second=5)
    try:
        async with client(live.ws_url) as c:
            for i in range(30):
                await c.send(type="ping", id=str(i))
            replies = [await c.recv() for _ in range(30)]
            limited = [r for r in replies if r["type"] == "error"]
            assert limited and all(r["error"]["code"] == "RATE_LIMITED" for r in limited)
            assert sum(r["type"] == "pong" for r in replies) >= 10
            await asyncio.sleep(1)
            await c.send(type="ping", id="later")
            await c.expect("pong", id="later")
    finally:
        await stop_live(live)


async def test_foreign_origin_is_closed_1008(live: Live, world: World) -> None:
    """A browser Origin that is not the server's own is closed with 1008; its own is fine."""
    async with client(live.ws_url, origin="http://evil.example") as c:
        assert await c.closed() == 1008
    async with client(live.ws_url, origin=f"http://127.0.0.1:{live.port}") as c:
        await c.send(type="ping", id="p")
        await c.expect("pong", id="p")


async def test_tokens_with_auth_on(database_url: str, world: World) -> None:
    """With auth on: bad token 1008; reading needs none; booking needs one; auth refreshes."""
    secret = "a-test-secret-that-is-long-enough-for-hs256"
    live = await start_live(database_url, jwt_secret=secret)

    def token(sub: str, ttl: float = 60) -> str:
        return jwt.encode({"sub": sub, "exp": int(time.time() + ttl)}, secret, algorithm="HS256")

    slot = world.slots[world.services[0]][0]["id"]
    try:
        async with client(live.ws_url + "?token=garbage") as c:
            assert await c.closed() == 1008
        async with client(live.ws_url) as c:
            await c.subscribe(f"service:{world.services[0]}")
            await c.send(type="book", id="b", slot_id=slot)
            assert (await c.expect("result", id="b", ok=False))["error"]["code"] == "UNAUTHORIZED"
            await c.send(type="auth", id="a", token="junk")
            assert (await c.expect("error", id="a"))["error"]["code"] == "UNAUTHORIZED"
            await c.send(type="auth", id="a2", token=token("alice"))
            await c.expect("result", id="a2", ok=True)
            await c.send(type="book", id="b2", slot_id=slot)
            got = await c.expect_unordered("result", "availability:updated")
            res = got["result"]
            assert res["id"] == "b2" and res["ok"] is True
            assert res["booking"]["customer_id"] == "alice"
            assert got["availability:updated"]["slot"]["id"] == slot
        async with client(live.ws_url + "?token=" + token("bob")) as c:
            await c.send(type="cancel", id="x", booking_id=res["booking"]["id"])
            assert (await c.expect("result", id="x", ok=False))["error"]["code"] == (
                "BOOKING_NOT_FOUND")
    finally:
        await stop_live(live)


async def test_not_accepted_while_shutting_down(live: Live, world: World) -> None:
    """Once draining, new sockets are closed with 1001 and readiness reports it."""
    await live.runtime.drain()
    assert live.runtime.ready() == "shutting down"
    async with client(live.ws_url) as c:
        assert await c.closed() == 1001


async def test_plain_http_upgrade_only(live: Live) -> None:
    """A WebSocket to another path is refused (the channels only live at /ws)."""
    with pytest.raises(InvalidStatus):
        async with connect(f"ws://127.0.0.1:{live.port}/nope", open_timeout=5):
            pass
