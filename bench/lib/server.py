"""A server process for a benchmark: `python -m realtime serve` (or a peer), its readiness
and its end."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from realtime.httpclient import HttpError, get

ROOT = Path(__file__).resolve().parents[2]


def server_env(dsn: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment plus a database, no rate limit, no request log lines and no auth
    (a secret in the caller's environment would turn every booking into a 401)."""
    env = {**os.environ, "DATABASE_URL": dsn, "REALTIME_RATE_LIMIT": "0",
           "LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"}
    env.pop("REALTIME_JWT_SECRET", None)
    env.update(extra or {})
    return env


def start(port: int, env: dict[str, str], *, source: Path = ROOT, log: IO[Any] | int | None =
          subprocess.DEVNULL, argv: list[str] | None = None) -> subprocess.Popen[bytes]:
    """`realtime serve` on 127.0.0.1:port from the source tree `source` (`python -m` puts the
    working directory first on sys.path: it decides which code runs), or `argv` plus
    `--port`."""
    cmd = argv or [sys.executable, "-m", "realtime", "serve", "--host", "127.0.0.1"]
    return subprocess.Popen([*cmd, "--port", str(port)], cwd=source, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


async def until_ready(proc: subprocess.Popen[bytes], port: int, path: str = "/readyz",
                      within: float = 60.0, log: str = "") -> None:
    """Waits until GET `path` answers 200; raises if the process exits or time runs out."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}"
                               + (f"; log: {log}" if log else ""))
        try:
            if (await get(f"http://127.0.0.1:{port}{path}", within=2.0)).status == 200:
                return
        except HttpError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the server did not become ready within {within:g} s"
                       + (f"; log: {log}" if log else ""))


def stop(*procs: subprocess.Popen[bytes] | None, within: float = 15.0) -> None:
    """SIGTERM (a graceful stop) to every one at once; SIGKILL to one that takes longer than
    `within` seconds."""
    running = [p for p in procs if p is not None and p.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(within)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
