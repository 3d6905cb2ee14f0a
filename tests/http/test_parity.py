"""The direct routes answer exactly as Starlette's full stack would.

One real server; each request is sent once as it normally runs (RequestContext runs bookings,
holds and healthz itself) and once with the direct table emptied, so that the same request
goes through Starlette's middleware, router and exception middleware. Status, body and
headers must agree, apart from the request id and the date.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest_asyncio

from tests.channels.conftest import Live, World, seed, start_live, stop_live

DIRECT = {("POST", "/api/bookings"), ("POST", "/api/holds"), ("GET", "/healthz")}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
VARYING = {"x-request-id", "date"}


@dataclass
class Pair:
    direct: httpx.Response
    full: httpx.Response


@pytest_asyncio.fixture(loop_scope="session")
async def setup(database_url: str) -> AsyncIterator[tuple[Live, World]]:
    # Capacity 1: a second booking of a slot is a conflict. Slot i of each service has the
    # same times, so two services give twin slots for the two ways in.
    world = await seed(database_url, services=2, slots=4, capacity=1)
    live = await start_live(database_url)
    yield live, world
    await stop_live(live)
    await world.pool.close()


async def both(live: Live, method: str, path: str, direct: dict[str, Any],
               full: dict[str, Any] | None = None, full_first: bool = False) -> Pair:
    """The request through the direct path and (with `full`'s arguments, default the same)
    through the full stack; direct first unless `full_first`."""
    ctx = live.app
    table = ctx.direct
    assert ((method, path) in table) == ((method, path) in DIRECT)
    answers: dict[bool, httpx.Response] = {}
    async with httpx.AsyncClient(base_url=live.url) as http:
        for through_direct in ((False, True) if full_first else (True, False)):
            ctx.direct = table if through_direct else {}
            try:
                answers[through_direct] = await http.request(
                    method, path, **(direct if through_direct or full is None else full))
            finally:
                ctx.direct = table
    return Pair(answers[True], answers[False])


def headers(response: httpx.Response, *, skip: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    assert response.headers.get("x-request-id")
    return sorted((k, v) for k, v in response.headers.multi_items() if k not in VARYING | skip)


def assert_same(pair: Pair) -> None:
    """Byte for byte, headers included."""
    assert pair.direct.status_code == pair.full.status_code, (pair.direct.text, pair.full.text)
    assert pair.direct.content == pair.full.content
    assert headers(pair.direct) == headers(pair.full)


def normal(body: bytes) -> Any:
    """The JSON with ids numbered by first appearance and creation-dependent times elided."""
    ids: dict[str, str] = {}

    def walk(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if key in ("created_at", "expires_at"):
            return "<time>"
        if isinstance(value, str) and UUID.fullmatch(value):
            return ids.setdefault(value, f"<id{len(ids)}>")
        return value

    return walk(orjson.loads(body))


def assert_alike(pair: Pair) -> None:
    """Same status, headers and JSON shape and values, for twin requests on twin slots."""
    assert pair.direct.status_code == pair.full.status_code, (pair.direct.text, pair.full.text)
    assert normal(pair.direct.content) == normal(pair.full.content)
    skip = frozenset({"content-length"})  # times may differ in length
    assert headers(pair.direct, skip=skip) == headers(pair.full, skip=skip)


async def test_direct_and_full_stack_answer_alike(setup: tuple[Live, World]) -> None:
    """Bookings (201, 409, 422, 400, 413, 404, 405, idempotent replay), holds (201, 422) and
    healthz: the same status, body and headers through the direct path and the full stack."""
    live, world = setup
    one, two = world.services
    twin = [(world.slots[one][i]["id"], world.slots[two][i]["id"]) for i in range(4)]
    json = {"content-type": "application/json"}

    health = await both(live, "GET", "/healthz", {})
    assert health.direct.status_code == 200
    assert_same(health)

    booked = await both(live, "POST", "/api/bookings", {"json": {"slot_id": twin[0][0]}},
                        {"json": {"slot_id": twin[0][1]}})
    assert booked.direct.status_code == 201
    assert_alike(booked)

    conflict = await both(live, "POST", "/api/bookings", {"json": {"slot_id": twin[0][0]}})
    assert conflict.direct.status_code == 409
    assert conflict.direct.json()["error"]["code"] == "BOOKING_CONFLICT"
    assert conflict.direct.json()["error"]["alternatives"]
    assert_same(conflict)

    invalid = await both(live, "POST", "/api/bookings", {"json": {"slot_id": "nope"}})
    assert invalid.direct.status_code == 422
    assert invalid.direct.json()["error"]["field"] == "slot_id"
    assert_same(invalid)

    malformed = await both(live, "POST", "/api/bookings",
                           {"content": b'{"slot_id": ', "headers": json})
    assert malformed.direct.status_code == 400
    assert malformed.direct.json()["error"]["code"] == "INVALID_JSON"
    assert_same(malformed)

    oversized = await both(live, "POST", "/api/bookings",
                           {"content": b'{"slot_id": "' + b"x" * 70_000 + b'"}', "headers": json})
    assert oversized.direct.status_code == 413
    assert_same(oversized)

    unknown = await both(live, "POST", "/api/bookings", {"json": {"slot_id": str(uuid.uuid4())}})
    assert unknown.direct.status_code == 404
    assert unknown.direct.json()["error"]["code"] == "SLOT_NOT_FOUND"
    assert_same(unknown)

    # Not a direct route (the table is by method and path): both answers come from the
    # router, so the direct table must not catch it.
    wrong_method = await both(live, "PUT", "/api/bookings", {"json": {}})
    assert wrong_method.direct.status_code == 405
    assert wrong_method.direct.headers["allow"] == "POST"
    assert_same(wrong_method)

    # An idempotent booking first made one way is replayed the other way, in both orders.
    for n, full_first in enumerate((False, True)):
        request = {"json": {"slot_id": twin[1][n]}, "headers": {"Idempotency-Key": f"k-{n}"}}
        made = await both(live, "POST", "/api/bookings", request, full_first=full_first)
        assert made.direct.status_code == 201, made.direct.text
        assert_same(made)

    held = await both(live, "POST", "/api/holds", {"json": {"slot_id": twin[2][0]}},
                      {"json": {"slot_id": twin[2][1]}})
    assert held.direct.status_code == 201
    assert_alike(held)

    bad_ttl = await both(live, "POST", "/api/holds",
                         {"json": {"slot_id": twin[3][0], "ttl_seconds": 0}})
    assert bad_ttl.direct.status_code == 422
    assert bad_ttl.direct.json()["error"]["field"] == "ttl_seconds"
    assert_same(bad_ttl)
