"""`realtime serve` with a memory probe inside, for bench/fanout.py --memory and bench/churn.py.

    python bench/lib/memprobe.py OUT.json serve --host 127.0.0.1 --port N

Runs the command line of the source tree in the working directory (a baseline checkout as
well as this one), with `tracemalloc` on when PYTHONTRACEMALLOC is set. Each SIGUSR1 writes
OUT.json: the process's RSS; every garbage-collector pause since the last signal; the
tracked objects by type (counted after a thaw of the frozen generation, which
`gc.get_objects()` does not list, and frozen again after); and, with tracemalloc on, what was
allocated since the previous SIGUSR1, grouped by file and by line. The bench opens N sockets
between two signals and divides by N: what each socket costs. SIGUSR2 writes the RSS and the
pauses only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

TOP_LINES = 60
TOP_TYPES = 40

_previous: dict[str, Any] = {}
# Every collection since the last dump, by the collector's own callback: [generation, wall
# ms, CPU ms]. On a shared machine a pause's wall time includes waits for a core; its CPU time
# is what the collection itself cost.
_pauses: list[list[float]] = []
_started = [0.0, 0.0]


def _timed(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[:] = [time.perf_counter(), time.thread_time()]
    else:
        _pauses.append([info.get("generation", -1), (time.perf_counter() - _started[0]) * 1000,
                        (time.thread_time() - _started[1]) * 1000])


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _types() -> Counter[str]:
    frozen = gc.get_freeze_count()
    gc.unfreeze()
    try:
        return Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
    finally:
        if frozen:
            gc.freeze()


def _lines(snapshot: tracemalloc.Snapshot, before: tracemalloc.Snapshot | None,
           key: str = "lineno") -> list[Any]:
    stats = (snapshot.compare_to(before, key) if before is not None
             else snapshot.statistics(key))
    out = []
    for stat in stats[:TOP_LINES]:
        frame = stat.traceback[0]
        where = _short(frame.filename) + (f":{frame.lineno}" if key == "lineno" else "")
        out.append({"where": where,
                    "bytes": getattr(stat, "size_diff", stat.size),
                    "blocks": getattr(stat, "count_diff", stat.count)})
    return out


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/realtime/", "/lib/python3"):
        at = filename.rfind(marker)
        if at >= 0:
            return filename[at + len(marker):] if marker != "/realtime/" else (
                "realtime/" + filename[at + len(marker):])
    return filename


def dump(out: Path, types_too: bool) -> None:
    result: dict[str, Any] = {"rss_kib": _rss_kib(), "pauses": _pauses[:]}
    del _pauses[:]
    if not types_too:
        _write(out, result)
        return
    types = _types()
    result["types"] = types.most_common(TOP_TYPES)
    before = _previous.get("types")
    if before is not None:
        grown = types - before
        result["types_grown"] = grown.most_common(TOP_TYPES)
    _previous["types"] = types
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)])
        result["traced_bytes"] = tracemalloc.get_traced_memory()[0]
        result["lines"] = _lines(snapshot, _previous.get("snapshot"))
        result["files"] = _lines(snapshot, _previous.get("snapshot"), "filename")
        _previous["snapshot"] = snapshot
    _write(out, result)


def _write(out: Path, result: dict[str, Any]) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)


def main() -> int:
    out = Path(sys.argv[1])
    # The source tree to measure is the working directory, as with `python -m realtime`; this
    # script's own directory (bench/lib, whose profile.py would shadow the standard one) is not.
    sys.path[0] = os.getcwd()
    signal.signal(signal.SIGUSR1, lambda *_: dump(out, True))
    # SIGUSR2: RSS and pauses only (counting the objects thaws the frozen generation).
    signal.signal(signal.SIGUSR2, lambda *_: dump(out, False))
    gc.callbacks.append(_timed)
    from realtime.cli import main as cli_main

    return int(cli_main(sys.argv[2:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())


class Probed:
    """The bench's side: a probed server process from `source`, and its answers."""

    def __init__(self, dsn: str, port: int, source: Path, out: Path, log: Path,
                 trace: bool = False) -> None:
        import subprocess

        from bench.lib import server

        extra = {"PYTHONTRACEMALLOC": "1"} if trace else {}
        self.out = out
        self.port = port
        with open(log, "wb") as f:
            self.proc: subprocess.Popen[bytes] = server.start(
                port, server.server_env(dsn, extra), source=source, log=f,
                argv=[sys.executable, __file__, str(out), "serve", "--host", "127.0.0.1"])

    def ask(self, types_too: bool = False, within: float = 120.0) -> dict[str, Any]:
        """What the process says on SIGUSR1 (`types_too`) or SIGUSR2."""
        self.out.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1 if types_too else signal.SIGUSR2)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.out.exists():
                return dict(json.loads(self.out.read_text()))
            if self.proc.poll() is not None:
                raise RuntimeError(f"the probed server exited with {self.proc.returncode}")
            time.sleep(0.02)
        raise RuntimeError("the probed server did not answer")


@contextlib.asynccontextmanager
async def probed_server(dsn: str, source: Path, scratch: Path, trace: bool = False
                        ) -> AsyncIterator[tuple[Probed, Any, dict[str, Any]]]:
    """A probed server from `source`, ready, with the bench's subscriber processes, and what
    the probe said before the first socket (object counts too when tracing)."""
    from bench.lib import server
    from bench.lib.net import free_port
    from bench.lib.subscribers import Workers

    port = free_port()
    probed = Probed(dsn, port, source, scratch / "probe.json", scratch / f"server-{port}.log",
                    trace=trace)
    workers = None
    try:
        await server.until_ready(probed.proc, port, within=60)
        await asyncio.sleep(1.0)
        before = probed.ask(types_too=trace)
        workers = Workers(port, "/ws")
        yield probed, workers, before
    finally:
        if workers is not None:
            workers.stop()
        server.stop(probed.proc)
