"""HTTP routes, exactly as the contract's HTTP table lists them.

Each endpoint declares its operation (`@operation`: body, query, responses, links) and decodes
its input with the same Structs (realtime/schema/http.py), so the OpenAPI document, the
validation and its error messages cannot drift apart.
"""

from __future__ import annotations

import re

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from realtime import errors, logs, metrics
from realtime.access import Access, Acting, Caller, counted
from realtime.auth import bearer
from realtime.booking.demo import demo_vendor_id
from realtime.booking.service import BookingService
from realtime.eventlog.store import EventLog
from realtime.http.responses import JSONResponse, read_body, read_query
from realtime.schema import decode, http
from realtime.schema.channels import Channel, canonical_id
from realtime.schema.operations import Link, operation
from realtime.schema.types import IDEMPOTENCY_KEY_PATTERN, python_pattern
from realtime.settings import Settings


def _state(request: Request) -> tuple[Settings, BookingService]:
    return request.app.state.settings, request.app.state.booking


async def caller(request: Request) -> Caller:
    """The verified caller (401 without a valid token when auth is on)."""
    access: Access = request.app.state.access
    return await access.http_caller(request.headers.get("authorization"))


async def require_admin(request: Request) -> None:
    (await caller(request)).require_admin()


async def admin(request: Request) -> Acting:
    """The admin making this request, as the audit trail names it (403 for anyone else)."""
    who = await caller(request)
    who.require_admin()
    return acting(who)


def acting(who: Caller, claimed_customer_id: str | None = None) -> Acting:
    """What `who` runs as in this request, with the request's id for the audit trail."""
    return who.acting(claimed_customer_id, logs.request_id.get())


async def rate_limit(request: Request) -> None:
    buckets = request.app.state.rate_limits
    if not buckets.enabled:
        return
    key = request.client.host if request.client else "unknown"
    wait = await buckets.take(key)
    if wait > 0:
        metrics.RATE_LIMITED.inc()
        raise errors.RateLimited(wait)


def path_id(request: Request, not_found: type[errors.NotFound]) -> str:
    """A path id that is not a UUID cannot name anything: 404, never a 500."""
    try:
        return canonical_id(request.path_params["id"])
    except ValueError:
        raise not_found() from None


_IDEMPOTENCY_KEY = re.compile(python_pattern(IDEMPOTENCY_KEY_PATTERN))


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise errors.ValidationError(
            "Idempotency-Key", "must be 1 to 255 printable ASCII characters, not starting or "
                               "ending with a space")
    return key


# One decoder per body type, built once.
_CREATE_VENDOR = decode.decoder(http.CreateVendor)
_CREATE_SERVICE = decode.decoder(http.CreateService)
_CREATE_SLOTS = decode.decoder(http.CreateSlots)
_PATCH_SLOT = decode.decoder(http.PatchSlot)
_CREATE_BOOKING = decode.decoder(http.CreateBooking)
_CREATE_HOLD = decode.decoder(http.CreateHold)

_SLOT_0 = "$response.body#/slots/0/id"

# -- admin ----------------------------------------------------------------------------------


@operation(id="createVendor", summary="Create a vendor (admin)", status=201,
           body=http.CreateVendor, response=http.Vendor, access="admin", rate_limited=True,
           links={"GetVendor": Link("getVendor", {"id": "$response.body#/id"}),
                  "CreateService": Link("createService", {"id": "$response.body#/id"}),
                  "VendorAvailability": Link("vendorAvailability", {"id": "$response.body#/id"})})
async def create_vendor(request: Request) -> Response:
    await rate_limit(request)
    who = await admin(request)
    body = await read_body(request, _CREATE_VENDOR)
    return JSONResponse(await _state(request)[1].create_vendor(body.name, who), status_code=201)


@operation(id="createService", summary="Create a service of a vendor (admin)", status=201,
           body=http.CreateService, response=http.Service, not_found="VENDOR_NOT_FOUND",
           access="admin", rate_limited=True,
           links={"GetService": Link("getService", {"id": "$response.body#/id"}),
                  "CreateSlots": Link("createSlots", {"id": "$response.body#/id"}),
                  "ServiceAvailability": Link("serviceAvailability",
                                              {"id": "$response.body#/id"})})
