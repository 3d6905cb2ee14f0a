"""The admin routes of webhooks: register, list, delete an endpoint, and read its deliveries."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from realtime import errors
from realtime.http.responses import JSONResponse, read_json
from realtime.http.routes import rate_limit, require_admin
from realtime.http.validation import parse_id, uuid_field
from realtime.webhooks.events import ALL_TYPES
from realtime.webhooks.store import WebhookStore
from realtime.webhooks.targets import Refused, check_address, check_url


def _store(request: Request) -> WebhookStore:
    store: WebhookStore = request.app.state.webhooks
    return store


def _types(body: dict[str, Any]) -> list[str]:
    value = body.get("events")
    if value is None:
        return list(ALL_TYPES)
    if (not isinstance(value, list) or not value or len(value) > len(ALL_TYPES)
            or not all(isinstance(t, str) and t in ALL_TYPES for t in value)):
        raise errors.ValidationError("events", "must be a non-empty list of: " + ", ".join(ALL_TYPES))
    return sorted(set(value), key=ALL_TYPES.index)


async def create_webhook(request: Request) -> Response:
    await rate_limit(request)
    await require_admin(request)
    body = await read_json(request)
    url = body.get("url")
    if not isinstance(url, str):
        raise errors.ValidationError("url", "is required: an http or https URL")
    check_url(url)
    try:
        await check_address(url, request.app.state.settings.webhooks_allow_private)
    except Refused as exc:
        raise errors.ValidationError("url", str(exc)) from None
    vendor_id = uuid_field(body, "vendor_id", required=False)
    created = await _store(request).create(url, _types(body), vendor_id)
    return JSONResponse(created, status_code=201)


async def list_webhooks(request: Request) -> Response:
    await require_admin(request)
    return JSONResponse({"webhooks": await _store(request).endpoints()})


async def delete_webhook(request: Request) -> Response:
    await rate_limit(request)
    await require_admin(request)
    webhook_id = parse_id(request.path_params["id"], errors.WebhookNotFound)
    await _store(request).delete(webhook_id)
    return JSONResponse({"id": webhook_id})


async def webhook_deliveries(request: Request) -> Response:
    await require_admin(request)
    webhook_id = parse_id(request.path_params["id"], errors.WebhookNotFound)
    return JSONResponse({"deliveries": await _store(request).deliveries(webhook_id)})


routes = [
    Route("/api/webhooks", create_webhook, methods=["POST"]),
    Route("/api/webhooks", list_webhooks, methods=["GET"]),
    Route("/api/webhooks/{id}", delete_webhook, methods=["DELETE"]),
    Route("/api/webhooks/{id}/deliveries", webhook_deliveries, methods=["GET"]),
]
