"""The AsyncAPI 3.0 document of the WebSocket protocol, generated from realtime/schema/ws.py."""

from __future__ import annotations

import inspect
from typing import Any, get_args

import msgspec

from realtime import __version__
from realtime.schema import ws
from realtime.schema.jsonschema import TIME_COMPONENT, portable, schema_hook

REF = "#/components/schemas/{name}"
BROADCASTS = (ws.AvailabilityUpdated, ws.ConflictDetected, ws.Presence)


def _tag(type_: Any) -> str:
    return str(type_.__struct_config__.tag)


def _discriminators(node: Any) -> Any:
    """OpenAPI's discriminator object as AsyncAPI has it: the property's name alone."""
    if isinstance(node, dict):
        out = {k: _discriminators(v) for k, v in node.items()}
        if isinstance(out.get("discriminator"), dict):
            out["discriminator"] = out["discriminator"]["propertyName"]
        return out
    if isinstance(node, list):
        return [_discriminators(v) for v in node]
    return node


def _message(type_: Any, ref: dict[str, str]) -> dict[str, Any]:
    doc = inspect.getdoc(type_) or ""
    own = doc if type_.__doc__ else ""  # a Struct without a docstring inherits msgspec's
    message: dict[str, Any] = {"name": _tag(type_), "title": _tag(type_),
                               "contentType": "application/json", "payload": ref}
    if own:
        message["summary"] = own.split("\n\n")[0].replace("\n", " ")
    return message


def asyncapi_document() -> dict[str, Any]:
    clients = list(get_args(ws.ClientMessage))
    servers = list(get_args(ws.ServerMessage))
    refs, schemas = msgspec.json.schema_components(clients + servers, schema_hook=schema_hook,
                                                   ref_template=REF)
    schemas = {**_discriminators(portable(schemas)), **TIME_COMPONENT}
    messages: dict[str, Any] = {}
    client_keys: list[str] = []
    server_keys: list[str] = []
    for type_, ref in zip(clients + servers, refs, strict=True):
        key = ("client" if type_ in clients else "server") + "." + _tag(type_)
        messages[key] = _message(type_, ref)
        (client_keys if type_ in clients else server_keys).append(key)

    def refs_to(keys: list[str], channel: str) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{channel}/messages/{key}"} for key in keys]

    def channel_messages(keys: list[str]) -> dict[str, Any]:
        return {key: {"$ref": f"#/components/messages/{key}"} for key in keys}

    broadcast_keys = ["server." + _tag(t) for t in BROADCASTS]
    logical = {
        "description": "A channel of the protocol, joined with `subscribe`; its broadcasts "
                       "arrive on the socket with `channel` naming it.",
        "parameters": {"id": {"description": "a UUID (any case; the server's frames use lower "
                                             "case)"}},
        "messages": channel_messages(broadcast_keys),
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "realtime WebSocket protocol",
            "version": __version__,
            "description": (
                "Live availability over one WebSocket (`/ws`): text frames of one JSON object "
                "each, tagged by `type`. A client message may carry `id` (a string of at most "
                "64 characters; null is not an id) and the reply echoes it. Anything the server "
                "cannot act on gets an `error` frame (BAD_MESSAGE, UNKNOWN_TYPE, "
                "UNKNOWN_CHANNEL, NOT_SUBSCRIBED, UNAUTHORIZED, RATE_LIMITED, "
                "TOO_MANY_SUBSCRIPTIONS) naming the field; book, hold and cancel answer a "
                "well-typed value out of its limits with a `result` (ok false, "
                "VALIDATION_ERROR). Frames over 64 KiB close the socket with 1009, invalid "
                "UTF-8 with 1007. The HTTP API is described by /openapi.json."),
        },
        "defaultContentType": "application/json",
        "channels": {
            "socket": {
                "address": "/ws",
                "title": "The WebSocket",
                "description": "With auth on, `?token=<JWT>` on the URL (booking messages need "
                               "it, reading does not), or an `auth` message later.",
                "messages": channel_messages(client_keys + server_keys),
            },
            "vendor": {**logical, "address": "vendor:{id}",
                       "title": "Every slot of every service of a vendor"},
            "service": {**logical, "address": "service:{id}", "title": "The slots of a service"},
        },
        "operations": {
            "receiveClientMessages": {
                "action": "receive", "channel": {"$ref": "#/channels/socket"},
                "summary": "What a client sends",
                "messages": refs_to(client_keys, "socket")},
            "sendServerMessages": {
                "action": "send", "channel": {"$ref": "#/channels/socket"},
                "summary": "What the server sends: replies (echoing `id`) and broadcasts",
                "messages": refs_to(server_keys, "socket")},
            "sendVendorUpdates": {
                "action": "send", "channel": {"$ref": "#/channels/vendor"},
                "messages": refs_to(broadcast_keys, "vendor")},
            "sendServiceUpdates": {
                "action": "send", "channel": {"$ref": "#/channels/service"},
                "messages": refs_to(broadcast_keys, "service")},
        },
        "components": {"schemas": schemas, "messages": messages},
    }
