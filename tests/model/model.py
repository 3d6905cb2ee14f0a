"""A plain-Python model of slots, holds and bookings: what the server must answer and what the
database must hold after each operation. No I/O; tests/model/test_machine.py drives it and the
real server side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Slot:
    id: str
    capacity: int
    booked: int = 0
    held: int = 0
    version: int = 1

    @property
    def available(self) -> int:
        return self.capacity - self.booked - self.held

    def row(self) -> tuple[int, int, int, int]:
        return self.capacity, self.booked, self.held, self.version


@dataclass
class Reservation:
    id: str
    kind: str  # "hold" | "booking"
    slot_id: str
    customer: str
    quantity: int
    status: str  # hold: active, confirmed, released, expired; booking: confirmed, cancelled
    hold_id: str | None = None
    due: bool = False  # a hold whose time is up, not yet swept

    def row(self) -> tuple[str, str, str, int, str, str | None]:
        return self.kind, self.slot_id, self.customer, self.quantity, self.status, self.hold_id


@dataclass(frozen=True)
class Outcome:
    """What an operation answered, as both doors can say it: ok and the error code."""

    ok: bool
    code: str | None = None


OK = Outcome(True)


@dataclass
class Model:
    slots: dict[str, Slot] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)

    def take(self, slot_id: str, quantity: int) -> Outcome:
        """Whether a booking or hold of `quantity` units fits (the caller adds the row)."""
        if self.slots[slot_id].available < quantity:
            return Outcome(False, "BOOKING_CONFLICT")
        return OK

    def booked(self, booking: Reservation) -> None:
        slot = self.slots[booking.slot_id]
        slot.booked += booking.quantity
        slot.version += 1
        self.reservations[booking.id] = booking

    def held(self, hold: Reservation) -> None:
        slot = self.slots[hold.slot_id]
        slot.held += hold.quantity
        slot.version += 1
        self.reservations[hold.id] = hold

    def confirm(self, hold_id: str, customer: str) -> Outcome:
        """A confirmation's answer; on success the caller adds the booking (`confirmed`)."""
        hold = self.reservations[hold_id]
        if hold.customer != customer:
            return Outcome(False, "HOLD_NOT_FOUND")
        if hold.status != "active":
            return Outcome(False, "HOLD_EXPIRED")
        if hold.due:  # expired on the spot, in the same commit
            self._end_hold(hold, "expired")
            return Outcome(False, "HOLD_EXPIRED")
        return OK

    def confirmed(self, hold_id: str, booking_id: str) -> None:
        hold = self.reservations[hold_id]
        hold.status = "confirmed"
        slot = self.slots[hold.slot_id]
        slot.held -= hold.quantity
        slot.booked += hold.quantity
        slot.version += 1
        self.reservations[booking_id] = Reservation(
            booking_id, "booking", hold.slot_id, hold.customer, hold.quantity, "confirmed",
            hold_id=hold.id)

    def release(self, hold_id: str, customer: str) -> Outcome:
        hold = self.reservations[hold_id]
        if hold.customer != customer:
            return Outcome(False, "HOLD_NOT_FOUND")
        if hold.status == "active":  # due or not: a release gives the units back
            self._end_hold(hold, "released")
        return OK

    def cancel(self, booking_id: str, customer: str) -> Outcome:
        booking = self.reservations[booking_id]
        if booking.customer != customer:
            return Outcome(False, "BOOKING_NOT_FOUND")
        if booking.status == "confirmed":
            booking.status = "cancelled"
            slot = self.slots[booking.slot_id]
            slot.booked -= booking.quantity
            slot.version += 1
        return OK

    def sweep(self) -> int:
        """The sweeper: every due active hold expires, one version each."""
        due = [r for r in self.reservations.values()
               if r.kind == "hold" and r.status == "active" and r.due]
        for hold in due:
            self._end_hold(hold, "expired")
        return len(due)

    def set_capacity(self, slot_id: str, capacity: int) -> Outcome:
        slot = self.slots[slot_id]
        if capacity < slot.booked + slot.held:
            return Outcome(False, "CAPACITY_BELOW_USAGE")
        if capacity != slot.capacity:
            slot.capacity = capacity
            slot.version += 1
        return OK

    def _end_hold(self, hold: Reservation, status: str) -> None:
        hold.status = status
        slot = self.slots[hold.slot_id]
        slot.held -= hold.quantity
        slot.version += 1

    def of(self, kind: str, status: str | None = None) -> list[Reservation]:
        return [r for r in self.reservations.values()
                if r.kind == kind and (status is None or r.status == status)]


def slot_view(body: dict[str, Any]) -> tuple[int, int, int, int]:
    """The (capacity, booked, held, version) of a slot object in an answer."""
    assert body["available"] == body["capacity"] - body["booked"] - body["held"], body
    return body["capacity"], body["booked"], body["held"], body["version"]
