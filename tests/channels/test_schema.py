"""The WebSocket door against a real server: input rules from the one schema, and every frame
the server sends checked against its declared Struct."""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime.channels.wsprotocol import SocketProtocol
from realtime.schema import ws
from tests.channels.conftest import Live, World, client, start_live, stop_live

SERVER = msgspec.json.Decoder(ws.ServerMessage)


async def test_bad_ids_are_named_without_driver_text(live: Live, world: World) -> None:
    """`book`/`cancel` with ids that are not UUIDs get a `result` naming the field in the
    project's words, never the database driver's; the socket stays usable."""
    slot = world.slots[world.services[0]][0]["id"]
    async with client(live.ws_url) as c:
        for msg, field in (({"type": "book", "slot_id": "zzz"}, "slot_id"),
                           ({"type": "book", "slot_id": slot, "hold_id": "zzz"}, "hold_id"),
                           ({"type": "cancel", "booking_id": "zzz"}, "booking_id")):
            await c.send(id="b", **msg)
            result = await c.expect("result", id="b", ok=False)
            assert result["error"]["code"] == "VALIDATION_ERROR"
            assert result["error"]["field"] == field
            assert result["error"]["message"] == f"{field}: must be an id (a UUID)"
        await c.send(type="ping", id="p")
        await c.expect("pong", id="p")


async def test_upper_case_ids_book_the_same_slot(live: Live, world: World) -> None:
    """An upper-case slot id books the slot it names (one slot, one gate key, one channel)."""
    svc = world.services[0]
    slot = world.slots[svc][1]
    async with client(live.ws_url) as c:
        await c.send(type="subscribe", id="s", channel=f"service:{svc.upper()}")
        assert (await c.expect("subscribed", id="s"))["channel"] == f"service:{svc}"
        await c.send(type="book", id="u", slot_id=slot["id"].upper(), quantity=2.0)
        got = await c.expect_unordered("result", "availability:updated")
    assert got["result"]["ok"] is True and got["result"]["booking"]["slot_id"] == slot["id"]
    assert got["result"]["booking"]["quantity"] == 2
    assert got["availability:updated"]["channel"] == f"service:{svc}"
    assert got["availability:updated"]["slot"]["booked"] == slot["booked"] + 2


async def test_null_id_and_empty_window_are_bad_messages(live: Live, world: World) -> None:
    """`"id": null` is BAD_MESSAGE (not echoed), and a subscribe whose `to` is not after
    `from` is BAD_MESSAGE naming `to` (HTTP answers 422), not an empty snapshot."""
    channel = f"service:{world.services[0]}"
    async with client(live.ws_url) as c:
        await c.ws.send('{"type":"ping","id":null}')
        error = await c.expect("error")
        assert "id" not in error and error["error"]["code"] == "BAD_MESSAGE"
        assert error["error"]["field"] == "id"
        await c.send(type="subscribe", id="w", channel=channel,
                     **{"from": "2030-01-08T00:00:00Z", "to": "2030-01-07T00:00:00Z"})
        error = await c.expect("error", id="w")
        assert error["error"]["code"] == "BAD_MESSAGE" and error["error"]["field"] == "to"
        await c.send(type="subscribe", id="y", channel=channel,
                     **{"from": "9999-12-31T23:59:59-01:00"})
        error = await c.expect("error", id="y")
        assert error["error"]["field"] == "from" and "1970-9999" in error["error"]["message"]
        assert live.runtime.hub.subscribers(channel) == 0


async def test_every_frame_the_server_sends_matches_its_struct(live: Live, world: World) -> None:
    """A session that provokes every kind of server frame: each decodes into the server
    message Struct of its type (what /asyncapi.json publishes)."""
    svc = world.services[0]
    slot = world.slots[svc][2]
    channel = f"service:{svc}"
    async with client(live.ws_url) as c, client(live.ws_url) as other:
        first = await c.subscribe(channel)
        await other.subscribe(channel)
        await c.expect("presence")
        await c.send(type="hold", id="h", slot_id=slot["id"], quantity=1)
        held = (await c.expect_unordered("result", "availability:updated"))["result"]
        await c.send(type="book", id="b", slot_id=slot["id"], hold_id=held["hold"]["id"])
        booked = (await c.expect_unordered("result", "availability:updated"))["result"]
        await c.send(type="book", id="x", slot_id=slot["id"], quantity=slot["capacity"])
        await c.expect_unordered("result", "conflict:detected")
        await c.send(type="cancel", id="c", booking_id=booked["booking"]["id"])
        await c.expect_unordered("result", "availability:updated")
        await c.send(type="ping", id="p")
        await c.expect("pong", id="p")
        await c.send(type="teleport", id="t")
        await c.expect("error", id="t")
        await c.send(type="unsubscribe", id="u", channel=channel)
        await c.expect("unsubscribed", id="u")
        await c.send(type="subscribe", id="again", channel=channel, since=first["cursor"])
        resumed = await c.expect("subscribed", id="again")
        seen = list(c.seen)
    assert len(resumed["events"]) >= 4
    kinds = set()
    for frame in seen:
        decoded = SERVER.decode(msgspec.json.encode(frame))
        kinds.add(type(decoded))
        for event in getattr(decoded, "events", None) or ():
            kinds.add(type(event))
    assert kinds == {ws.Subscribed, ws.Presence, ws.Result, ws.AvailabilityUpdated,
                     ws.ConflictDetected, ws.Pong, ws.ErrorFrame, ws.Unsubscribed}


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:The `websockets` implementation")
@pytest.mark.parametrize("impl", [SocketProtocol, "auto", "websockets", "wsproto"])
async def test_invalid_utf8_closes_with_1007_quietly(database_url: str, impl: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A text frame that is not UTF-8 (any raw client can send one) fails the connection as
    RFC 6455 says, without an error-level log or a traceback; the server goes on. uvicorn's
    default (websockets-sansio) and legacy implementations send the 1007 close frame; its
    wsproto one drops the connection without one (1006 at the client), in uvicorn itself."""
    if isinstance(impl, str) and impl != "auto":
        importlib.import_module(impl)
    live = await start_live(database_url, ws=impl)
    caplog.set_level(logging.INFO)
    try:
        async with connect(live.ws_url, compression=None, open_timeout=5) as raw:
            await raw.send(b'{"type":"ping","id":"\xff"}', text=True)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(raw.recv(), 5)
            code = raw.close_code
        async with client(live.ws_url) as c:  # and the server is fine
            await c.send(type="ping", id="after")
            await c.expect("pong", id="after")
    finally:
        await stop_live(live)  # fails the test if the server logged an error
    assert code == (1006 if impl == "wsproto" else 1007)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
