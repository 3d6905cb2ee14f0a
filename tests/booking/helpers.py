"""Small HTTP helpers for booking tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

BASE_TIME = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def make_service(client: httpx.AsyncClient, exclusive: bool = False,
                       name: str = "svc") -> dict[str, Any]:
    vendor = (await client.post("/api/vendors", json={"name": f"vendor of {name}"})).json()
    response = await client.post(f"/api/vendors/{vendor['id']}/services",
                                 json={"name": name, "exclusive": exclusive})
    assert response.status_code == 201, response.text
    return response.json()


async def make_slots(client: httpx.AsyncClient, service_id: str,
                     spans: list[tuple[datetime, datetime, int]]) -> list[dict[str, Any]]:
    body = {"slots": [{"starts_at": iso(a), "ends_at": iso(b), "capacity": c}
                      for a, b, c in spans]}
    response = await client.post(f"/api/services/{service_id}/slots", json=body)
    assert response.status_code == 201, response.text
    return response.json()["slots"]  # type: ignore[no-any-return]


async def one_slot(client: httpx.AsyncClient, capacity: int = 1,
                   exclusive: bool = False) -> dict[str, Any]:
    service = await make_service(client, exclusive)
    return (await make_slots(client, service["id"],
                             [(BASE_TIME, BASE_TIME + timedelta(hours=1), capacity)]))[0]


async def race(client: httpx.AsyncClient, n: int, body_for) -> list[httpx.Response]:
    """n concurrent POST /api/bookings, released together."""
    gate = asyncio.Event()

    async def one(i: int) -> httpx.Response:
        await gate.wait()
        return await client.post("/api/bookings", json=body_for(i))

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await asyncio.sleep(0.05)
    gate.set()
    return await asyncio.gather(*tasks)


def client_for(url: str, **kwargs: Any) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
    return httpx.AsyncClient(base_url=url, timeout=60, limits=limits, **kwargs)
