"""What both peers share: the slots table, the setup and booking routes, a slot's JSON.

This is deliberately the code a user would write: a pool, a conditional UPDATE in a
transaction, and a hook to broadcast after the commit.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

SCHEMA = """
CREATE TABLE IF NOT EXISTS peer_vendors (id uuid PRIMARY KEY, name text NOT NULL);
CREATE TABLE IF NOT EXISTS peer_services (
    id uuid PRIMARY KEY, vendor_id uuid NOT NULL REFERENCES peer_vendors, name text NOT NULL);
CREATE TABLE IF NOT EXISTS peer_slots (
    id uuid PRIMARY KEY,
    service_id uuid NOT NULL REFERENCES peer_services,
    vendor_id uuid NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    capacity int NOT NULL,
    booked int NOT NULL DEFAULT 0,
    held int NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 1,
    CHECK (booked >= 0 AND held >= 0 AND booked + held <= capacity));
CREATE INDEX IF NOT EXISTS peer_slots_service ON peer_slots (service_id, starts_at);
CREATE TABLE IF NOT EXISTS peer_bookings (
    id uuid PRIMARY KEY, slot_id uuid NOT NULL REFERENCES peer_slots,
    quantity int NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
"""

SLOT_COLUMNS = "id, service_id, vendor_id, starts_at, ends_at, capacity, booked, held, version"

Publish = Callable[[str, dict[str, Any]], Awaitable[None]]


def _time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def slot_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "service_id": str(row["service_id"]),
        "vendor_id": str(row["vendor_id"]),
        "starts_at": _time(row["starts_at"]),
        "ends_at": _time(row["ends_at"]),
        "capacity": row["capacity"],
        "booked": row["booked"],
        "held": row["held"],
        "available": row["capacity"] - row["booked"] - row["held"],
        "version": row["version"],
    }


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(self.url, min_size=2, max_size=10)
        async with self.pool.acquire() as conn:
            # Several peers may start against one database at once.
            await conn.execute("SELECT pg_advisory_lock(4242)")
            try:
                await conn.execute(SCHEMA)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(4242)")

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def channel_slots(self, channel: str) -> list[dict[str, Any]]:
        kind, _, ident = channel.partition(":")
        sid = _uuid(ident)
        if kind != "service" or sid is None:
            return []
        assert self.pool is not None
        rows = await self.pool.fetch(
            f"SELECT {SLOT_COLUMNS} FROM peer_slots WHERE service_id = $1 ORDER BY starts_at", sid
        )
        return [slot_json(r) for r in rows]


def make_app(
    store: Store, publish: Publish, extra_routes: list[BaseRoute] | None = None
) -> Starlette:
    """The HTTP side; `publish(channel, message)` runs after each committed booking."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def create_vendor(request: Request) -> Response:
        body = await request.json()
        vid = uuid.uuid4()
        assert store.pool is not None
        await store.pool.execute("INSERT INTO peer_vendors VALUES ($1, $2)", vid, body["name"])
        return JSONResponse({"id": str(vid), "name": body["name"]}, status_code=201)

    async def create_service(request: Request) -> Response:
        body = await request.json()
        vid = _uuid(request.path_params["id"])
        sid = uuid.uuid4()
        assert store.pool is not None
        try:
            await store.pool.execute(
                "INSERT INTO peer_services VALUES ($1, $2, $3)", sid, vid, body["name"]
            )
        except asyncpg.ForeignKeyViolationError:
            return error(404, "VENDOR_NOT_FOUND", "vendor not found")
        return JSONResponse(
            {"id": str(sid), "vendor_id": str(vid), "name": body["name"], "exclusive": False},
            status_code=201,
        )

    async def create_slots(request: Request) -> Response:
        body = await request.json()
        sid = _uuid(request.path_params["id"])
        assert store.pool is not None
        async with store.pool.acquire() as conn, conn.transaction():
            vendor = await conn.fetchval("SELECT vendor_id FROM peer_services WHERE id = $1", sid)
            if vendor is None:
                return error(404, "SERVICE_NOT_FOUND", "service not found")
            out = []
            for s in body["slots"]:
                row = await conn.fetchrow(
                    f"INSERT INTO peer_slots (id, service_id, vendor_id, starts_at, ends_at, "
                    f"capacity) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SLOT_COLUMNS}",
                    uuid.uuid4(), sid, vendor,
                    datetime.fromisoformat(s["starts_at"].replace("Z", "+00:00")),
                    datetime.fromisoformat(s["ends_at"].replace("Z", "+00:00")),
                    int(s["capacity"]),
                )
                out.append(slot_json(row))
        return JSONResponse({"slots": out}, status_code=201)

    async def availability(request: Request) -> Response:
        channel = f"service:{request.path_params['id']}"
        return JSONResponse({"channel": channel, "cursor": None,
                             "slots": await store.channel_slots(channel)})

    async def book(request: Request) -> Response:
        body = await request.json()
        slot_id = _uuid(str(body.get("slot_id", "")))
        quantity = int(body.get("quantity", 1))
        assert store.pool is not None
        async with store.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE peer_slots SET booked = booked + $2, version = version + 1 "
                f"WHERE id = $1 AND booked + held + $2 <= capacity RETURNING {SLOT_COLUMNS}",
                slot_id, quantity,
            )
            if row is None:
                current = await conn.fetchrow(
                    f"SELECT {SLOT_COLUMNS} FROM peer_slots WHERE id = $1", slot_id
                )
                if current is None:
                    return error(404, "SLOT_NOT_FOUND", "slot not found")
                return JSONResponse(
                    {"error": {"code": "BOOKING_CONFLICT", "message": "not enough available",
                               "slot": slot_json(current), "alternatives": []}},
                    status_code=409,
                )
            bid = uuid.uuid4()
            created = await conn.fetchval(
                "INSERT INTO peer_bookings (id, slot_id, quantity) VALUES ($1, $2, $3) "
                "RETURNING created_at", bid, slot_id, quantity,
            )
        slot = slot_json(row)
        channel = f"service:{slot['service_id']}"
        # After the commit, as a user would: tell everyone watching this service.
        await publish(channel, {"channel": channel, "cursor": None, "reason": "booked",
                                "slot": slot})
        booking = {"id": str(bid), "slot_id": slot["id"], "customer_id": None,
                   "quantity": quantity, "status": "confirmed", "created_at": _time(created)}
        return JSONResponse({"booking": booking, "slot": slot}, status_code=201)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.start()
        try:
            yield
        finally:
            await store.stop()

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/api/vendors", create_vendor, methods=["POST"]),
        Route("/api/vendors/{id}/services", create_service, methods=["POST"]),
        Route("/api/services/{id}/slots", create_slots, methods=["POST"]),
        Route("/api/services/{id}/availability", availability),
        Route("/api/bookings", book, methods=["POST"]),
        *(extra_routes or []),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("set DATABASE_URL to a PostgreSQL database the peer may create tables in")
    return url


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message)
