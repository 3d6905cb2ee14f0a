"""Model-based test: hypothesis drives book, hold, confirm, release, cancel, expire, capacity
changes and idempotent replays, from three customers, through the HTTP API and the WebSocket
of a real `realtime serve`, against the plain-Python model in model.py. After every step the
model and the database agree (each slot's capacity, booked, held, version; every reservation
row and its status) and every invariant of `realtime check` holds.

Profiles (REALTIME_MODEL_PROFILE): `ci` (the default) runs 50 examples of up to 60 steps;
`long` runs 100,000 steps (README, "Running the tests"). Expiry is driven, not waited for: the
`expire` rule moves a hold's expires_at into the past (time passing, for that hold alone) and
may run the server's own sweep (BookingService.expire_holds, what the sweeper calls); a hold
that is due but not yet swept must still be expired by a confirmation (410), and a release
must still give its units back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from typing import Any

import asyncpg
import httpx
import jwt
import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from websockets.sync.client import ClientConnection, connect

from realtime.booking.check import CHECKS
from realtime.booking.service import BookingService
from realtime.booking.sweeper import BATCH
from realtime.db.connect import create_pool
from tests.model.model import OK, Model, Outcome, Reservation, Slot, slot_view
from tests.support.server import ServerProcess

SECRET = "a-model-test-secret-long-enough-for-hs256"
CUSTOMERS = ("ann", "bob", "cy")
DOORS = ("http", "ws")
_COMMON = dict(deadline=None, derandomize=True, database=None, print_blob=True,
               suppress_health_check=list(HealthCheck))
PROFILES = {
    # Up to 50 x 60 steps, 2,384 taken (derandomized: the same every run while the machine
    # and its rules stay as they are); the test counts them and requires the minimum below.
    "ci": settings(max_examples=50, stateful_step_count=60, **_COMMON),
    "long": settings(max_examples=2500, stateful_step_count=100, **_COMMON),
}
MIN_STEPS = {"ci": 2_000, "long": 100_000}
# One round trip per step: the service's slots and reservations, and every invariant of
# `realtime check` (NULL when all hold). No LIMIT: it makes the planner pick plans that are
# quick to a first row, quadratic when there is none (ten times slower here).
CHECK_SQL = " UNION ALL ".join(
    f"SELECT '{c.name}' AS name, x.subject, x.detail FROM ({c.sql}) AS x(subject, detail)"
    for c in CHECKS)
STATE_SQL = f"""
SELECT (SELECT json_agg(json_build_array(id::text, capacity, booked, held, version))
        FROM rt_slots WHERE service_id = $1)::text,
       (SELECT json_agg(json_build_array(r.id::text, r.kind, r.slot_id::text, r.customer_id,
                                         r.quantity, r.status, r.hold_id::text))
        FROM rt_reservations r JOIN rt_slots s ON s.id = r.slot_id
        WHERE s.service_id = $1)::text,
       (SELECT json_agg(c)::text FROM ({CHECK_SQL}) c)"""


def token(sub: str, admin: bool = False) -> str:
    claims: dict[str, Any] = {"sub": sub, "exp": int(time.time() + 24 * 3600)}
    if admin:
        claims["role"] = "admin"
    return jwt.encode(claims, SECRET, algorithm="HS256")


class World:
    """The server, one HTTP client, a socket per customer, and the database, for all examples."""

    def __init__(self, server: ServerProcess) -> None:
        self.loop = asyncio.new_event_loop()
        self.db: asyncpg.Connection = self.run(asyncpg.connect(server.database_url))
        self.pool = self.run(create_pool(server.database_url, 2))
        self.booking = BookingService(self.pool)
        self.http = httpx.Client(base_url=server.url, timeout=30)
        self.headers = {c: {"Authorization": f"Bearer {token(c)}"} for c in CUSTOMERS}
        self.admin = {"Authorization": f"Bearer {token('boss', admin=True)}"}
        self.stack = contextlib.ExitStack()
        self.sockets: dict[str, ClientConnection] = {
            c: self.stack.enter_context(connect(f"{server.ws_url}?token={token(c)}",
                                                compression=None))
            for c in CUSTOMERS}
        self.ids = itertools.count()
        self.steps = 0
        self.db_seconds = 0.0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.stack.close()
        self.http.close()
        self.run(self.db.close())
        self.run(self.pool.close())
        self.loop.close()

    def call(self, door: str, customer: str, kind: str, **fields: Any) -> tuple[Outcome, dict]:
        """A booking operation through one door: (outcome, body or error object)."""
        if door == "ws":
            msg_id = f"m{next(self.ids)}"
            ws = self.sockets[customer]
            ws.send(orjson.dumps({"type": kind, "id": msg_id, **fields}).decode())
            while True:
                frame = orjson.loads(ws.recv(timeout=30))
                if frame.get("type") == "result" and frame.get("id") == msg_id:
                    break
                assert frame.get("type") != "error", frame
            if frame["ok"]:
                return OK, frame
            return Outcome(False, frame["error"]["code"]), frame["error"]
        key = fields.pop("idempotency_key", None)
        headers = {**self.headers[customer], **({"Idempotency-Key": key} if key else {})}
        if kind == "book":
            response = self.http.post("/api/bookings", json=fields, headers=headers)
        elif kind == "hold":
            response = self.http.post("/api/holds", json=fields, headers=headers)
        else:
            response = self.http.post(f"/api/bookings/{fields['booking_id']}/cancel",
                                      headers=headers)
        return self.answer(response)

    @staticmethod
    def answer(response: httpx.Response) -> tuple[Outcome, dict]:
        assert response.status_code < 500, response.text
        body = response.json()
        if response.is_success:
            return OK, body
        return Outcome(False, body["error"]["code"]), body["error"]


class BookingMachine(RuleBasedStateMachine):
    world: World

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.service = ""
        # (customer, key, request, first answer) of each Idempotency-Key used
        self.keys: list[tuple[str, str, dict[str, Any], tuple[Any, ...]]] = []

    # -- setup and checks ------------------------------------------------------------------

    @initialize(capacities=st.lists(st.integers(1, 3), min_size=2, max_size=2))
    def make_slots(self, capacities: list[int]) -> None:
        w = self.world
        vendor = w.http.post("/api/vendors", json={"name": "model"}, headers=w.admin).json()
        service = w.http.post(f"/api/vendors/{vendor['id']}/services", json={"name": "m"},
                              headers=w.admin).json()
        self.service = service["id"]
        slots = w.http.post(f"/api/services/{self.service}/slots", headers=w.admin, json={
            "slots": [{"starts_at": f"2030-01-07T{9 + i:02d}:00:00Z",
                       "ends_at": f"2030-01-07T{9 + i:02d}:45:00Z", "capacity": c}
                      for i, c in enumerate(capacities)]}).json()["slots"]
        for slot, capacity in zip(slots, capacities, strict=True):
            self.model.slots[slot["id"]] = Slot(slot["id"], capacity)

    @invariant()
    def database_agrees_with_the_model(self) -> None:
        if not self.service:
            return
        w = self.world
        w.steps += 1
        started = time.perf_counter()
        slots, rows, broken = w.run(w.db.fetchrow(STATE_SQL, self.service))
        w.db_seconds += time.perf_counter() - started
        assert {r[0]: tuple(r[1:]) for r in orjson.loads(slots)} == {
            s.id: s.row() for s in self.model.slots.values()}
        assert {r[0]: tuple(r[1:]) for r in orjson.loads(rows or "[]")} == {
            r.id: r.row() for r in self.model.reservations.values()}
        assert broken is None, broken

    # -- rules -----------------------------------------------------------------------------

    def _slot_check(self, outcome: Outcome, body: dict[str, Any], slot_id: str) -> None:
        """A success or a conflict carries the slot as it is now (the model's, after it)."""
        if "slot" in body and (outcome.ok or outcome.code == "BOOKING_CONFLICT"):
            assert slot_view(body["slot"]) == self.model.slots[slot_id].row(), body

    @rule(customer=st.sampled_from(CUSTOMERS), door=st.sampled_from(DOORS), data=st.data(),
          quantity=st.integers(1, 2), keyed=st.booleans())
    def book(self, customer: str, door: str, data: st.DataObject, quantity: int,
             keyed: bool) -> None:
        slot_id = data.draw(st.sampled_from(list(self.model.slots)))
        request = {"slot_id": slot_id, "quantity": quantity}
        key = f"k{next(self.world.ids)}" if keyed else None
        expected = self.model.take(slot_id, quantity)
        outcome, body = self.world.call(door, customer, "book", **request,
                                        **({"idempotency_key": key} if key else {}))
        assert outcome == expected, (outcome, body)
        if outcome.ok:
            self.model.booked(Reservation(body["booking"]["id"], "booking", slot_id, customer,
                                          quantity, "confirmed"))
        self._slot_check(outcome, body, slot_id)
        if key:
            self.keys.append((customer, key, request, _fingerprint(outcome, body)))

    @rule(customer=st.sampled_from(CUSTOMERS), door=st.sampled_from(DOORS), data=st.data(),
          quantity=st.integers(1, 2))
    def hold(self, customer: str, door: str, data: st.DataObject, quantity: int) -> None:
        slot_id = data.draw(st.sampled_from(list(self.model.slots)))
        expected = self.model.take(slot_id, quantity)
        outcome, body = self.world.call(door, customer, "hold", slot_id=slot_id,
                                        quantity=quantity, ttl_seconds=3600)
        assert outcome == expected, (outcome, body)
        if outcome.ok:
            self.model.held(Reservation(body["hold"]["id"], "hold", slot_id, customer, quantity,
                                        "active"))
        self._slot_check(outcome, body, slot_id)

    @precondition(lambda self: self.model.of("hold"))
    @rule(door=st.sampled_from(DOORS), data=st.data(), keyed=st.booleans())
    def confirm(self, door: str, data: st.DataObject, keyed: bool) -> None:
        hold = data.draw(st.sampled_from(self.model.of("hold")))
        # Mostly its owner; sometimes another customer, who must not see it.
        customer = data.draw(st.sampled_from([hold.customer] * 3 + list(CUSTOMERS)))
        request = {"slot_id": hold.slot_id, "hold_id": hold.id}
        key = f"k{next(self.world.ids)}" if keyed else None
        expected = self.model.confirm(hold.id, customer)
        outcome, body = self.world.call(door, customer, "book", **request,
                                        **({"idempotency_key": key} if key else {}))
        assert outcome == expected, (outcome, body, hold)
        if outcome.ok:
            self.model.confirmed(hold.id, body["booking"]["id"])
            assert body["booking"]["customer_id"] == hold.customer
        self._slot_check(outcome, body, hold.slot_id)
        if key:
            self.keys.append((customer, key, request, _fingerprint(outcome, body)))

    @precondition(lambda self: self.model.of("hold"))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        hold = data.draw(st.sampled_from(self.model.of("hold")))
        customer = data.draw(st.sampled_from([hold.customer] * 3 + list(CUSTOMERS)))
        expected = self.model.release(hold.id, customer)
        outcome, body = self.world.answer(self.world.http.delete(
            f"/api/holds/{hold.id}", headers=self.world.headers[customer]))
        assert outcome == expected, (outcome, body, hold)
        self._slot_check(outcome, body, hold.slot_id)

    @precondition(lambda self: self.model.of("booking"))
    @rule(door=st.sampled_from(DOORS), data=st.data())
    def cancel(self, door: str, data: st.DataObject) -> None:
        booking = data.draw(st.sampled_from(self.model.of("booking")))
        customer = data.draw(st.sampled_from([booking.customer] * 3 + list(CUSTOMERS)))
        expected = self.model.cancel(booking.id, customer)
        outcome, body = self.world.call(door, customer, "cancel", booking_id=booking.id)
        assert outcome == expected, (outcome, body, booking)
        if outcome.ok:
            assert body["booking"]["status"] == "cancelled"
        self._slot_check(outcome, body, booking.slot_id)

    @precondition(lambda self: self.model.of("hold", "active"))
    @rule(data=st.data(), sweep=st.booleans())
    def expire(self, data: st.DataObject, sweep: bool) -> None:
        hold = data.draw(st.sampled_from(self.model.of("hold", "active")))
        w = self.world
        w.run(w.db.execute("UPDATE rt_reservations SET expires_at = now() - interval '1 second' "
                           "WHERE id = $1", hold.id))
        hold.due = True
        if sweep:
            w.run(w.booking.expire_holds(BATCH))
            self.model.sweep()

    @rule(data=st.data(), capacity=st.integers(0, 4))
    def change_capacity(self, data: st.DataObject, capacity: int) -> None:
        slot_id = data.draw(st.sampled_from(list(self.model.slots)))
        expected = self.model.set_capacity(slot_id, capacity)
        outcome, body = self.world.answer(self.world.http.patch(
            f"/api/slots/{slot_id}", json={"capacity": capacity}, headers=self.world.admin))
        assert outcome == expected, (outcome, body)
        if outcome.ok:
            assert slot_view(body) == self.model.slots[slot_id].row()

    @precondition(lambda self: self.keys)
    @rule(door=st.sampled_from(DOORS), data=st.data(), reuse=st.booleans())
    def replay(self, door: str, data: st.DataObject, reuse: bool) -> None:
        """The same Idempotency-Key again, through either door: the first answer, nothing
        done twice; with a different request, IDEMPOTENCY_KEY_REUSED and nothing done."""
        customer, key, request, first = data.draw(st.sampled_from(self.keys))
        if reuse:
            changed = {**request, "quantity": 7}
            outcome, body = self.world.call(door, customer, "book", **changed,
                                            idempotency_key=key)
            assert outcome == Outcome(False, "IDEMPOTENCY_KEY_REUSED"), (outcome, body)
            return
        outcome, body = self.world.call(door, customer, "book", **request, idempotency_key=key)
        assert _fingerprint(outcome, body) == first, (outcome, body)


def _fingerprint(outcome: Outcome, body: dict[str, Any]) -> tuple[Any, ...]:
    booking = body.get("booking")
    slot = body.get("slot")
    return (outcome, booking and booking["id"], slot and slot_view(slot))


@pytest.fixture
def model_server(database_url, tmp_path):
    """`realtime serve` with auth on; its own sweeper idle (the test sweeps), no rate limits."""
    proc = ServerProcess(database_url, log_dir=tmp_path, env={
        "REALTIME_JWT_SECRET": SECRET, "REALTIME_SWEEP_INTERVAL": "3600",
        "REALTIME_WS_RATE": "0", "LOG_LEVEL": "warning"}).start()
    yield proc
    proc.stop()


@pytest.mark.slow
def test_the_server_behaves_as_the_model(model_server):
    """Thousands of random operations from three customers through both doors: after each,
    the database equals the model and `realtime check` finds nothing."""
    profile = os.environ.get("REALTIME_MODEL_PROFILE", "ci")
    world = World(model_server)
    BookingMachine.world = world
    try:
        run_state_machine_as_test(BookingMachine, settings=PROFILES[profile])
    finally:
        world.close()
    print(f"{world.steps} steps, {world.db_seconds:.1f} s comparing with the database")
    assert world.steps >= MIN_STEPS[profile], world.steps
    log = model_server.log()
    assert '"level":"error"' not in log, log
