"""/openapi.json and /asyncapi.json: generated from the route table and the schema's Structs,
valid against their specifications, and covering every route the app serves."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from realtime.app import create_app
from realtime.http.openapi import UNDOCUMENTED, openapi_document
from realtime.schema.asyncapi import asyncapi_document
from realtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_SCHEMA = ROOT / "node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json"
IN_CI = os.environ.get("CI") == "true"


def _app(**settings: Any) -> Any:
    # The database is not touched: building the app and its documents needs none.
    return create_app(Settings(database_url="postgresql://unused/none", **settings)).app


def _patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "pattern"] + [
            p for v in node.values() for p in _patterns(v)]
    if isinstance(node, list):
        return [p for v in node for p in _patterns(v)]
    return []


def _served(app: Any) -> set[tuple[str, str]]:
    return {(route.path, method.lower()) for route in app.routes
            if isinstance(route, Route) and route.path not in UNDOCUMENTED
            for method in route.methods or () if method != "HEAD"}


def test_openapi_covers_exactly_the_route_table() -> None:
    """Every route and method the app serves (but /, /static, /ws) is in the document, and
    the document has nothing the app does not serve; it is valid OpenAPI 3.1."""
    app = _app()
    document = openapi_document(app.routes, auth=False)
    documented = {(path, method) for path, methods in document["paths"].items()
                  for method in methods}
    assert documented == _served(app)
    assert ("/api/demo", "get") in documented and ("/asyncapi.json", "get") in documented
    assert document["openapi"] == "3.1.0"
    validate(document)
    ids = [op["operationId"] for methods in document["paths"].values() for op in methods.values()]
    assert len(ids) == len(set(ids))
    # JSON Schema's regex dialect is ECMA-262's: none of Python's `\Z` (what msgspec checks).
    patterns = _patterns(document) + _patterns(asyncapi_document())
    assert len(patterns) > 10 and all(p.startswith("^") and p.endswith("$") for p in patterns)


def test_openapi_states_the_limits_headers_and_links() -> None:
    """Limits come from the Structs; errors carry the Error schema and their headers (Allow,
    Retry-After; WWW-Authenticate and bearer security with auth on); links chain slots to
    bookings, holds, cancels and releases; createBooking takes an Idempotency-Key."""
    open_doc = openapi_document(_app().routes, auth=False)
    doc = openapi_document(_app(jwt_secret="s" * 32).routes, auth=True)
    schemas = doc["components"]["schemas"]
    assert schemas["CreateBooking"]["properties"]["quantity"] == {
        "type": "integer", "minimum": 1, "maximum": 1000000}
    assert schemas["CreateVendor"]["properties"]["name"]["pattern"].startswith("^")
    assert "\\x00" in schemas["CreateVendor"]["properties"]["name"]["pattern"]
    assert schemas["NewSlot"]["properties"]["starts_at"] == {"$ref": "#/components/schemas/Time"}
    assert schemas["Time"]["format"] == "date-time" and "1970" in schemas["Time"]["description"]
    booking = doc["paths"]["/api/bookings"]["post"]
    assert [p["name"] for p in booking["parameters"]] == ["Idempotency-Key"]
    assert booking["security"] == [{"bearer": []}]
    assert "security" not in open_doc["paths"]["/api/bookings"]["post"]
    responses = booking["responses"]
    assert responses["401"]["headers"]["WWW-Authenticate"]
    assert responses["405"]["headers"]["Allow"] and responses["429"]["headers"]["Retry-After"]
    assert responses["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert "403" in doc["paths"]["/api/vendors"]["post"]["responses"]
    availability = doc["paths"]["/api/services/{id}/availability"]["get"]["parameters"]
    assert [(p["name"], p["in"]) for p in availability] == [
        ("id", "path"), ("from", "query"), ("to", "query")]

    def links(path: str, method: str) -> dict[str, Any]:
        ok = next(r for s, r in doc["paths"][path][method]["responses"].items() if s < "300")
        return {name: (link["operationId"], link.get("parameters"), link.get("requestBody"))
                for name, link in ok["links"].items()}

    assert links("/api/services/{id}/slots", "post")["BookSlot"] == (
        "createBooking", None, {"slot_id": "$response.body#/slots/0/id"})
    assert links("/api/bookings", "post")["CancelBooking"] == (
        "cancelBooking", {"id": "$response.body#/booking/id"}, None)
    assert links("/api/bookings", "post")["GetBooking"][0] == "getBooking"
    hold_links = links("/api/holds", "post")
    assert hold_links["ReleaseHold"] == ("releaseHold", {"id": "$response.body#/hold/id"}, None)
    assert hold_links["ConfirmHold"][0] == "createBooking"
    assert hold_links["ConfirmHold"][2]["hold_id"] == "$response.body#/hold/id"


def test_asyncapi_is_valid_and_covers_every_message() -> None:
    """/asyncapi.json validates against AsyncAPI 3.0's own JSON Schema and names every client
    and server message type of the protocol with its payload schema."""
    if not ASYNCAPI_SCHEMA.exists():
        message = f"{ASYNCAPI_SCHEMA} is missing: run scripts/install-asyncapi-schema.sh"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    import jsonschema

    document = asyncapi_document()
    spec = json.loads(ASYNCAPI_SCHEMA.read_text())
    errors = [e.message[:200] for e in jsonschema.Draft7Validator(spec).iter_errors(document)]
    assert errors == []
    messages = document["components"]["messages"]
    assert {m["name"] for k, m in messages.items() if k.startswith("client.")} == {
        "subscribe", "unsubscribe", "book", "hold", "cancel", "ping", "auth"}
    assert {m["name"] for k, m in messages.items() if k.startswith("server.")} == {
        "subscribed", "unsubscribed", "availability:updated", "conflict:detected", "presence",
        "result", "pong", "error"}
    schemas = document["components"]["schemas"]
    assert schemas["Book"]["properties"]["id"]["maxLength"] == 64
    assert schemas["Book"]["properties"]["slot_id"]["format"] == "uuid"
    assert "^(?:vendor|service):" in schemas["Subscribe"]["properties"]["channel"]["pattern"]
    assert document["channels"]["socket"]["address"] == "/ws"