async def create_service(request: Request) -> Response:
    await rate_limit(request)
    who = await admin(request)
    vendor_id = path_id(request, errors.VendorNotFound)
    body = await read_body(request, _CREATE_SERVICE)
    service = await _state(request)[1].create_service(vendor_id, body.name, body.exclusive, who)
    return JSONResponse(service, status_code=201)


@operation(id="createSlots", summary="Create slots of a service (admin)", status=201,
           body=http.CreateSlots, response=http.Slots, not_found="SERVICE_NOT_FOUND",
           access="admin", rate_limited=True,
           links={"BookSlot": Link("createBooking", request_body={"slot_id": _SLOT_0}),
                  "HoldSlot": Link("createHold", request_body={"slot_id": _SLOT_0}),
                  "PatchSlot": Link("patchSlot", {"id": _SLOT_0})})
async def create_slots(request: Request) -> Response:
    await rate_limit(request)
    who = await admin(request)
    service_id = path_id(request, errors.ServiceNotFound)
    body = await read_body(request, _CREATE_SLOTS)
    slots = [{"starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat(),
              "capacity": s.capacity} for s in body.slots]
    return JSONResponse(await _state(request)[1].create_slots(service_id, slots, who),
                        status_code=201)


@operation(id="patchSlot", summary="Change a slot's capacity (admin)", body=http.PatchSlot,
           response=http.Slot, not_found="SLOT_NOT_FOUND", errors=(409,), access="admin",
           rate_limited=True,
           description="409 CAPACITY_BELOW_USAGE when the capacity would fall below booked + held.")
async def patch_slot(request: Request) -> Response:
    await rate_limit(request)
    who = await admin(request)
    slot_id = path_id(request, errors.SlotNotFound)
    body = await read_body(request, _PATCH_SLOT)
    slot = await counted("set_capacity",
                         _state(request)[1].set_capacity(slot_id, body.capacity, who))
    return JSONResponse(slot)


# -- reads ----------------------------------------------------------------------------------


@operation(id="getVendor", summary="A vendor and its services", response=http.VendorWithServices,
           not_found="VENDOR_NOT_FOUND")
async def get_vendor(request: Request) -> Response:
    vendor_id = path_id(request, errors.VendorNotFound)
    return JSONResponse(await _state(request)[1].get_vendor(vendor_id))


@operation(id="getService", summary="A service", response=http.Service,
           not_found="SERVICE_NOT_FOUND")
async def get_service(request: Request) -> Response:
    service_id = path_id(request, errors.ServiceNotFound)
    return JSONResponse(await _state(request)[1].get_service(service_id))


_AVAILABILITY = ("Without from/to every slot of the channel (at most 10,000, by start time); "
                 "with them, the slots overlapping [from, to). The cursor can be passed as "
                 "`since` when subscribing on /ws.")


async def _availability(request: Request, channel: Channel) -> Response:
    window = read_query(request.query_params, http.Window)
    events: EventLog = request.app.state.events
    from_ = None if window.from_ is UNSET else window.from_
    to = None if window.to is UNSET else window.to
    return JSONResponse(await events.availability(channel, from_, to))


@operation(id="vendorAvailability", summary="Slots of every service of a vendor, with a cursor",
           query=http.Window, response=http.Availability, not_found="VENDOR_NOT_FOUND",
           description=_AVAILABILITY)
async def vendor_availability(request: Request) -> Response:
    return await _availability(request, Channel("vendor", path_id(request, errors.VendorNotFound)))


@operation(id="serviceAvailability", summary="Slots of a service, with a cursor",
           query=http.Window, response=http.Availability, not_found="SERVICE_NOT_FOUND",
           description=_AVAILABILITY)
async def service_availability(request: Request) -> Response:
    return await _availability(request,
                               Channel("service", path_id(request, errors.ServiceNotFound)))


@operation(id="getDemo", summary="The demo vendor (what the widget shows without ?service=)",
           response=http.Demo, errors=(404,),
           description="404 VENDOR_NOT_FOUND until the server was started with --demo or "
                       "`realtime seed --demo` ran.",
           links={"GetVendor": Link("getVendor", {"id": "$response.body#/vendor_id"})})
async def demo(request: Request) -> Response:
    vendor_id = await demo_vendor_id(request.app.state.pool)
    if vendor_id is None:
        raise errors.VendorNotFound("no demo vendor: start with --demo or run `realtime seed --demo`")
    return JSONResponse({"vendor_id": vendor_id})


