"""A process that cannot follow the event log does not keep its sockets.

While the listener cannot reach PostgreSQL, nothing new reaches this process's subscribers:
their sockets stay open and look live, and their calendars silently go stale. /readyz already
says so and a balancer stops sending new clients here, but it does not move the ones already
connected. So once the listener has been down for `FOLLOW_GRACE` seconds, every socket is
closed with 1013 (try again later), and so is each new one until the listener is back. Clients
reconnect, through the balancer, to a process that follows the log, and resume from their
cursors: they miss nothing.

The grace lets a brief drop (a PostgreSQL restart, a failover) pass without a reconnect storm:
the listener reconnects and reads everything committed meanwhile from the log, so subscribers
only see their updates late.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from realtime.errors import CLOSE_OVERLOAD

if TYPE_CHECKING:
    from realtime.channels.runtime import ChannelRuntime

log = logging.getLogger("realtime.channels.follow")

FOLLOW_GRACE = 2.0
CHECK_INTERVAL = 0.25


async def shed_while_blind(runtime: ChannelRuntime) -> None:
    """Runs for the life of the process: closes sockets while the log cannot be followed."""
    loop = asyncio.get_running_loop()
    blind_since: float | None = None
    shedding = False
    while True:
        await asyncio.sleep(CHECK_INTERVAL)
        reason = runtime.listener.ready()
        if reason is None or runtime.closing:
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
        for sub in open_subs:
            sub.close(CLOSE_OVERLOAD)
