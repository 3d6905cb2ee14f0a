"""The admin routes of webhooks: register, list, delete an endpoint, and read its deliveries.

Registering and deleting are on the audit trail (migration 0006), naming the admin and the
request, as every change of vendors, services and slots is."""

from __future__ import annotations

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from realtime import errors
from realtime.booking.service import audited
from realtime.http.responses import JSONResponse, read_body
from realtime.http.routes import admin, path_id, rate_limit, require_admin
from realtime.schema import decode, webhooks
from realtime.schema.operations import Link, operation
from realtime.webhooks.store import WebhookStore
from realtime.webhooks.targets import Refused, check_address, check_url

_CREATE = decode.decoder(webhooks.CreateWebhook)


def _store(request: Request) -> WebhookStore:
    store: WebhookStore = request.app.state.webhooks
    return store


@operation(id="createWebhook", summary="Register a webhook endpoint (admin)", status=201,
           body=webhooks.CreateWebhook, response=webhooks.CreatedWebhook, access="admin",
           rate_limited=True,
           description="The secret that signs its deliveries is shown only here. 422 naming "
                       "`url` for an endpoint on a private or loopback address (unless "
                       "REALTIME_WEBHOOKS_ALLOW_PRIVATE=1) and naming `vendor_id` for no such "
                       "vendor.",
           links={"Deliveries": Link("webhookDeliveries", {"id": "$response.body#/id"}),
                  "DeleteWebhook": Link("deleteWebhook", {"id": "$response.body#/id"})})
async def create_webhook(request: Request) -> Response:
    await rate_limit(request)
    who = audited(await admin(request))  # the audit row's actor and request id (0006)
    body = await read_body(request, _CREATE)
    check_url(body.url)
    try:
        await check_address(body.url, request.app.state.settings.webhooks_allow_private)
    except Refused as exc:
        raise errors.ValidationError("url", str(exc)) from None
    types = list(webhooks.EVENT_TYPES) if body.events is UNSET else [
        t for t in webhooks.EVENT_TYPES if t in body.events]
    vendor_id = None if body.vendor_id is UNSET else body.vendor_id
    created = await _store(request).create(body.url, types, vendor_id, who)
    request.app.state.dispatcher.endpoints_changed()
    return JSONResponse(created, status_code=201)


@operation(id="listWebhooks", summary="Webhook endpoints, without their secrets (admin)",
           response=webhooks.Webhooks, access="admin")
async def list_webhooks(request: Request) -> Response:
    await require_admin(request)
    return JSONResponse({"webhooks": await _store(request).endpoints()})


@operation(id="deleteWebhook", summary="Delete a webhook endpoint (admin)",
           response=webhooks.DeletedWebhook, not_found="WEBHOOK_NOT_FOUND", access="admin",
           rate_limited=True)
async def delete_webhook(request: Request) -> Response:
    await rate_limit(request)
    who = audited(await admin(request))
    webhook_id = path_id(request, errors.WebhookNotFound)
    await _store(request).delete(webhook_id, who)
    return JSONResponse({"id": webhook_id})


@operation(id="webhookDeliveries", summary="An endpoint's deliveries, newest first (admin)",
           response=webhooks.Deliveries, not_found="WEBHOOK_NOT_FOUND", access="admin")
async def webhook_deliveries(request: Request) -> Response:
    await require_admin(request)
    webhook_id = path_id(request, errors.WebhookNotFound)
    return JSONResponse({"deliveries": await _store(request).deliveries(webhook_id)})


routes = [
    Route("/api/webhooks", create_webhook, methods=["POST"]),
    Route("/api/webhooks", list_webhooks, methods=["GET"]),
    Route("/api/webhooks/{id}", delete_webhook, methods=["DELETE"]),
    Route("/api/webhooks/{id}/deliveries", webhook_deliveries, methods=["GET"]),
]
