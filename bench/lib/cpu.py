"""CPU and memory accounting from /proc: who used the cores during a measured window."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_times(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of a process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: the fields start after the last ")".
    fields = raw[raw.rindex(b")") + 2:].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process, None when it is gone."""
    t = proc_times(pid)
    return None if t is None else t[0] + t[1]


def proc_rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of a process from /proc/PID/status (VmRSS now, VmHWM its peak), 0 when
    it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL process on the machine, by pid."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", "rb") as f:
                if f.read().strip() != b"postgres":
                    continue
        except OSError:
            continue
        cpu = proc_cpu(int(entry))
        if cpu is not None:
            out[int(entry)] = cpu
    return out


def machine_busy() -> tuple[float, float, float]:
    """(busy, total, stolen) CPU seconds of the machine; stolen is time the hypervisor gave
    this VM's CPUs to someone else (counted as busy: nobody here could use it)."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / CLK_TCK, sum(parts[:8]) / CLK_TCK, parts[7] / CLK_TCK


class CpuWindow:
    """Cores used between start() and stop() by named process groups, by PostgreSQL (the
    backends of the scratch database; the shared WAL writer, checkpointer and autovacuum
    count as "other"), by the whole machine, stolen by the hypervisor ("steal"), and by
    everything else ("other")."""

    def __init__(self, groups: dict[str, list[int]], own_backends: set[int]) -> None:
        self.groups = groups
        self.own = own_backends

    def _snap(self) -> dict[str, Any]:
        return {
            "at": time.monotonic(),
            "groups": {g: {p: proc_times(p) for p in pids} for g, pids in self.groups.items()},
            "postgres": postgres_cpu(),
            "machine": machine_busy(),
        }

    def start(self) -> None:
        self.a = self._snap()

    def stop(self) -> dict[str, float]:
        b = self._snap()
        wall = b["at"] - self.a["at"]
        cores: dict[str, float] = {}
        kernel: dict[str, float] = {}
        for g in self.groups:
            used = system = 0.0
            for p, before in self.a["groups"][g].items():
                after = b["groups"][g].get(p)
                if before is not None and after is not None:
                    used += after[0] + after[1] - before[0] - before[1]
                    system += after[1] - before[1]
            cores[g] = used / wall
            kernel[g] = system / wall
        pg = sum(v - self.a["postgres"].get(p, 0.0) for p, v in b["postgres"].items()
                 if p in self.own)
        cores["postgres"] = pg / wall
        busy = b["machine"][0] - self.a["machine"][0]
        cores["steal"] = (b["machine"][2] - self.a["machine"][2]) / wall
        cores["machine"] = busy / wall
        cores["other"] = max(0.0, cores["machine"] - sum(
            v for k, v in cores.items() if k != "machine"))
        out = {k: round(v, 3) for k, v in cores.items()}
        if "server" in kernel:
            out["server_kernel"] = round(kernel["server"], 3)
        return out


async def wait_quiet(patience: float, say: Callable[[str], None]) -> float:
    """Busy cores on the machine now (other users skew every figure); waits up to `patience`
    seconds for them to go below 0.3 of a core."""
    deadline = time.monotonic() + patience
    while True:
        a = machine_busy()
        await asyncio.sleep(2)
        b = machine_busy()
        busy = (b[0] - a[0]) / 2
        if busy < 0.3 or time.monotonic() >= deadline:
            break
        say(f"  the machine is busy ({busy:.2f} cores used by others); waiting ...")
    if busy >= 0.3:
        say(f"  WARNING: {busy:.2f} cores busy with other work: figures will be low")
    return round(busy, 2)
