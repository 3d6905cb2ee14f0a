"""At most a few writes per slot in flight from this process: no queue on a hot slot's row.

Bookings of one slot serialize on its row lock, held until the commit. When many transactions
wait for that lock, every commit wakes all of them and one wins (PostgreSQL queues waiters on
the holder's transaction, not on the row): each booking then costs work proportional to the
queue, and the slot's rate falls as clients are added (measured in bench/booking.py: 2,189/s
with 8 direct clients, 1,327/s with 32). So this process sends at most `WIDTH` writes per slot
to the database at a time, one holding the lock and a few ready behind it, so that the next is
already waiting in the database when the holder commits; the others wait here, in order, where
waiting costs nothing. Measured on one hot slot with two servers taking turns
(`bench/pair.py`, with a temporary switch for the width): width 4 gave 6-12% more bookings/s
than 2, and about as many as 8 with a lower p99.

Losing clicks on a full slot take no lock at all (rt_book reads the slot unlocked and leaves),
so holding them back would only slow a storm of conflicts: a slot last seen with nothing
available is not gated. A stale "full" lets writes through as before the gate; a stale "free"
gates writes until the first answer says otherwise. Either way the database decides.
"""

from __future__ import annotations

import asyncio
from collections import deque

WIDTH = 4
# Slots remembered as full: bounded, oldest forgotten first (forgetting one only gates it).
FULL_MEMORY = 10_000


class _Gate:
    __slots__ = ("inside", "waiters")

    def __init__(self) -> None:
        self.inside = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


class SlotGates:
    def __init__(self, width: int = WIDTH) -> None:
        self.width = width
        self._gates: dict[str, _Gate] = {}
        self._full: dict[str, None] = {}

    def inside(self, slot_id: str) -> int:
        gate = self._gates.get(slot_id)
        return gate.inside if gate else 0

    def waiting(self, slot_id: str) -> int:
        gate = self._gates.get(slot_id)
        return len(gate.waiters) if gate else 0

    def seen(self, slot_id: str, available: int) -> None:
        """Remember whether the slot is full, from the state a function returned."""
        if available > 0:
            self._full.pop(slot_id, None)
            return
        self._full[slot_id] = None
        if len(self._full) > FULL_MEMORY:
            del self._full[next(iter(self._full))]

    def enter(self, slot_id: str) -> _Pass:
        """`async with gates.enter(slot_id):` holds one of the slot's places while inside."""
        return _Pass(self, slot_id)

    def _leave(self, slot_id: str, gate: _Gate) -> None:
        while gate.waiters:
            waiter = gate.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # its place passes on: `inside` stays the same
                return
        gate.inside -= 1
        self._forget_if_idle(slot_id, gate)

    def _forget_if_idle(self, slot_id: str, gate: _Gate) -> None:
        if gate.inside == 0 and not gate.waiters and self._gates.get(slot_id) is gate:
            del self._gates[slot_id]


class _Pass:
    """One pass through a slot's gate: a class, not @asynccontextmanager, because every
    booking takes one and a generator-based context manager costs several times as much."""

    __slots__ = ("_gate", "_gates", "_slot_id")

    def __init__(self, gates: SlotGates, slot_id: str) -> None:
        self._gates = gates
        self._slot_id = slot_id
        self._gate: _Gate | None = None

    async def __aenter__(self) -> None:
        gates, slot_id = self._gates, self._slot_id
        if slot_id in gates._full:
            return
        gate = gates._gates.get(slot_id)
        if gate is None:
            gate = gates._gates[slot_id] = _Gate()
        if gate.inside < gates.width and not gate.waiters:
            gate.inside += 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            gate.waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    gates._leave(slot_id, gate)  # admitted just as it was cancelled: pass it on
                else:
                    if waiter in gate.waiters:  # a leaver may have dropped it already
                        gate.waiters.remove(waiter)
                    gates._forget_if_idle(slot_id, gate)
                raise
        self._gate = gate

    async def __aexit__(self, *exc_info: object) -> None:
        if self._gate is not None:
            self._gates._leave(self._slot_id, self._gate)
