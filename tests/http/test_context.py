"""RequestContext refuses to run routes itself past middleware or handlers it would skip."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from realtime.app import create_app
from realtime.http.context import EXCEPTION_HANDLERS, RequestContext, direct_routes
from realtime.http.system import healthz
from tests.channels.conftest import BASE_SETTINGS, seed
from tests.support.sockets import listening


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        self.messages.append(record.getMessage() + (f" {error}" if error else ""))


@dataclass
class Served:
    server: uvicorn.Server
    url: str
    records: _Records
    exit_code: asyncio.Task[object]


def bound_port(server: uvicorn.Server) -> int:
    """The port a started uvicorn listens on (it was started on port 0)."""
    return int(server.servers[0].sockets[0].getsockname()[1])


@contextlib.asynccontextmanager
async def served(app: Any, lifespan: str = "auto") -> AsyncIterator[Served]:
    """`app` under a real uvicorn on a port the kernel picks, with uvicorn's log lines; the
    URL is empty when it did not start."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan=lifespan,
                                           log_level="info", log_config=None))
    records = _Records()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(records)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    async def serve() -> object:
        # A failed startup ends serve() with SystemExit(3), as it would end the process;
        # caught here, before asyncio would let it stop the test's event loop.
        try:
            await server.serve()
        except SystemExit as exc:
            return exc.code
        return 0

    task = asyncio.create_task(serve())
    try:
        for _ in range(1000):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{bound_port(server)}" if server.started else ""
        yield Served(server, url, records, task)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)
        logger.removeHandler(records)


async def plain(request: Request) -> Response:
    return PlainTextResponse("ok")


def test_other_middleware_is_refused_when_built() -> None:
    """Built over an app with middleware besides CORS, it raises, naming the middleware and
    the routes it runs itself (HTTP or WebSocket); CORS alone, or no direct routes, is fine."""
    routes = [Route("/healthz", healthz), Route("/other", plain)]
    gzip = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS,
                     middleware=[Middleware(GZipMiddleware)])
    with pytest.raises(RuntimeError, match=r"GET /healthz .*skip GZipMiddleware"):
        RequestContext(gzip, direct_routes(gzip.routes, (healthz,)))
    assert RequestContext(gzip, {}).direct == {}  # nothing run past it: nothing skipped
    with pytest.raises(RuntimeError, match=r"WebSocket /ws .*skip GZipMiddleware"):
        RequestContext(gzip, {}, sockets={"/ws": plain})  # a socket route run past it too
    cors = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS,
                     middleware=[Middleware(CORSMiddleware, allow_origins=["https://a.example"])])
    assert RequestContext(cors, direct_routes(cors.routes, (healthz,))).cors is True
    handlers = Starlette(routes=routes, exception_handlers={**EXCEPTION_HANDLERS, KeyError: plain})
    with pytest.raises(RuntimeError, match="exception handlers"):
        RequestContext(handlers, direct_routes(handlers.routes, (healthz,)))


@pytest.mark.parametrize("added", ["middleware", "exception handler"])
async def test_additions_after_building_are_refused_at_startup(database_url: str,
                                                               added: str) -> None:
    """Middleware or an exception handler added to the app after create_app: uvicorn's
    startup fails with the reason and the server never binds its port."""
    ctx = create_app(replace(BASE_SETTINGS, database_url=database_url))
    if added == "middleware":
        ctx.app.add_middleware(GZipMiddleware)
    else:
        ctx.app.add_exception_handler(KeyError, plain)
    before = listening(os.getpid())
    async with served(ctx) as live:
        assert not live.server.started
        assert listening(os.getpid()) == before, "a port was bound"
        assert await live.exit_code == 3
    assert any("RequestContext runs" in m for m in live.records.messages), live.records.messages
    assert "Application startup failed. Exiting." in live.records.messages


async def test_without_lifespan_the_first_request_is_refused(database_url: str) -> None:
    """With no lifespan to fail, requests are refused (500) and the reason is logged; no
    request runs past the skipped middleware."""
    ctx = create_app(replace(BASE_SETTINGS, database_url=database_url))
    ctx.app.add_middleware(GZipMiddleware)
    async with served(ctx, lifespan="off") as live:
        async with httpx.AsyncClient(base_url=live.url) as http:
            first = await http.get("/healthz")
            second = await http.post("/api/bookings", json={})
    assert first.status_code == second.status_code == 500
    refusals = [m for m in live.records.messages if "Exception in ASGI application" in m]
    assert len(refusals) == 2 and all("would skip GZipMiddleware" in m for m in refusals)


async def test_cors_added_after_building_takes_the_full_stack(database_url: str) -> None:
    """CORS middleware added after create_app is accepted, and a booking from a page of that
    origin then gets its CORS headers (it goes through the middleware, not past it)."""
    world = await seed(database_url, capacity=10)
    ctx = create_app(replace(BASE_SETTINGS, database_url=database_url))
    ctx.app.add_middleware(CORSMiddleware, allow_origins=["https://shop.example"])
    slot = world.all_slots()[0]["id"]
    try:
        async with served(ctx) as live:
            assert live.server.started and ctx.cors
            async with httpx.AsyncClient(base_url=live.url) as http:
                page = await http.post("/api/bookings", json={"slot_id": slot},
                                       headers={"Origin": "https://shop.example"})
                direct = await http.post("/api/bookings", json={"slot_id": slot})
    finally:
        await world.pool.close()
    assert page.status_code == direct.status_code == 201
    assert page.headers["access-control-allow-origin"] == "https://shop.example"
    assert "access-control-allow-origin" not in direct.headers
