"""Supervised background tasks: a crash is logged, counted and the task restarted after a
jittered backoff, so that no background duty (sweeper, listener, sequencer) silently dies."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from realtime import metrics

log = logging.getLogger("realtime.tasks")


def backoff(attempt: int, base: float = 0.1, cap: float = 5.0) -> float:
    """Exponential with full jitter, so that many processes do not retry in step."""
    return random.uniform(base / 2, min(cap, base * 2 ** min(attempt, 16)))


def supervise(name: str, factory: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    """Runs `factory()` forever; if it returns or raises, logs and restarts it."""

    async def run() -> None:
        attempt = 0
        while True:
            try:
                await factory()
                log.warning("task %s returned; restarting it", name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task %s crashed; restarting it", name)
            metrics.TASK_RESTARTS.labels(name).inc()
            attempt += 1
            await asyncio.sleep(backoff(attempt))

    return asyncio.create_task(run(), name=f"realtime-{name}")


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
