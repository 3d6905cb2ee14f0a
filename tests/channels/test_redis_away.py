"""Redis is an accelerator, not the truth: with it gone, the server serves and says so."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import REGISTRY

from tests.channels.conftest import World, client, start_live, stop_live
from tests.conftest import IN_CI
from tests.support.server import free_port, start_redis

pytestmark = pytest.mark.redis


class RedisProcess:
    """A redis-server of the test's own, that it can stop and start again on the same port."""

    def __init__(self, tmp_path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if IN_CI:
                pytest.fail("CI: redis-server is not installed")
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.dir = tmp_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = start_redis(self.binary, self.port, self.dir)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


def redis_up() -> float | None:
    return REGISTRY.get_sample_value("realtime_redis_up")


async def test_redis_away_degrades_and_recovers_by_itself(database_url: str, world: World,
                                                         own_redis: RedisProcess) -> None:
    """Redis killed mid-run: bookings and updates go on, /readyz stays 200 naming Redis under
    `degraded`, realtime_redis_up is 0, rate limits count per process; Redis back: all
    recovers without a restart."""
    live = await start_live(database_url, redis_url=own_redis.url, rate_limit_per_second=5,
                            rate_limit_burst=5)
    slot = world.slots[world.services[0]][0]["id"]
    try:
        async with httpx.AsyncClient(base_url=live.url) as http, \
                client(live.ws_url) as watcher:
            await watcher.subscribe(f"service:{world.services[0]}")
            assert (await http.get("/readyz")).json() == {"status": "ready"}
            own_redis.stop()
            for _ in range(50):
                ready = await http.get("/readyz")
                if "degraded" in ready.json():
                    break
                await asyncio.sleep(0.1)
            assert ready.status_code == 200 and "redis" in ready.json()["degraded"]
            assert redis_up() == 0
            booked = await http.post("/api/bookings", json={"slot_id": slot})
            assert booked.status_code == 201
            update = await watcher.expect("availability:updated")
            assert update["slot"]["id"] == slot
            statuses = [(await http.post("/api/bookings", json={"slot_id": slot})).status_code
                        for _ in range(8)]
            assert 429 in statuses  # still limited, by this process's own buckets
            own_redis.start()
            for _ in range(50):
                ready = await http.get("/readyz")
                if "degraded" not in ready.json():
                    break
                await asyncio.sleep(0.1)
            assert ready.json() == {"status": "ready"}
            assert redis_up() == 1
    finally:
        await stop_live(live)
