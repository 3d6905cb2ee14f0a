"""Rate limits: 429 RATE_LIMITED with Retry-After, per process or shared through Redis."""

from __future__ import annotations

import asyncio

import pytest

from tests.booking.helpers import client_for
from tests.support.server import ServerProcess


async def test_rate_limit_answers_429_with_retry_after(database_url, tmp_path):
    """Past the burst, writes get 429 RATE_LIMITED with a Retry-After header."""
    server = ServerProcess(database_url, env={"REALTIME_RATE_LIMIT": "0.1", "REALTIME_RATE_BURST": "3"},
                           log_dir=tmp_path)
    await asyncio.to_thread(server.start)
    try:
        async with client_for(server.url) as client:
            responses = [await client.post("/api/vendors", json={"name": f"v{i}"}) for i in range(5)]
            reads = await client.get("/healthz")
    finally:
        await asyncio.to_thread(server.stop)
    assert [r.status_code for r in responses] == [201, 201, 201, 429, 429]
    assert responses[3].json()["error"]["code"] == "RATE_LIMITED"
    assert int(responses[3].headers["retry-after"]) >= 1
    assert reads.status_code == 200


@pytest.mark.redis
async def test_rate_limit_is_shared_across_processes_through_redis(database_url, redis_url, tmp_path):
    """Two server processes with one REDIS_URL draw from one bucket per client."""
    env = {"REALTIME_RATE_LIMIT": "0.05", "REALTIME_RATE_BURST": "6", "REDIS_URL": redis_url}
    a = ServerProcess(database_url, env=env, log_dir=tmp_path)
    b = ServerProcess(database_url, env=env, log_dir=tmp_path)
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
    try:
        async with client_for(a.url) as ca, client_for(b.url) as cb:
            statuses = []
            for i in range(6):
                statuses.append((await ca.post("/api/vendors", json={"name": f"a{i}"})).status_code)
                statuses.append((await cb.post("/api/vendors", json={"name": f"b{i}"})).status_code)
    finally:
        await asyncio.gather(asyncio.to_thread(a.stop), asyncio.to_thread(b.stop))
    assert statuses.count(201) == 6 and statuses.count(429) == 6
