"""The facts about the machine that a benchmark's figures depend on."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib.metadata import version
from typing import Any

PACKAGES = ("asyncpg", "uvicorn", "starlette", "uvloop", "httptools", "orjson")


def machine_info(admin_dsn: str) -> dict[str, Any]:
    """CPUs, memory, kernel, Python, PostgreSQL's durability settings and package versions."""
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) // 1024
    pg: dict[str, str] = {}
    with contextlib.suppress(Exception):
        out = subprocess.run(
            ["psql", admin_dsn, "-Atc", "SELECT version(); SHOW synchronous_commit; "
             "SHOW shared_buffers; SHOW max_connections; SHOW wal_level; SHOW fsync"],
            capture_output=True, text=True, timeout=10).stdout.splitlines()
        keys = ["version", "synchronous_commit", "shared_buffers", "max_connections",
                "wal_level", "fsync"]
        pg = dict(zip(keys, out, strict=False))
    versions = {}
    for mod in PACKAGES:
        with contextlib.suppress(Exception):
            versions[mod] = version(mod)
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "memory_mib": mem,
            "kernel": platform.release(), "python": platform.python_version(),
            "postgresql": pg, "packages": versions}
