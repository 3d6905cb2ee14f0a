"""The application: the lifespan that wires the pool, booking, the event log and the channels,
and the HTTP routes around them. `create_app` is the ASGI factory uvicorn runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from realtime import errors, logs, metrics, workers
from realtime.access import Access
from realtime.booking.service import BookingService
from realtime.booking.sweeper import sweep_forever
from realtime.channels.handoff import shed_while_blind
from realtime.channels.runtime import ChannelRuntime
from realtime.db.connect import create_pool
from realtime.eventlog.store import EventLog
from realtime.http.assets import STATIC, Assets
from realtime.http.context import EXCEPTION_HANDLERS, RequestContext, direct_routes
from realtime.http.routes import create_booking, create_hold
from realtime.http.routes import routes as api_routes
from realtime.http.system import asyncapi, conditions, healthz, metrics_endpoint, openapi, readyz
from realtime.http.webhooks import routes as webhook_routes
from realtime.schema import http as http_schema
from realtime.schema.operations import operation
from realtime.settings import Settings
from realtime.shared import shared_for
from realtime.tasks import cancel_all, supervise
from realtime.webhooks.dispatcher import Dispatcher

log = logging.getLogger("realtime.app")


def stop_with_supervisor() -> Callable[[], None]:
    """Under `realtime serve --workers N` each worker is a child of the supervising process.
    If that one dies without stopping its workers (SIGKILL, the OOM killer), a worker stops
    itself as on SIGTERM (draining its sockets with 1001) rather than serve on alone, holding
    the port against the next start. Its pipe to the parent (`sentinel`) turns readable
    when the parent is gone: nothing is polled. Returns what undoes the watch."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return lambda: None
    loop = asyncio.get_running_loop()
    sentinel = parent.sentinel

    def gone() -> None:
        loop.remove_reader(sentinel)
        log.warning("the supervising process is gone: stopping this worker",
                    extra={"parent": parent.pid})
        os.kill(os.getpid(), signal.SIGTERM)

    loop.add_reader(sentinel, gone)

    def unwatch() -> None:
        loop.remove_reader(sentinel)

    return unwatch


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
    access = Access(settings)
    shared = shared_for(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        assert settings.database_url is not None
        pool = await create_pool(settings.database_url, settings.pool_size,
                                 settings.pool_implementation)
        metrics.watch_pool(pool)
        booking = BookingService(pool)
        app.state.pool = pool
        app.state.booking = booking
        channels = ChannelRuntime(settings, pool, booking, settings.database_url, access,
                                  shared.presence)
        # One EventLog for sockets and HTTP: with DATABASE_READ_URL it reads on the replica the
        # listener opens, never behind what this process has sent (docs/scaling.md).
        events = EventLog(pool, channels.listener.reads, lambda: channels.listener.last_pos)
        channels.session.events = events
        app.state.events = events
        app.state.channels = channels
        holder["channels"] = channels
        tasks = [supervise("hold-sweeper", lambda: sweep_forever(
            booking, settings.sweep_interval_seconds))]
        keys = access.tokens.keys
        if keys is not None:
            await keys.refresh()  # before the first request: tokens verify from the start
            tasks.append(supervise("jwks", keys.run))
        if shared.redis is not None:
            tasks.append(supervise("redis", shared.redis.watch))
        dispatcher = Dispatcher(pool, settings.webhooks_allow_private)
        app.state.webhooks = dispatcher.store
        app.state.dispatcher = dispatcher
        if channels is not None:
            channels.listener.watchers.append(dispatcher.wake)
            await channels.start()
            # Sockets of a process that cannot follow the event log move elsewhere (handoff.py).
            tasks.append(supervise("follow", lambda: shed_while_blind(channels)))
        dispatcher.start()
        # Under `--workers N`: this worker's index, and its metrics and conditions published
        # for whichever worker answers /metrics or /readyz.
        fellows = workers.from_environment()
        if fellows is not None:
            await fellows.claim()
            app.state.workers = fellows
            tasks.append(supervise("publish", lambda: fellows.run(lambda: conditions(app.state))))
        unwatch = stop_with_supervisor()
        log.info("ready", extra={"auth": settings.auth_enabled,
                                 "channels": channels is not None,
                                 "pool": settings.pool_implementation})
        try:
            yield
        finally:
            unwatch()
            if channels is not None:
                await channels.stop()
            await dispatcher.stop()
            await cancel_all(tasks)
            if fellows is not None:
                fellows.close()
            await pool.close()
            await shared.close()

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

    class SseEndpoint:
        # Raw ASGI too: the stream is written as the hub fills the reader's outbox.
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            channels = holder.get("channels")
            if channels is None:
                await send({"type": "http.response.start", "status": 503, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
            await channels.sse_endpoint(scope, receive, send)

    sse_endpoint = operation(
        id="sseStream", summary="The WebSocket stream as Server-Sent Events",
        query=http_schema.StreamQuery, media_type="text/event-stream", errors=(403, 404, 429),
        description="One `subscribed` event per channel, then every `availability:updated` and "
                    "`conflict:detected` of those channels as `event: <type>`, `id: <cursor>`, "
                    "`data: <the WebSocket frame's JSON>`, and a `: ping` comment every 15 s. "
                    "`Last-Event-ID` (sent by a browser's EventSource when it reconnects) or "
                    "`since` resumes with exactly what was missed. 401 for a bad `token`, 403 "
                    "for a browser origin that is not allowed, 404 UNKNOWN_CHANNEL, 422 "
                    "naming the parameter, 429 RATE_LIMITED when the client's address has "
                    "REALTIME_MAX_SOCKETS_PER_ADDRESS sockets and streams open.")(SseEndpoint())

    STATIC.mkdir(exist_ok=True)
    assets = Assets(STATIC)  # hashes the static tree once, here
    app = Starlette(
        routes=[
            *api_routes,
            *webhook_routes,
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint, name="metrics"),
            Route("/openapi.json", openapi),
            Route("/asyncapi.json", asyncapi),
            Route("/", assets.index),
            Route("/static/v/manifest.json", assets.manifest),
            Mount("/static/v/{version}", assets.versioned),
            Mount("/static", assets.unversioned, name="static"),
            WebSocketRoute("/ws", ws_endpoint),
            Route("/sse", sse_endpoint, methods=["GET"]),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=_middleware(settings),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.access = access
    app.state.shared = shared
    app.state.rate_limits = shared.rate_limits
    app.state.channels = None
    app.state.workers = None
    direct = direct_routes(app.routes, (create_booking, create_hold, healthz))
    return RequestContext(app, direct, sockets={"/ws": ws_endpoint})
