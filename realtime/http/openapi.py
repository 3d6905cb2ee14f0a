"""The OpenAPI 3.1 document, generated from the app's route table, each endpoint's declared
`Operation` and the schema's Structs: nothing in it is written by hand twice."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from starlette.routing import BaseRoute, Route

from realtime import __version__
from realtime.schema.jsonschema import REF, TIME_COMPONENT, portable, schema_hook
from realtime.schema.objects import Error
from realtime.schema.operations import Operation, declared
from realtime.schema.types import Id, IdempotencyKey

# Served, but not API operations: the widget page, its files, the WebSocket (/asyncapi.json).
UNDOCUMENTED = frozenset({"/", "/static", "/static/v/manifest.json", "/ws"})

_STATUS_WORDS = {
    400: "INVALID_JSON: the body is not JSON",
    401: "UNAUTHORIZED: a valid bearer token is required",
    403: "FORBIDDEN: this route needs an admin token",
    404: "not found",
    405: "METHOD_NOT_ALLOWED: `Allow` lists the methods of this path",
    409: "conflict",
    410: "HOLD_EXPIRED: the hold expired, was released or was already confirmed",
    413: "PAYLOAD_TOO_LARGE: the body is over 64 KiB",
    422: "VALIDATION_ERROR naming the field",
    429: "RATE_LIMITED: retry after `Retry-After` seconds",
    503: "unavailable",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    405: {"Allow": {"description": "the methods this path serves", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds", "schema": {"type": "integer", "minimum": 1}}},
}




def operations(routes: Iterable[BaseRoute]) -> list[tuple[str, str, Operation]]:
    """(path, method, operation) for every route the document covers; an undeclared endpoint
    is an error, so that no route is served without being documented."""
    found = []
    for route in routes:
        if not isinstance(route, Route) or route.path in UNDOCUMENTED:
            continue
        path = route.path
        op = declared(route.endpoint)
        if op is None:
            raise LookupError(f"{path} has no @operation declaration")
        for method in sorted(route.methods or ()):
            if method != "HEAD":  # served for every GET, as HTTP has it
                found.append((path, method.lower(), op))
    return found


def _error_responses(op: Operation, path: str, auth: bool) -> dict[str, Any]:
    statuses = set(op.errors) | {405}
    if op.body is not None:
        statuses |= {400, 413, 422}
    if op.query is not None or op.idempotency_key:
        statuses.add(422)
    if "{" in path:
        statuses.add(404)
    if op.rate_limited:
        statuses.add(429)
    if op.database:
        statuses.add(503)
    if auth and op.access != "public":
        statuses.add(401)
        if op.access == "admin":
            statuses.add(403)
    out: dict[str, Any] = {}
    for status in sorted(statuses):
        words = _STATUS_WORDS[status]
        if status == 404 and op.not_found:
            words = f"{op.not_found}: unknown id, or an id that is not one"
        response: dict[str, Any] = {
            "description": words,
            "content": {"application/json": {"schema": {"$ref": REF.format(name="Error")}}}}
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        out[str(status)] = response
    return out


def _parameters(op: Operation, path: str, schemas: dict[Any, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    if "{id}" in path:
        params.append({"name": "id", "in": "path", "required": True,
                       "schema": msgspec.json.schema(Id)})
    if op.query is not None:
        component = schemas[op.query]
        for name, schema in component["properties"].items():
            params.append({"name": name, "in": "query",
                           "required": name in component.get("required", ()),
                           "schema": schema})
    if op.idempotency_key:
        params.append({
            "name": "Idempotency-Key", "in": "header", "required": False,
            "description": "A replay with the same key and body returns the first response and "
                           "books nothing more; the same key with another body is 422 "
                           "IDEMPOTENCY_KEY_REUSED. Scoped to the customer, kept 24 hours.",
            "schema": msgspec.json.schema(IdempotencyKey)})
    return params


def _links(op: Operation) -> dict[str, Any]:
    out = {}
    for name, link in op.links.items():
        body: dict[str, Any] = {"operationId": link.operation_id}
        if link.parameters:
            body["parameters"] = link.parameters
        if link.request_body is not None:
            body["requestBody"] = link.request_body
        if link.description:
            body["description"] = link.description
        out[name] = body
    return out


def openapi_document(routes: Iterable[BaseRoute], auth: bool) -> dict[str, Any]:
    ops = operations(routes)
    types = sorted({t for _, _, op in ops for t in (op.body, op.query, op.response) if t is not None}
                   | {Error}, key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(types, schema_hook=schema_hook,
                                                      ref_template=REF)
    inline = {t: components[t.__name__] for t in types}
    paths: dict[str, dict[str, Any]] = {}
    for path, method, op in ops:
        entry: dict[str, Any] = {"operationId": op.id, "summary": op.summary}
        if op.description:
            entry["description"] = op.description
        params = _parameters(op, path, inline)
        if params:
            entry["parameters"] = params
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": refs[types.index(op.body)]}}}
        ok: dict[str, Any] = {"description": op.summary}
        if op.response is not None:
            ok["content"] = {op.media_type: {"schema": refs[types.index(op.response)]}}
        else:  # the metrics text, the documents themselves
            kind = "object" if op.media_type == "application/json" else "string"
            ok["content"] = {op.media_type: {"schema": {"type": kind}}}
        if op.links:
            ok["links"] = _links(op)
        entry["responses"] = {str(op.status): ok, **_error_responses(op, path, auth)}
        if auth and op.access != "public":
            entry["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[method] = entry
    for type_ in types:
        if any(op.query is type_ for _, _, op in ops):
            components.pop(type_.__name__)  # query Structs become parameters, not schemas
    paths = portable(paths)
    components = {**portable(components), **TIME_COMPONENT}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "realtime", "version": __version__,
                 "description": "Real-time availability server for booking systems. The "
                                "WebSocket protocol of /ws is described by /asyncapi.json. "
                                "HEAD is answered for every GET."},
        "paths": paths,
        "components": {"schemas": components},
    }
    if auth:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    return document

