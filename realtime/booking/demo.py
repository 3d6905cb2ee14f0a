"""Demo data: one vendor with a service of each kind and a week of slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from realtime.booking.service import BookingService
from realtime.db.errors import retrying
from realtime.db.interface import ConnectionPool

DEMO_VENDOR_NAME = "Realtime Demo Co."


def _week_of_slots(start: datetime, hours: range, length: timedelta, capacity: int,
                   days: int = 7) -> list[dict[str, Any]]:
    slots = []
    for day in range(days):
        base = start + timedelta(days=day)
        for hour in hours:
            starts = base.replace(hour=hour)
            slots.append({"starts_at": starts.isoformat(), "ends_at": (starts + length).isoformat(),
                          "capacity": capacity})
    return slots


async def demo_vendor_id(pool: ConnectionPool) -> str | None:
    """The demo vendor's id, or None when there is none."""
    return await retrying(lambda: pool.fetchval(
        "SELECT id::text FROM rt_vendors WHERE name = $1 ORDER BY created_at LIMIT 1",
        DEMO_VENDOR_NAME))


async def seed_demo(booking: BookingService, echo=print) -> str:
    """Creates the demo vendor unless one exists; returns its id."""
    existing = await demo_vendor_id(booking.pool)
    if existing:
        echo(f"demo vendor already present: {existing}")
        return existing
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    vendor = await booking.create_vendor(DEMO_VENDOR_NAME)
    plan: list[tuple[str, bool, list[dict[str, Any]]]] = [
        ("Haircut with Sam", False,
         _week_of_slots(today, range(9, 17), timedelta(minutes=45), 1)),
        ("Sunrise yoga class", False,
         _week_of_slots(today, range(7, 9), timedelta(hours=1), 12)),
        ("Vintage convertible", True,
         _week_of_slots(today, range(9, 10), timedelta(days=1), 1)
         + _week_of_slots(today, range(9, 10), timedelta(days=3), 1, days=5)),
    ]
    for i, (name, exclusive, slots) in enumerate(plan, 1):
        service = await booking.create_service(vendor["id"], name, exclusive)
        await booking.create_slots(service["id"], slots)
        echo(f"[{i}/{len(plan)}] {name}: {len(slots)} slots")
    echo(f"demo vendor created: {vendor['id']}")
    return str(vendor["id"])
