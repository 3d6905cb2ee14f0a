"""The hold sweeper: expired holds give their units back within a second or so.

Safe with several server processes: rt_expire_holds claims holds with SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
import logging

from realtime import metrics
from realtime.booking.service import BookingService
from realtime.errors import DatabaseUnavailable

log = logging.getLogger("realtime.sweeper")
BATCH = 200


async def sweep_forever(booking: BookingService, interval: float) -> None:
    rounds = 0
    while True:
        try:
            while (n := await booking.expire_holds(BATCH)) > 0:
                metrics.HOLDS_EXPIRED.inc(n)
                log.info("holds expired", extra={"count": n})
                if n < BATCH:
                    break
            rounds += 1
            if rounds % max(1, int(600 / interval)) == 0:
                await booking.pool.fetchval("SELECT rt_prune_idempotency_keys()")
        except DatabaseUnavailable:
            log.warning("sweeper: database unavailable; retrying")
        await asyncio.sleep(interval)
