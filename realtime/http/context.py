"""The request context: request id, one structured log line and metrics per HTTP request,
and the few routes it runs itself, past Starlette's routing layers."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from realtime import errors, logs, metrics
from realtime.http.responses import error_response

log = logging.getLogger("realtime.app")


_METHODS = frozenset({"GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"})


def _scan_headers(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, bool]:
    """The caller's X-Request-Id, kept for tracing across services if it is a plain token;
    and whether the request has an Origin header."""
    request_id: str | None = None
    origin = False
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            request_id = text if logs.SAFE_REQUEST_ID.match(text) else None
        elif name == b"origin":
            origin = True
    return request_id, origin


Endpoint = Callable[[Request], Awaitable[Response]]


class RequestContext:
    """Request id, one structured log line and metrics per HTTP request (pure ASGI).

    It is the outermost layer, and it runs the routes in `direct` itself: a booking is the
    request this server exists to take at volume, and Starlette's layers around an endpoint
    (error middleware, exception middleware, router matching, per-route wrappers, each with
    its own `send` wrapper) cost as much Python per request as the endpoint's own work.
    A direct route gets the same endpoint, the same error responses and the same log line;
    a request with an `Origin` header takes the full stack when the app has CORS middleware.
    WebSocket routes in `sockets` (raw ASGI apps) are run directly too: Starlette's layers
    do nothing for them here (CORS is HTTP only), yet each would hold a coroutine frame, and
    some a closure, for every open socket's whole life.

    Anything else the Starlette app would do around an endpoint, a direct route would
    silently not do: so it refuses to run (RuntimeError) when the app has other middleware,
    or exception handlers other than `EXCEPTION_HANDLERS`. It checks when it is built and
    again on its first call (startup), since `app.add_middleware` works until then.
    """

    def __init__(self, app: Starlette, direct: dict[tuple[str, str], Endpoint],
                 sockets: dict[str, ASGIApp] | None = None) -> None:
        self.app = app
        self.direct = direct
        self.sockets = sockets or {}
        self.cors = False
        self._checked = False
        problem = self._problem()
        if problem is not None:
            raise RuntimeError(problem)

    def _problem(self) -> str | None:
        """What the direct routes would skip, as a message; None if nothing."""
        classes = [m.cls for m in self.app.user_middleware]
        self.cors = CORSMiddleware in classes
        if not self.direct and not self.sockets:
            return None
        routes = ", ".join([f"{method} {path}" for method, path in sorted(self.direct)]
                           + [f"WebSocket {path}" for path in sorted(self.sockets)])
        others = [getattr(c, "__name__", repr(c)) for c in classes if c is not CORSMiddleware]
        if others:
            return (f"RequestContext runs {routes} itself, past Starlette's middleware, and "
                    f"would skip {', '.join(others)} for them (only CORSMiddleware is handled: "
                    f"requests with an Origin header take the full stack). Remove that "
                    f"middleware, or leave those routes out of the direct table.")
        if self.app.exception_handlers != EXCEPTION_HANDLERS:
            return (f"RequestContext runs {routes} itself with the exception handlers of "
                    f"realtime.http.context.EXCEPTION_HANDLERS, but the app has others; "
                    f"register handlers in that table so that both ways in use them.")
        return None

    async def _refuse(self, problem: str, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # Failing the startup (rather than raising) stops uvicorn under lifespan "auto"
            # too, which would otherwise take an exception to mean "no lifespan support".
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.failed", "message": problem})
                return
        raise RuntimeError(problem)

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._checked:
            problem = self._problem()
            if problem is not None:
                await self._refuse(problem, scope, receive, send)
                return
            self._checked = True
        if scope["type"] != "http":
            socket = self.sockets.get(scope["path"]) if scope["type"] == "websocket" else None
            await (self.app if socket is None else socket)(scope, receive, send)
            return
        client_id, origin = _scan_headers(scope["headers"])
        rid = client_id or logs.new_request_id()
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
        return error_response(errors.MethodNotAllowed(_allowed(request)))
    err = errors.RealtimeError(exc.detail)
    err.status = exc.status_code
    return error_response(err)


def _allowed(request: Request) -> str:
    """Every method some route serves at this path: Starlette's own `Allow` names only the
    first route that matched the path, and a path may have a route per method."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches({**request.scope, "method": next(iter(route.methods))})
            if match is Match.FULL:
                methods |= route.methods
    return ", ".join(sorted(methods))


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


def direct_routes(routes: list[BaseRoute], endpoints: tuple[Endpoint, ...]
                   ) -> dict[tuple[str, str], Endpoint]:
    """(method, path) -> endpoint for these endpoints, read off the route table itself."""
    return {(method, route.path): route.endpoint
            for route in routes if isinstance(route, Route) and route.endpoint in endpoints
            for method in route.methods or () if method != "HEAD"}
