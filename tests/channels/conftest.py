"""Fixtures for the channels tests: an in-process uvicorn on a free port, seeded data, clients.

The server runs uvicorn's WebSocket protocol as `realtime serve` does (`SocketProtocol`, or
another by `ws=`), in the test's own event loop (not a subprocess) so that an exception anywhere
in the server fails the test (`_fail_on_loop_errors`) and tests can look at the hub directly.
The SIGTERM test uses the subprocess server of tests/conftest.py instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import pytest_asyncio
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from realtime.app import create_app
from realtime.booking.service import BookingService
from realtime.channels.runtime import ChannelRuntime
from realtime.channels.wsprotocol import SocketProtocol
from realtime.db.connect import create_pool
from realtime.db.interface import ConnectionPool
from realtime.settings import Settings
from tests.support.pools import SELECTED_POOL


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The test runner owns the process's signals.
        yield


@dataclass
class Live:
    port: int
    app: Any
    server: uvicorn.Server
    database_url: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def runtime(self) -> ChannelRuntime:
        return self.app.state.channels  # type: ignore[no-any-return]


BASE_SETTINGS = Settings(
    pool_implementation=SELECTED_POOL,
    sequencer_poll_seconds=0.1,
    rate_limit_per_second=0,
    ws_messages_per_second=1000,
    event_retention_seconds=3600,
)


class _Errors(logging.Handler):
    """Server-side errors that never reach the event loop (uvicorn logs ASGI exceptions)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def start_live(database_url: str, ws: Any = SocketProtocol, deflate: bool = False,
                     uvicorn_options: dict[str, Any] | None = None, **overrides: Any) -> Live:
    settings = replace(BASE_SETTINGS, database_url=database_url, **overrides)
    app = create_app(settings)
    # Port 0: the kernel picks one as uvicorn binds, so nothing can take it in between.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws=ws,
        ws_per_message_deflate=deflate, ws_max_size=64 * 1024, timeout_graceful_shutdown=8,
        **(uvicorn_options or {}),
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1200):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.025)
    # Its port is known once it listens.
    assert server.started, "the server did not start within 30 s"
    live = Live(server.servers[0].sockets[0].getsockname()[1], app, server, database_url)
    live._task = task  # type: ignore[attr-defined]
    errors = _Errors()
    for name in ("uvicorn.error", "realtime.channels", "realtime.eventlog"):
        logging.getLogger(name).addHandler(errors)
    live._errors = errors  # type: ignore[attr-defined]
    for _ in range(200):
        if live.runtime.ready() is None:
            break
        await asyncio.sleep(0.025)
    assert live.runtime.ready() is None, live.runtime.ready()
    return live


async def stop_live(live: Live) -> None:
    live.server.should_exit = True
    await asyncio.wait_for(live._task, 20)  # type: ignore[attr-defined]
    errors: _Errors = live._errors  # type: ignore[attr-defined]
    for name in ("uvicorn.error", "realtime.channels", "realtime.eventlog"):
        logging.getLogger(name).removeHandler(errors)
    if errors.records:
        pytest.fail("the server logged errors: " + "; ".join(
            f"{r.name}: {r.getMessage()}" for r in errors.records))


@pytest_asyncio.fixture(loop_scope="session")
async def live(database_url: str) -> AsyncIterator[Live]:
    server = await start_live(database_url)
    yield server
    await stop_live(server)


@dataclass
class World:
    pool: ConnectionPool
    booking: BookingService
    vendor: str
    services: list[str]
    slots: dict[str, list[dict[str, Any]]]  # service id -> slots

    def all_slots(self) -> list[dict[str, Any]]:
        return [s for slots in self.slots.values() for s in slots]


async def seed(database_url: str, services: int = 2, slots: int = 3, capacity: int = 1000) -> World:
    pool = await create_pool(database_url, 8, SELECTED_POOL)
    booking = BookingService(pool)
    vendor = (await booking.create_vendor("Salon"))["id"]
    start = datetime(2030, 1, 7, 9, tzinfo=UTC)
    made: dict[str, list[dict[str, Any]]] = {}
    for i in range(services):
        service = (await booking.create_service(vendor, f"cut {i}", False))["id"]
        body = [
            {
                "starts_at": (start + timedelta(hours=h)).isoformat().replace("+00:00", "Z"),
                "ends_at": (start + timedelta(hours=h + 1)).isoformat().replace("+00:00", "Z"),
                "capacity": capacity,
            }
            for h in range(slots)
        ]
        made[service] = (await booking.create_slots(service, body))["slots"]
    return World(pool, booking, vendor, list(made), made)


@pytest_asyncio.fixture(loop_scope="session")
async def world(database_url: str) -> AsyncIterator[World]:
    w = await seed(database_url)
    yield w
    await w.pool.close()


class Client:
    """A websockets client speaking JSON, with helpers that fail fast instead of hanging.

    One background task reads the socket (so the server never sees a slow reader by accident)
    and feeds `seen`, the listeners and the queue that `recv` / `expect` take from.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self.listeners: list[Any] = []
        self.close_code: int | None = None
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self.ws:
                msg: dict[str, Any] = orjson.loads(raw)
                self.seen.append(msg)
                for listener in self.listeners:
                    listener(msg)
                self._queue.put_nowait(msg)
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code
        self._queue.put_nowait(None)

    async def send(self, **msg: Any) -> None:
        await self.ws.send(orjson.dumps(msg).decode())

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        msg = await asyncio.wait_for(self._queue.get(), within)
        if msg is None:
            self._queue.put_nowait(None)
            raise ConnectionError(f"closed with {self.close_code}")
        return msg

    async def expect(self, type_: str, within: float = 5.0, **fields: Any) -> dict[str, Any]:
        """The next message of `type_` (skipping presence frames); fields must match."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            left = deadline - asyncio.get_running_loop().time()
            msg = await self.recv(max(left, 0.01))
            if msg["type"] == "presence" and type_ != "presence":
                continue
            assert msg["type"] == type_, msg
            for key, value in fields.items():
                assert msg.get(key) == value, (key, msg)
            return msg

    async def expect_unordered(self, *types: str, within: float = 5.0) -> dict[str, dict[str, Any]]:
        """The next messages, one of each type in any order (presence frames skipped): a
        booking's result and its own broadcast are not ordered by the protocol."""
        got: dict[str, dict[str, Any]] = {}
        deadline = asyncio.get_running_loop().time() + within
        while len(got) < len(types):
            msg = await self.recv(max(deadline - asyncio.get_running_loop().time(), 0.01))
            if msg["type"] == "presence":
                continue
            assert msg["type"] in types and msg["type"] not in got, (msg, got)
            got[msg["type"]] = msg
        return got

    async def closed(self, within: float = 10.0) -> int | None:
        await asyncio.wait_for(asyncio.shield(self._reader), within)
        return self.close_code

    async def subscribe(self, channel: str, **extra: Any) -> dict[str, Any]:
        await self.send(type="subscribe", id="s-" + channel, channel=channel, **extra)
        return await self.expect("subscribed", id="s-" + channel, channel=channel)

    async def aclose(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def client(url: str, **kwargs: Any) -> AsyncIterator[Client]:
    kwargs.setdefault("compression", None)
    async with connect(url, open_timeout=5, **kwargs) as ws:
        c = Client(ws)
        try:
            yield c
        finally:
            await c.aclose()
