"""HTTP routes, exactly as the contract's HTTP table lists them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from realtime import errors, metrics
from realtime.access import Access, Caller, counted
from realtime.booking.demo import demo_vendor_id
from realtime.booking.service import BookingService
from realtime.eventlog.channels import Channel
from realtime.eventlog.store import EventLog
from realtime.http.responses import JSONResponse, read_json
from realtime.http.validation import (
    bool_field,
    int_field,
    parse_id,
    slots_body,
    str_field,
    uuid_field,
    window,
)
from realtime.settings import Settings


def _state(request: Request) -> tuple[Settings, BookingService]:
    return request.app.state.settings, request.app.state.booking


async def caller(request: Request) -> Caller:
    """The verified caller (401 without a valid token when auth is on)."""
    access: Access = request.app.state.access
    return await access.http_caller(request.headers.get("authorization"))


async def require_admin(request: Request) -> None:
    (await caller(request)).require_admin()


async def rate_limit(request: Request) -> None:
    buckets = request.app.state.rate_limits
    if not buckets.enabled:
        return
    key = request.client.host if request.client else "unknown"
    wait = await buckets.take(key)
    if wait > 0:
        metrics.RATE_LIMITED.inc()
        raise errors.RateLimited(wait)


# -- admin ----------------------------------------------------------------------------------

async def create_vendor(request: Request) -> Response:
    await rate_limit(request)
    await require_admin(request)
    body = await read_json(request)
    name = str_field(body, "name")
    assert name is not None
    return JSONResponse(await _state(request)[1].create_vendor(name), status_code=201)


async def create_service(request: Request) -> Response:
    await rate_limit(request)
    await require_admin(request)
    vendor_id = parse_id(request.path_params["id"], errors.VendorNotFound)
    body = await read_json(request)
    name = str_field(body, "name")
    assert name is not None
    exclusive = bool_field(body, "exclusive", False)
    service = await _state(request)[1].create_service(vendor_id, name, exclusive)
    return JSONResponse(service, status_code=201)


async def create_slots(request: Request) -> Response:
    await rate_limit(request)
    await require_admin(request)
    service_id = parse_id(request.path_params["id"], errors.ServiceNotFound)
    body = await read_json(request)
    slots = slots_body(body)
    return JSONResponse(await _state(request)[1].create_slots(service_id, slots), status_code=201)


async def patch_slot(request: Request) -> Response:
    await rate_limit(request)
    await require_admin(request)
    slot_id = parse_id(request.path_params["id"], errors.SlotNotFound)
    body = await read_json(request)
    capacity = int_field(body, "capacity", None, 0, 1_000_000, required=True)
    assert capacity is not None
    slot = await counted("set_capacity", _state(request)[1].set_capacity(slot_id, capacity))
    return JSONResponse(slot)


# -- reads ----------------------------------------------------------------------------------

async def get_vendor(request: Request) -> Response:
    vendor_id = parse_id(request.path_params["id"], errors.VendorNotFound)
    return JSONResponse(await _state(request)[1].get_vendor(vendor_id))


async def get_service(request: Request) -> Response:
    service_id = parse_id(request.path_params["id"], errors.ServiceNotFound)
    return JSONResponse(await _state(request)[1].get_service(service_id))


async def vendor_availability(request: Request) -> Response:
    vendor_id = parse_id(request.path_params["id"], errors.VendorNotFound)
    from_, to = window(request.query_params.get("from"), request.query_params.get("to"))
    events: EventLog = request.app.state.events
    return JSONResponse(await events.availability(Channel("vendor", vendor_id), from_, to))


async def service_availability(request: Request) -> Response:
    service_id = parse_id(request.path_params["id"], errors.ServiceNotFound)
    from_, to = window(request.query_params.get("from"), request.query_params.get("to"))
    events: EventLog = request.app.state.events
    return JSONResponse(await events.availability(Channel("service", service_id), from_, to))


async def demo(request: Request) -> Response:
    vendor_id = await demo_vendor_id(request.app.state.pool)
    if vendor_id is None:
        raise errors.VendorNotFound("no demo vendor: start with --demo or run `realtime seed --demo`")
    return JSONResponse({"vendor_id": vendor_id})


# -- customer -------------------------------------------------------------------------------

def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise errors.ValidationError("Idempotency-Key", "must be 1 to 255 printable characters")
    return key


async def create_booking(request: Request) -> Response:
    await rate_limit(request)
    key = idempotency_key(request)
    body = await read_json(request)
    who = await caller(request)
    slot_id = uuid_field(body, "slot_id")
    hold_id = uuid_field(body, "hold_id", required=False)
    quantity = int_field(body, "quantity", None, 1, 1_000_000)
    claimed = str_field(body, "customer_id", required=False) if who.open else None
    assert slot_id is not None
    result = await counted("book", _state(request)[1].book(
        slot_id, quantity, who.acting(claimed), hold_id=hold_id, idempotency_key=key))
    return JSONResponse(result, status_code=201)


async def get_booking(request: Request) -> Response:
    booking_id = parse_id(request.path_params["id"], errors.BookingNotFound)
    owner = (await caller(request)).acting().owner
    return JSONResponse(await _state(request)[1].get_booking(booking_id, owner))


async def cancel_booking(request: Request) -> Response:
    await rate_limit(request)
    booking_id = parse_id(request.path_params["id"], errors.BookingNotFound)
    owner = (await caller(request)).acting().owner
    return JSONResponse(await counted("cancel", _state(request)[1].cancel(booking_id, owner)))


async def create_hold(request: Request) -> Response:
    await rate_limit(request)
    body = await read_json(request)
    who = await caller(request)
    claimed = str_field(body, "customer_id", required=False) if who.open else None
    slot_id = uuid_field(body, "slot_id")
    quantity = int_field(body, "quantity", 1, 1, 1_000_000)
    ttl = int_field(body, "ttl_seconds", 300, 1, 3600)
    assert slot_id is not None and quantity is not None and ttl is not None
    result = await counted("hold", _state(request)[1].hold(
        slot_id, quantity, ttl, who.acting(claimed).customer_id))
    return JSONResponse(result, status_code=201)


async def release_hold(request: Request) -> Response:
    await rate_limit(request)
    hold_id = parse_id(request.path_params["id"], errors.HoldNotFound)
    owner = (await caller(request)).acting().owner
    result = await counted("release", _state(request)[1].release(hold_id, owner))
    return JSONResponse({"slot": result["slot"]})


routes = [
    Route("/api/vendors", create_vendor, methods=["POST"]),
    Route("/api/vendors/{id}", get_vendor, methods=["GET"]),
    Route("/api/vendors/{id}/services", create_service, methods=["POST"]),
    Route("/api/vendors/{id}/availability", vendor_availability, methods=["GET"]),
    Route("/api/services/{id}", get_service, methods=["GET"]),
    Route("/api/services/{id}/slots", create_slots, methods=["POST"]),
    Route("/api/services/{id}/availability", service_availability, methods=["GET"]),
    Route("/api/slots/{id}", patch_slot, methods=["PATCH"]),
    Route("/api/bookings", create_booking, methods=["POST"]),
    Route("/api/bookings/{id}", get_booking, methods=["GET"]),
    Route("/api/bookings/{id}/cancel", cancel_booking, methods=["POST"]),
    Route("/api/holds", create_hold, methods=["POST"]),
    Route("/api/holds/{id}", release_hold, methods=["DELETE"]),
    Route("/api/demo", demo, methods=["GET"]),
]