@operation(id="getMe", summary="Whether booking needs a token, and whose token this is",
           response=http.Me, errors=(401,), database=False,
           description="Needs no token, so a page can ask before it has one: `auth` says whether "
                       "booking, holding and cancelling need one; `customer_id` is the sub of the "
                       "token sent (null without one). A token that is sent but invalid or "
                       "expired is 401 UNAUTHORIZED, as on every route.")
async def me(request: Request) -> Response:
    access: Access = request.app.state.access
    token = bearer(request.headers.get("authorization")) if access.enabled else None
    sub = (await access.verify(token)).sub if token is not None else None
    return JSONResponse({"auth": access.enabled, "customer_id": sub})


# -- customer -------------------------------------------------------------------------------


@operation(id="createBooking", summary="Book units of a slot, or confirm a hold", status=201,
           body=http.CreateBooking, response=http.BookingWithSlot, errors=(404, 409, 410),
           access="customer", rate_limited=True, idempotency_key=True,
           description="404 SLOT_NOT_FOUND or HOLD_NOT_FOUND; 409 BOOKING_CONFLICT with `slot` "
                       "and `alternatives`; 410 HOLD_EXPIRED; 422 VALIDATION_ERROR or "
                       "IDEMPOTENCY_KEY_REUSED.",
           links={"GetBooking": Link("getBooking", {"id": "$response.body#/booking/id"}),
                  "CancelBooking": Link("cancelBooking", {"id": "$response.body#/booking/id"})})
async def create_booking(request: Request) -> Response:
    await rate_limit(request)
    who = await caller(request)
    key = idempotency_key(request)
    body = await read_body(request, _CREATE_BOOKING)
    claimed = body.customer_id if who.open and body.customer_id is not UNSET else None
    result = await counted("book", _state(request)[1].book(
        body.slot_id, None if body.quantity is UNSET else body.quantity, acting(who, claimed),
        hold_id=None if body.hold_id is UNSET else body.hold_id, idempotency_key=key))
    return JSONResponse(result, status_code=201)


@operation(id="getBooking", summary="A booking and its slot", response=http.BookingWithSlot,
           not_found="BOOKING_NOT_FOUND", access="customer")
async def get_booking(request: Request) -> Response:
    booking_id = path_id(request, errors.BookingNotFound)
    owner = (await caller(request)).acting().owner
    return JSONResponse(await _state(request)[1].get_booking(booking_id, owner))


@operation(id="cancelBooking", summary="Cancel a booking (again: the same 200, nothing changes)",
           response=http.BookingWithSlot, not_found="BOOKING_NOT_FOUND", access="customer",
           rate_limited=True)
async def cancel_booking(request: Request) -> Response:
    await rate_limit(request)
    booking_id = path_id(request, errors.BookingNotFound)
    who = acting(await caller(request))
    return JSONResponse(await counted("cancel", _state(request)[1].cancel(booking_id, who)))


@operation(id="createHold", summary="Hold units of a slot for a while", status=201,
           body=http.CreateHold, response=http.HoldWithSlot, errors=(404, 409),
           access="customer", rate_limited=True,
           description="404 SLOT_NOT_FOUND; 409 BOOKING_CONFLICT with `slot` and `alternatives`.",
           links={"ReleaseHold": Link("releaseHold", {"id": "$response.body#/hold/id"}),
                  "ConfirmHold": Link("createBooking", request_body={
                      "slot_id": "$response.body#/hold/slot_id",
                      "hold_id": "$response.body#/hold/id",
                      "quantity": "$response.body#/hold/quantity"})})
async def create_hold(request: Request) -> Response:
    await rate_limit(request)
    who = await caller(request)
    body = await read_body(request, _CREATE_HOLD)
    claimed = body.customer_id if who.open and body.customer_id is not UNSET else None
    result = await counted("hold", _state(request)[1].hold(
        body.slot_id, body.quantity, body.ttl_seconds, acting(who, claimed)))
    return JSONResponse(result, status_code=201)


@operation(id="releaseHold", summary="Release a hold (again: the same 200, nothing changes)",
           response=http.SlotOnly, not_found="HOLD_NOT_FOUND", access="customer",
           rate_limited=True)
async def release_hold(request: Request) -> Response:
    await rate_limit(request)
    hold_id = path_id(request, errors.HoldNotFound)
    who = acting(await caller(request))
    result = await counted("release", _state(request)[1].release(hold_id, who))
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
    Route("/api/me", me, methods=["GET"]),
]
