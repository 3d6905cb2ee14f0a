"""Handing this process's clients over to the other processes, without stampeding them.

Two occasions:

- **Shutdown** (`close_paced`, called by the runtime's drain): the sockets are closed with 1001
  at most `HANDOFF_RATE` a second (all within `HANDOFF_SPREAD` seconds however many there are),
  rather than all at once. Every client reconnects at once otherwise, and the process that takes
  them over handles thousands of handshakes and resumes in one queue: measured behind HAProxy
  with 2,000 clients on two shared cores, the last client waited up to 5.7 s; paced, each client
  is back within about a second (tests/hosts/test_rolling_restart.py).

- **Blindness** (`shed_while_blind`): while the listener cannot reach PostgreSQL, nothing new
  reaches this process's subscribers: their sockets stay open and look live, and their calendars
  silently go stale. /readyz already says so and a balancer stops sending new clients here, but
  it does not move the ones already connected. So once the listener has been down for
  `FOLLOW_GRACE` seconds, every socket is closed with 1013 (try again later), paced as above, and
  so is each new one until the listener is back. Clients reconnect, through the balancer, to a
  process that follows the log, and resume from their cursors: they miss nothing. The grace lets
  a brief drop (a PostgreSQL restart, a failover) pass without a reconnect storm: the listener
  reconnects and reads everything committed meanwhile from the log, so subscribers only see
  their updates late. Nor are sockets closed while PostgreSQL itself says it is down (it refuses
  connections, or answers that it is starting or shutting down): then every process is as
  blind as this one, nothing commits anywhere, and a client moved would only be closed again
  (a reconnect storm every few seconds for the length of the outage). Sockets stay open and
  get what was missed once the database is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from realtime.errors import CLOSE_OVERLOAD

if TYPE_CHECKING:
    from realtime.channels.subscriber import Subscriber


class _Listener(Protocol):
    database_down: bool

    def ready(self) -> str | None: ...


class Followed(Protocol):
    """What the shedding needs of the channels layer (the runtime)."""

    @property
    def listener(self) -> _Listener: ...

    @property
    def closing(self) -> bool: ...

    @property
    def connections(self) -> set[Any]: ...

log = logging.getLogger("realtime.channels.handoff")

FOLLOW_GRACE = 2.0
CHECK_INTERVAL = 0.25
HANDOFF_RATE = 1000.0
HANDOFF_SPREAD = 2.0
BATCH_EVERY = 0.05


async def close_paced(subs: Sequence[Subscriber], code: int) -> None:
    """Close `subs` with `code`: at most HANDOFF_RATE a second, all within HANDOFF_SPREAD s.

    Batches every 50 ms: 50 sockets go at once, 100 within 50 ms, 2,000 over 2 s.
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    rate = max(HANDOFF_RATE, len(subs) / HANDOFF_SPREAD)
    batch = max(1, int(rate * BATCH_EVERY))
    for n, start in enumerate(range(0, len(subs), batch)):
        # Against the clock, not sleep after sleep: a busy loop's late wake-ups do not add up.
        if (wait := began + n * BATCH_EVERY - loop.time()) > 0:
            await asyncio.sleep(wait)
        for sub in subs[start:start + batch]:
            sub.close(code)


async def shed_while_blind(runtime: Followed) -> None:
    """Runs for the life of the process: closes sockets while the log cannot be followed."""
    loop = asyncio.get_running_loop()
    blind_since: float | None = None
    shedding = False
    while True:
        await asyncio.sleep(CHECK_INTERVAL)
        reason = runtime.listener.ready()
        if reason is None or runtime.closing or runtime.listener.database_down:
            if shedding and reason is None:
                log.warning("following the event log again: sockets stay open")
            blind_since, shedding = None, False
            continue
        if blind_since is None:
            blind_since = loop.time()
        if loop.time() - blind_since < FOLLOW_GRACE:
            continue
        shedding = True
        open_subs = [conn.sub for conn in list(runtime.connections) if conn.sub.close_code is None]
        if open_subs:
            log.warning("cannot follow the event log (%s): closing %d sockets with 1013 so that "
                        "their clients resume elsewhere", reason, len(open_subs))
        await close_paced(open_subs, CLOSE_OVERLOAD)
