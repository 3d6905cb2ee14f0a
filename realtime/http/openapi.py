"""The OpenAPI 3 document of every HTTP route, for generated clients and schema-driven fuzzers."""

from __future__ import annotations

from functools import cache
from typing import Any

from realtime import __version__

ID = {"type": "string", "format": "uuid"}
TIME = {"type": "string", "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: list[str] | None = None, extra: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props,
                              "additionalProperties": extra}
    if required:
        schema["required"] = required
    return schema


SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({"code": {"type": "string"}, "message": {"type": "string"}},
                                 ["code", "message"], extra=True)}, ["error"]),
    "Vendor": _obj({"id": ID, "name": {"type": "string"}}, ["id", "name"]),
    "Service": _obj({"id": ID, "vendor_id": ID, "name": {"type": "string"},
                     "exclusive": {"type": "boolean"}}, ["id", "vendor_id", "name", "exclusive"]),
    "VendorWithServices": _obj({"id": ID, "name": {"type": "string"},
                                "services": {"type": "array", "items": _ref("Service")}},
                               ["id", "name", "services"]),
    "Slot": _obj({"id": ID, "service_id": ID, "vendor_id": ID, "starts_at": TIME, "ends_at": TIME,
                  "capacity": {"type": "integer", "minimum": 0},
                  "booked": {"type": "integer", "minimum": 0},
                  "held": {"type": "integer", "minimum": 0},
                  "available": {"type": "integer", "minimum": 0},
                  "version": {"type": "integer", "minimum": 1}},
                 ["id", "service_id", "vendor_id", "starts_at", "ends_at", "capacity", "booked",
                  "held", "available", "version"]),
    "Booking": _obj({"id": ID, "slot_id": ID, "customer_id": {"type": ["string", "null"]},
                     "quantity": {"type": "integer", "minimum": 1},
                     "status": {"type": "string", "enum": ["confirmed", "cancelled"]},
                     "created_at": TIME},
                    ["id", "slot_id", "customer_id", "quantity", "status", "created_at"]),
    "Hold": _obj({"id": ID, "slot_id": ID, "quantity": {"type": "integer", "minimum": 1},
                  "expires_at": TIME}, ["id", "slot_id", "quantity", "expires_at"]),
    "Availability": _obj({"channel": {"type": "string"}, "cursor": {"type": "string"},
                          "slots": {"type": "array", "items": _ref("Slot")}},
                         ["channel", "cursor", "slots"]),
    "BookingWithSlot": _obj({"booking": _ref("Booking"), "slot": _ref("Slot")},
                            ["booking", "slot"]),
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _ok(status: int, schema: dict[str, Any] | None, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return {str(status): response}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {400: "malformed JSON (INVALID_JSON)", 401: "UNAUTHORIZED", 403: "FORBIDDEN",
             404: "not found", 409: "conflict", 410: "HOLD_EXPIRED",
             413: "PAYLOAD_TOO_LARGE", 422: "VALIDATION_ERROR", 429: "RATE_LIMITED",
             503: "DATABASE_UNAVAILABLE"}
    return {str(s): {"description": words[s],
                     "content": {"application/json": {"schema": _ref("Error")}}}
            for s in statuses}


def _path_id(name: str = "id") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


WINDOW = [{"name": "from", "in": "query", "required": False, "schema": TIME},
          {"name": "to", "in": "query", "required": False, "schema": TIME}]
WRITE_ERRORS = (400, 401, 403, 413, 422, 429, 503)


@cache
def openapi_document() -> dict[str, Any]:
    quantity = {"type": "integer", "minimum": 1, "maximum": 1000000, "default": 1}
    paths: dict[str, Any] = {
        "/api/vendors": {"post": {
            "summary": "Create a vendor (admin)", "operationId": "createVendor",
            "requestBody": _body(_obj({"name": {"type": "string", "minLength": 1,
                                                "maxLength": 200}}, ["name"], extra=True)),
            "responses": {**_ok(201, _ref("Vendor"), "created"), **_errors(*WRITE_ERRORS)}}},
        "/api/vendors/{id}": {"get": {
            "summary": "A vendor and its services", "operationId": "getVendor",
            "parameters": [_path_id()],
            "responses": {**_ok(200, _ref("VendorWithServices"), "the vendor"),
                          **_errors(404, 503)}}},
        "/api/vendors/{id}/services": {"post": {
            "summary": "Create a service (admin)", "operationId": "createService",
            "parameters": [_path_id()],
            "requestBody": _body(_obj({"name": {"type": "string", "minLength": 1, "maxLength": 200},
                                       "exclusive": {"type": "boolean", "default": False}},
                                      ["name"], extra=True)),
            "responses": {**_ok(201, _ref("Service"), "created"),
                          **_errors(404, *WRITE_ERRORS)}}},
        "/api/vendors/{id}/availability": {"get": {
            "summary": "Slots of every service of a vendor, with a cursor to subscribe from",
            "operationId": "vendorAvailability", "parameters": [_path_id(), *WINDOW],
            "responses": {**_ok(200, _ref("Availability"), "slots"), **_errors(404, 422, 503)}}},
        "/api/services/{id}": {"get": {
            "summary": "A service", "operationId": "getService", "parameters": [_path_id()],
            "responses": {**_ok(200, _ref("Service"), "the service"), **_errors(404, 503)}}},
        "/api/services/{id}/slots": {"post": {
            "summary": "Create slots (admin)", "operationId": "createSlots",
            "parameters": [_path_id()],
            "requestBody": _body(_obj({"slots": {
                "type": "array", "minItems": 1, "maxItems": 1000,
                "items": _obj({"starts_at": TIME, "ends_at": TIME,
                               "capacity": {"type": "integer", "minimum": 1,
                                            "maximum": 1000000}},
                              ["starts_at", "ends_at", "capacity"], extra=True)}},
                ["slots"], extra=True)),
            "responses": {**_ok(201, _obj({"slots": {"type": "array", "items": _ref("Slot")}},
                                          ["slots"]), "created"),
                          **_errors(404, *WRITE_ERRORS)}}},
        "/api/services/{id}/availability": {"get": {
            "summary": "Slots of a service, with a cursor to subscribe from",
            "operationId": "serviceAvailability", "parameters": [_path_id(), *WINDOW],
            "responses": {**_ok(200, _ref("Availability"), "slots"), **_errors(404, 422, 503)}}},
        "/api/slots/{id}": {"patch": {
            "summary": "Change a slot's capacity (admin)", "operationId": "patchSlot",
            "parameters": [_path_id()],
            "requestBody": _body(_obj({"capacity": {"type": "integer", "minimum": 0,
                                                    "maximum": 1000000}},
                                      ["capacity"], extra=True)),
            "responses": {**_ok(200, _ref("Slot"), "the slot"),
                          **_errors(404, 409, *WRITE_ERRORS)}}},
        "/api/bookings": {"post": {
            "summary": "Book units of a slot, or confirm a hold", "operationId": "createBooking",
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255}}],
            "requestBody": _body(_obj({"slot_id": ID, "quantity": quantity, "hold_id": ID,
                                       "customer_id": {"type": "string", "minLength": 1,
                                                       "maxLength": 200}},
                                      ["slot_id"], extra=True)),
            "responses": {**_ok(201, _ref("BookingWithSlot"), "booked"),
                          **_errors(404, 409, 410, *WRITE_ERRORS)}}},
        "/api/bookings/{id}": {"get": {
            "summary": "A booking and its slot", "operationId": "getBooking",
            "parameters": [_path_id()],
            "responses": {**_ok(200, _ref("BookingWithSlot"), "the booking"),
                          **_errors(401, 404, 503)}}},
        "/api/bookings/{id}/cancel": {"post": {
            "summary": "Cancel a booking (again: same 200, nothing changes)",
            "operationId": "cancelBooking", "parameters": [_path_id()],
            "responses": {**_ok(200, _ref("BookingWithSlot"), "cancelled"),
                          **_errors(401, 404, 429, 503)}}},
        "/api/holds": {"post": {
            "summary": "Hold units of a slot for a while", "operationId": "createHold",
            "requestBody": _body(_obj({"slot_id": ID, "quantity": quantity,
                                       "ttl_seconds": {"type": "integer", "minimum": 1,
                                                       "maximum": 3600, "default": 300},
                                       "customer_id": {"type": "string", "minLength": 1,
                                                       "maxLength": 200}},
                                      ["slot_id"], extra=True)),
            "responses": {**_ok(201, _obj({"hold": _ref("Hold"), "slot": _ref("Slot")},
                                          ["hold", "slot"]), "held"),
                          **_errors(404, 409, *WRITE_ERRORS)}}},
        "/api/holds/{id}": {"delete": {
            "summary": "Release a hold", "operationId": "releaseHold",
            "parameters": [_path_id()],
            "responses": {**_ok(200, _obj({"slot": _ref("Slot")}, ["slot"]), "released"),
                          **_errors(401, 404, 429, 503)}}},
        "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz",
                             "responses": _ok(200, _obj({"status": {"type": "string"}}), "alive")}},
        "/readyz": {"get": {"summary": "Readiness: database and listener",
                            "operationId": "readyz",
                            "responses": {**_ok(200, _obj({"status": {"type": "string"}}), "ready"),
                                          **_errors(503)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
                             "responses": {"200": {"description": "text format",
                                                   "content": {"text/plain": {"schema": {
                                                       "type": "string"}}}}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "realtime", "version": __version__,
                 "description": "Real-time availability server for booking systems."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
    }
