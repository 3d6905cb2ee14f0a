"""Supervised background tasks: a crash is logged and the task restarted with backoff."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

log = logging.getLogger("realtime.tasks")


def supervise(name: str, body: Callable[[], Awaitable[None]], *, max_backoff: float = 10.0) -> asyncio.Task[None]:
    """Runs `body` forever; if it raises, logs and restarts it after a jittered backoff."""

    async def runner() -> None:
        failures = 0
        while True:
            try:
                await body()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                delay = random.uniform(0, min(max_backoff, 0.1 * 2**failures))
                log.exception("background task crashed; restarting", extra={"task": name,
                              "failures": failures, "restart_in": round(delay, 3)})
                await asyncio.sleep(delay)

    return asyncio.create_task(runner(), name=name)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
