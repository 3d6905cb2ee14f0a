"""The Starlette application: lifespan (pool, background tasks, channels) and HTTP plumbing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from realtime import errors, logs, metrics
from realtime.api import JSONResponse, create_booking, create_hold, error_response
from realtime.api import routes as api_routes
from realtime.booking.service import BookingService
from realtime.booking.sweeper import sweep_forever
from realtime.channels.runtime import ChannelRuntime
from realtime.db import create_pool
from realtime.openapi import openapi_document
from realtime.ratelimit import buckets_for
from realtime.settings import Settings
from realtime.tasks import cancel_all, supervise

log = logging.getLogger("realtime.app")
STATIC = Path(__file__).parent / "static"


_METHODS = frozenset({"GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"})
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _scan_headers(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, bool]:
    """The caller's X-Request-Id, kept for tracing across services if it is a plain token;
    and whether the request has an Origin header."""
    request_id: str | None = None
    origin = False
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            request_id = text if _SAFE_ID.match(text) else None
        elif name == b"origin":
            origin = True
    return request_id, origin


def _new_request_id() -> str:
    # 128 random bits for correlating log lines, not a secret: no getrandom() syscall and no
    # UUID object per request (together about 2% of the server's time on a booking).
    return f"{random.getrandbits(128):032x}"


Endpoint = Callable[[Request], Awaitable[Response]]


class RequestContext:
    """Request id, one structured log line and metrics per HTTP request (pure ASGI).

    It is the outermost layer, and it runs the routes in `direct` itself: a booking is the
    request this server exists to take at volume, and Starlette's layers around an endpoint
    (error middleware, exception middleware, router matching, per-route wrappers, each with
    its own `send` wrapper) cost as much Python per request as the endpoint's own work.
    A direct route gets the same endpoint, the same error responses and the same log line;
    a request with an `Origin` header takes the full stack when CORS is configured.
    """

    def __init__(self, app: Starlette, direct: dict[tuple[str, str], Endpoint],
                 cors: bool) -> None:
        self.app = app
        self.direct = direct
        self.cors = cors

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client_id, origin = _scan_headers(scope["headers"])
        rid = client_id or _new_request_id()
        token = logs.request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            endpoint = self.direct.get((scope["method"], scope["path"]))
            if endpoint is None or (origin and self.cors):
                await self.app(scope, receive, send_with_id)
            else:
                scope["app"] = self.app
                scope["endpoint"] = endpoint
                await _run(endpoint, scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            endpoint = scope.get("endpoint")
            route = getattr(endpoint, "__name__", "unmatched")
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            metrics.HTTP.observe(method, route, status, elapsed)
            if route not in ("metrics", "healthz") or status >= 400:
                log.info("request", extra={"method": method, "path": scope["path"],
                                           "status": status, "ms": round(elapsed * 1000, 2)})
            logs.request_id.reset(token)


async def on_realtime_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.RealtimeError)
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(errors.NotFound(f"no route for {request.url.path}"))
    if exc.status_code == 405:
        return error_response(errors.MethodNotAllowed())
    err = errors.RealtimeError(exc.detail)
    err.status = exc.status_code
    return error_response(err)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(errors.RealtimeError("internal error; see the server log",
                                               request_id=logs.request_id.get()))


# One table for both ways in: the Starlette app's handlers, and `_run` for the direct routes.
EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    errors.RealtimeError: on_realtime_error,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}


async def _run(endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
    """A direct route's endpoint, its exception answered by the handler Starlette would pick
    (the nearest class in the exception's MRO)."""
    request = Request(scope, receive, send)
    try:
        response = await endpoint(request)
    except Exception as exc:
        handler = next(EXCEPTION_HANDLERS[c] for c in type(exc).__mro__ if c in EXCEPTION_HANDLERS)
        response = await handler(request, exc)
    await response(scope, receive, send)


def _direct_routes(routes: list[BaseRoute], endpoints: tuple[Endpoint, ...]
                   ) -> dict[tuple[str, str], Endpoint]:
    """(method, path) -> endpoint for these endpoints, read off the route table itself."""
    return {(method, route.path): route.endpoint
            for route in routes if isinstance(route, Route) and route.endpoint in endpoints
            for method in route.methods or () if method != "HEAD"}


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    down: dict[str, str] = {}
    try:
        await asyncio.wait_for(request.app.state.pool.fetchval("SELECT 1"), 2)
    except Exception as exc:
        down["database"] = f"unreachable ({exc.__class__.__name__})"
    channels = request.app.state.channels
    if channels is not None and (reason := channels.ready()) is not None:
        down["listener"] = reason
    if down:
        err = errors.NotReady("not ready: " + ", ".join(f"{k} {v}" for k, v in down.items()),
                              down=down)
        return error_response(err)
    return JSONResponse({"status": "ready"})


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def index(request: Request) -> Response:
    page = STATIC / "index.html"
    if not page.exists():
        return Response("<!doctype html><title>realtime</title><p>realtime is running.</p>",
                        media_type="text/html")
    return FileResponse(page, headers={"Cache-Control": "no-cache"})


class PublicStatic:
    """/static for any site: the client library is an ES module that booking sites import
    cross-origin, which browsers only allow with CORS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"access-control-allow-origin", b"*")]
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _middleware(settings: Settings) -> list[Middleware]:
    stack: list[Middleware] = []
    # The origins allowed to open /ws may also call the HTTP API from their pages (a widget
    # falling back to POST /api/bookings while its socket reconnects).
    if settings.allowed_origins:
        stack.append(Middleware(
            CORSMiddleware, allow_origins=list(settings.allowed_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"],
            expose_headers=["X-Request-Id", "Retry-After"], max_age=600))
    return stack


def create_app(settings: Settings | None = None) -> RequestContext:
    settings = settings or Settings.from_env()
    # Worker processes started by `--workers N` do not inherit the CLI's logging setup.
    logs.setup(settings.log_level)
    if not settings.database_url:
        raise SystemExit("DATABASE_URL is not set (`realtime serve` sets it for the embedded "
                         "PostgreSQL; when running the app directly, set it yourself)")
    holder: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        assert settings.database_url is not None
        pool = await create_pool(settings.database_url, settings.pool_size)
        metrics.watch_pool(pool)
        booking = BookingService(pool)
        app.state.pool = pool
        app.state.booking = booking
        channels = ChannelRuntime(settings, pool, booking, settings.database_url)
        app.state.channels = channels
        holder["channels"] = channels
        tasks = [supervise("hold-sweeper", lambda: sweep_forever(
            booking, settings.sweep_interval_seconds))]
        if channels is not None:
            await channels.start()
        log.info("ready", extra={"auth": settings.auth_enabled,
                                 "channels": channels is not None})
        try:
            yield
        finally:
            if channels is not None:
                await channels.stop()
            await cancel_all(tasks)
            await pool.close()
            await app.state.rate_limits.close()

    class WsEndpoint:
        # A class instance, not a function: Starlette treats it as raw ASGI instead of
        # wrapping it as `func(websocket)` (channels: the fan-out writes through raw `send`).
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            channels = holder.get("channels")
            if channels is None:
                await send({"type": "websocket.close", "code": errors.CLOSE_SERVER_ERROR})
                return
            await channels.endpoint(scope, receive, send)

    ws_endpoint = WsEndpoint()

    STATIC.mkdir(exist_ok=True)
    app = Starlette(
        routes=[
            *api_routes,
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint, name="metrics"),
            Route("/openapi.json", openapi),
            Route("/", index),
            Mount("/static", PublicStatic(StaticFiles(directory=STATIC)), name="static"),
            WebSocketRoute("/ws", ws_endpoint),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=_middleware(settings),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.rate_limits = buckets_for(settings.redis_url, settings.rate_limit_per_second,
                                        settings.rate_limit_burst)
    app.state.channels = None
    direct = _direct_routes(app.routes, (create_booking, create_hold, healthz))
    return RequestContext(app, direct, cors=bool(settings.allowed_origins))
