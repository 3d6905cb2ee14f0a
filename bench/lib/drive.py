"""A measured window: worker processes (bench/lib/load.py) through warm-up and the window,
the CPU every party used meanwhile, and the figures they report, merged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import pg
from .cpu import CpuWindow
from .results import merge_phase


def split(total: int, parts: int) -> list[int]:
    """`total` spread over at most `parts` shares that differ by one at most."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class Driver:
    """Runs phases against one scratch database; `script --worker` is a worker process."""

    def __init__(self, script: Path, admin_dsn: str, db_name: str) -> None:
        self.script = script
        self.admin_dsn = admin_dsn
        self.db_name = db_name
        self.children: list[asyncio.subprocess.Process] = []

    async def spawn(self, configs: list[dict[str, Any]]) -> list[asyncio.subprocess.Process]:
        """One worker per config, each connected and ready when this returns."""
        procs = []
        for cfg in configs:
            p = await asyncio.create_subprocess_exec(
                sys.executable, str(self.script), "--worker",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                limit=64 * 1024 * 1024)
            self.children.append(p)
            procs.append(p)
            assert p.stdin is not None
            p.stdin.write(json.dumps(cfg).encode() + b"\n")
            await p.stdin.drain()
        for p in procs:
            assert p.stdout is not None
            line = await asyncio.wait_for(p.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError(f"worker failed to start: {line!r}")
        return procs

    async def drive(self, label: str, configs: list[dict[str, Any]], warmup: float,
                    duration: float, extra_pids: dict[str, list[int]] | None = None,
                    during: Callable[[], Awaitable[None]] | None = None,
                    window: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Runs workers through warm-up and the measured window; merges what they saw.
        `during` runs after the window, before the workers exit; `window` is told "start"
        and "stop"."""
        xacts_before = await pg.transactions(self.admin_dsn, self.db_name)
        procs = await self.spawn(configs)
        now = time.monotonic()
        t_measure, t_end = now + 0.1 + warmup, now + 0.1 + warmup + duration
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"go {t_measure} {t_end}\n".encode())
            await p.stdin.drain()
        groups = {"load": [p.pid for p in procs], "bench": [os.getpid()]}
        groups.update(extra_pids or {})
        await asyncio.sleep(max(0.0, t_measure - time.monotonic() - 0.05))
        cpu = CpuWindow(groups, await pg.backends(self.admin_dsn, self.db_name))
        cpu.start()
        if window is not None:
            window("start")
        await asyncio.sleep(max(0.0, t_end - time.monotonic()))
        cores = cpu.stop()
        if window is not None:
            window("stop")
        for p in procs:
            assert p.stdin is not None
            with contextlib.suppress(OSError):
                p.stdin.write(b"close\n")
                await p.stdin.drain()
        if during is not None:
            await during()
        outputs = []
        for p in procs:
            assert p.stdout is not None
            line = await asyncio.wait_for(p.stdout.readline(), 60)
            await p.wait()
            self.children.remove(p)
            outputs.append(json.loads(line))
        # Backends flush their statistics within about a second of going idle.
        await asyncio.sleep(1.5)
        xacts = await pg.transactions(self.admin_dsn, self.db_name) - xacts_before
        return merge_phase(label, duration, outputs, cores, xacts)

    async def kill(self) -> None:
        """Ends every worker still running (after a failure or Ctrl-C)."""
        for p in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(p.wait(), 5)
        self.children.clear()
