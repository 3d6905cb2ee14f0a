"""A steady stream of bookings through the balancer, each retried until it succeeds.

Every booking carries an `Idempotency-Key` and is retried with the same key after any failure
(no answer, a reset, a 502/503/504): a retry of a booking that did commit returns that booking,
so the stream books each unit exactly once whichever server, dead or alive, took the attempt.
What the tests bound is how long a booking took from its first attempt to its success.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from dataclasses import dataclass, field

from realtime.httpclient import Client, HttpError

RETRY_PAUSE = 0.1
REQUEST_TIMEOUT = 3.0


@dataclass
class Booker:
    base_url: str
    slots: list[str]
    rate: float
    give_up_after: float = 60.0
    booked: int = 0
    failed_attempts: int = 0
    durations: list[float] = field(default_factory=list)  # first attempt to success, seconds
    errors: list[str] = field(default_factory=list)  # bookings that never succeeded
    statuses: dict[str, int] = field(default_factory=dict)  # failed attempts by kind

    async def _book(self, client: Client, slot_id: str) -> None:
        key = uuid.uuid4().hex
        began = time.monotonic()
        while time.monotonic() - began < self.give_up_after:
            try:
                resp = await client.request("POST", "/api/bookings", {"slot_id": slot_id},
                                            {"Idempotency-Key": key})
                if resp.status in (200, 201):
                    self.booked += 1
                    self.durations.append(time.monotonic() - began)
                    return
                kind = f"{resp.status} {resp.error_code()}"
                if resp.status < 500:  # the request itself is wrong: no retry helps
                    self.errors.append(f"{slot_id}: {kind}")
                    return
            except HttpError as exc:
                kind = str(exc).split(": ", 1)[-1][:60]
            self.failed_attempts += 1
            self.statuses[kind] = self.statuses.get(kind, 0) + 1
            await asyncio.sleep(RETRY_PAUSE)
        self.errors.append(f"{slot_id}: no success within {self.give_up_after:g} s")

    async def run(self, stop: asyncio.Event) -> None:
        """Books at `rate` per second until `stop` is set, then waits for what is in flight."""
        # The load tester's lean keep-alive client: httpx costs several times more per request,
        # on the cores the servers need during a reconnect storm.
        client = Client(self.base_url, size=50, timeout=REQUEST_TIMEOUT)
        try:
            tasks: set[asyncio.Task[None]] = set()
            began = time.monotonic()
            started = 0
            while not stop.is_set():
                due = int((time.monotonic() - began) * self.rate) - started
                for _ in range(max(0, due)):
                    started += 1
                    task = asyncio.create_task(self._book(client, random.choice(self.slots)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.02)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            client.close()

    def longest(self) -> float:
        return max(self.durations, default=0.0)
