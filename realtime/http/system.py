"""The server's own routes: liveness, readiness, metrics, the OpenAPI and AsyncAPI documents
(the demo page and /static are assets.py)."""

from __future__ import annotations

import asyncio

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response

from realtime import errors
from realtime.http.openapi import openapi_document
from realtime.http.responses import JSONResponse, error_response
from realtime.schema import http
from realtime.schema.asyncapi import asyncapi_document
from realtime.schema.operations import operation


@operation(id="healthz", summary="Liveness: 200 while the process runs", response=http.Status,
           database=False)
async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def conditions(state: State) -> tuple[dict[str, str], dict[str, str]]:
    """(down, degraded) of this process, but for the database's answer: read from memory, so
    that a worker can publish them every second (realtime/workers.py)."""
    down: dict[str, str] = {}
    degraded: dict[str, str] = {}
    channels = state.channels
    if channels is not None and (reason := channels.ready()) is not None:
        down["listener"] = reason
    jwks_down, jwks_degraded = state.access.ready()
    if jwks_down:
        down["jwks"] = jwks_down
    if jwks_degraded:
        degraded["jwks"] = jwks_degraded
    if (redis := state.shared.degraded()) is not None:
        degraded["redis"] = redis
    replica = channels.listener.reads if channels is not None else None
    if replica is not None and not replica.usable:
        degraded["replica"] = "the read replica is not used now (unreachable or behind): " \
                              "reads go to the primary"
    return down, degraded


@operation(id="readyz", summary="Readiness: the database answers and the listener is connected",
           response=http.Status, errors=(503,),
           description="503 NOT_READY with `down` naming what is down.")
async def readyz(request: Request) -> Response:
    """503 naming what is down (the server cannot serve); 200 otherwise, naming in
    `degraded` what works in a lesser way (an accelerator or a provider is away). Under
    `--workers N`, what another worker published as down or degraded counts too (naming that
    worker): the balancer's next connection may reach it."""
    down: dict[str, str] = {}
    try:
        await asyncio.wait_for(request.app.state.pool.fetchval("SELECT 1"), 2)
    except Exception as exc:
        down["database"] = f"unreachable ({exc.__class__.__name__})"
    listed, degraded = conditions(request.app.state)
    down.update(listed)
    workers = getattr(request.app.state, "workers", None)
    if workers is not None:
        down, degraded = workers.conditions((down, degraded))
    if down:
        err = errors.NotReady("not ready: " + ", ".join(f"{k} {v}" for k, v in down.items()),
                              down=down)
        return error_response(err)
    body: dict[str, object] = {"status": "ready"}
    if degraded:
        body["degraded"] = degraded
    return JSONResponse(body)


@operation(id="metrics", summary="Prometheus metrics", media_type="text/plain", database=False)
async def metrics_endpoint(request: Request) -> Response:
    """Under `--workers N`, every live worker's series, labelled `worker` (realtime/workers.py);
    in one process, its own, unlabelled."""
    workers = getattr(request.app.state, "workers", None)
    body = generate_latest() if workers is None else workers.exposition()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class _Document(Response):
    media_type = "application/json"


@operation(id="openapi", summary="This OpenAPI document", media_type="application/json",
           database=False)
async def openapi(request: Request) -> Response:
    state = request.app.state
    if getattr(state, "openapi", None) is None:
        document = openapi_document(request.app.routes, state.settings.auth_enabled)
        state.openapi = orjson.dumps(document)
    return _Document(state.openapi)


@operation(id="asyncapi", summary="The AsyncAPI 3.0 document of the WebSocket protocol (/ws)",
           media_type="application/json", database=False)
async def asyncapi(request: Request) -> Response:
    state = request.app.state
    if getattr(state, "asyncapi", None) is None:
        state.asyncapi = orjson.dumps(asyncapi_document())
    return _Document(state.asyncapi)
