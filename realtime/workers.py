"""The workers of one `realtime serve --workers N`, seen from outside as one server.

The workers share one listening socket, so a scrape of /metrics (or a balancer's /readyz)
reaches whichever worker accepts it. Alone, each would answer for itself: counters would seem
to jump backwards from one scrape to the next, gauges would show a fraction of the sockets.
So each worker:

- claims an index, 0..N-1, by holding an exclusive lock on `worker-<i>.lock` in a directory
  its parent made for this server (REALTIME_WORKERS_DIR). The kernel drops the lock when the
  process exits, however it exits, so the worker uvicorn starts in place of a dead one takes
  the dead one's index: dashboards keep one series per index across restarts;
- publishes, once a second and whenever it answers /metrics, its metrics and what is down or
  degraded in it, as `worker-<i>.json` (written aside, then renamed: a reader never sees half
  a file);
- answers /metrics with its own series (read at that moment) and those every other live worker
  published last (at most a second ago), each with a `worker` label, one HELP and TYPE a
  family.

A worker counts as live while its process runs as a child of the same parent: the file of a
worker that was killed is skipped from the moment it exits (a zombie, not yet reaped, serves
nothing), and a pid reused by an unrelated process is not mistaken for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from realtime.shared.processes import pid_exists

log = logging.getLogger("realtime.workers")

DIR_VARIABLE = "REALTIME_WORKERS_DIR"  # set by `realtime serve --workers N` for its workers
COUNT_VARIABLE = "REALTIME_WORKERS"
PUBLISH_EVERY = 1.0  # seconds: how old another worker's series may be in a scrape
MOST_BYTES = 8 << 20  # a published file larger than this is skipped, not read into memory
PREFIX = "realtime-workers-"  # then the pid of `realtime serve`, a dash, a random part
LEFTOVER_AFTER = 60.0  # seconds without a file published: a directory no server uses
CLAIM_FOR = 5.0  # seconds a starting worker waits for a free index (its predecessor exiting)

Conditions = tuple[dict[str, str], dict[str, str]]  # (down, degraded), as /readyz names them


def _parent_of(pid: int) -> int | None:
    """The parent of a running process; None if it is gone or a zombie (killed, not yet
    reaped: it serves nothing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[1])


def _running(pid: int, parent: int) -> bool:
    if Path("/proc/self/stat").exists():
        return _parent_of(pid) == parent
    return pid_exists(pid)  # no /proc (not Linux): whether the pid exists at all


def _families(collector: Collector) -> list[list[Any]]:
    """The collector's metrics as plain lists: [name, help, type, unit, [[sample, labels,
    value], ...]] (timestamps and exemplars are not used by this server)."""
    return [[m.name, m.documentation, m.type, m.unit,
             [[s.name, s.labels, s.value] for s in m.samples]] for m in collector.collect()]


class Merged:
    """A collector over several workers' families, each sample labelled with its worker."""

    def __init__(self, by_worker: Iterable[tuple[str, int, list[list[Any]]]]) -> None:
        self.by_worker = sorted(by_worker, key=lambda w: (len(w[0]), w[0]))

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for worker, _, families in self.by_worker:
            for name, documentation, typ, unit, samples in families:
                metric = merged.get(name)
                if metric is None:
                    metric = merged[name] = Metric(name, documentation, typ, unit)
                for sample, labels, value in samples:
                    metric.add_sample(sample, {**labels, "worker": worker}, value)
        yield from merged.values()
        info = InfoMetricFamily("realtime_worker", "The process behind each worker index",
                                labels=["worker"])
        for worker, pid, _ in self.by_worker:
            info.add_metric([worker], {"pid": str(pid)})
        yield info


class Workers:
    """This worker's place among the workers of one server: its index, its published file,
    and the reading of the others'."""

    def __init__(self, directory: Path, count: int, parent: int | None = None,
                 registry: Collector = REGISTRY) -> None:
        self.directory = directory
        self.count = count
        self.parent = os.getppid() if parent is None else parent
        self.registry = registry
        self.pid = os.getpid()
        self.index: int | None = None
        self._lock: int | None = None
        self._conditions: Conditions = ({}, {})

    @property
    def label(self) -> str:
        # No index (never expected: N workers, N indexes): the pid, so that no two collide.
        return str(self.index) if self.index is not None else f"pid-{self.pid}"

    async def claim(self) -> None:
        """Takes the lowest free index. A worker started in place of one that is still exiting
        waits for its lock (at most CLAIM_FOR seconds)."""
        for _ in range(int(CLAIM_FOR / 0.1)):
            if self._try_claim():
                return
            await asyncio.sleep(0.1)
        log.warning("no free worker index of %d: this worker's metrics are its own only",
                    self.count, extra={"directory": str(self.directory)})

    def _try_claim(self) -> bool:
        for index in range(self.count):
            fd = os.open(self.directory / f"worker-{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.index, self._lock = index, fd
            return True
        return False

    def _path(self, index: int) -> Path:
        return self.directory / f"worker-{index}.json"

    def publish(self, conditions: Conditions | None = None,
                families: list[list[Any]] | None = None) -> None:
        """Writes this worker's file: its series (`families`, or read now) and its conditions
        (the last given, if none)."""
        if conditions is not None:
            self._conditions = conditions
        if self.index is None:
            return
        body = json.dumps({"pid": self.pid, "parent": self.parent, "index": self.index,
                           "down": self._conditions[0], "degraded": self._conditions[1],
                           "families": _families(self.registry) if families is None
                           else families}).encode()
        aside = self.directory / f".worker-{self.index}.{self.pid}.tmp"
        aside.write_bytes(body)
        os.replace(aside, self._path(self.index))

    async def run(self, conditions: Callable[[], Conditions]) -> None:
        """Publishes every PUBLISH_EVERY seconds (a supervised task)."""
        while True:
            self.publish(conditions())
            await asyncio.sleep(PUBLISH_EVERY)

    def others(self) -> list[dict[str, Any]]:
        """What every other live worker published last."""
        found = []
        for index in range(self.count):
            if index == self.index:
                continue
            try:
                with open(self._path(index), "rb") as f:
                    body = f.read(MOST_BYTES + 1)
            except FileNotFoundError:
                continue  # not published yet (starting) or stopped cleanly
            if len(body) > MOST_BYTES:
                log.warning("worker %d published more than %d bytes: left out", index, MOST_BYTES)
                continue
            try:
                published = json.loads(body)
            except ValueError:
                continue
            if published.get("parent") == self.parent and _running(published["pid"], self.parent):
                found.append(published)
        return found

    def exposition(self) -> bytes:
        """The Prometheus text of every live worker, this one read now. What is read is also
        published, so that every series moves only forward from one scrape to the next,
        whichever worker answers each: a worker's series in a scrape are always its latest."""
        families = _families(self.registry)
        self.publish(families=families)
        own = (self.label, self.pid, families)
        rest = [(str(w["index"]), int(w["pid"]), w["families"]) for w in self.others()]
        return generate_latest(Merged([own, *rest]))

    def conditions(self, own: Conditions) -> Conditions:
        """This worker's (down, degraded) with every other live worker's added, each of
        those naming its worker: a connection to the port may reach any of them."""
        down, degraded = dict(own[0]), dict(own[1])
        for worker in sorted(self.others(), key=lambda w: int(w["index"])):
            for into, theirs in ((down, worker["down"]), (degraded, worker["degraded"])):
                for what, reason in theirs.items():
                    mine = into.get(what)
                    note = f"worker {worker['index']}: {reason}"
                    into[what] = note if mine is None else f"{mine}; {note}"
        return down, degraded

    def close(self) -> None:
        """On a clean stop: its file removed (its series leave /metrics at once), its index
        freed."""
        if self.index is not None:
            with contextlib.suppress(OSError):
                self._path(self.index).unlink()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        if os.getppid() != self.parent:
            self._remove_if_last()

    def _remove_if_last(self) -> None:
        """The parent died without removing the directory (it was killed: its workers stop
        by themselves): the last worker out removes it, seeing no index held."""
        held = []
        try:
            for index in range(self.count):
                held.append(os.open(self.directory / f"worker-{index}.lock",
                                    os.O_RDWR | os.O_CREAT, 0o600))
                fcntl.flock(held[-1], fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(self.directory, ignore_errors=True)
        except OSError:
            return  # another worker still runs (or the directory is gone): it is not ours to remove
        finally:
            for fd in held:
                os.close(fd)


def _base() -> Path:
    # In memory where there is such a place: every worker rewrites its file every second.
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def remove_leftovers(base: Path) -> list[Path]:
    """Removes the directories of servers that were killed before they could (SIGKILL to
    `realtime serve` itself): those whose name's pid runs no more and in which no file has
    been published for LEFTOVER_AFTER seconds (a live server's workers publish every second,
    seen from whatever pid namespace). What was removed."""
    removed = []
    for path in base.glob(f"{PREFIX}*-*"):
        pid = path.name[len(PREFIX):].split("-", 1)[0]
        try:
            idle = time.time() - path.stat().st_mtime
        except OSError:
            continue
        if not pid.isdigit() or not path.is_dir() or idle < LEFTOVER_AFTER:
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except PermissionError:  # another user's server, running
            continue
    return removed


@contextlib.contextmanager
def directory_for_workers(count: int, base: Path | None = None) -> Iterator[Path]:
    """The directory of one `realtime serve --workers N`, named in the environment of the
    workers started within it; removed afterwards."""
    base = _base() if base is None else base
    remove_leftovers(base)
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base)
    os.environ[DIR_VARIABLE] = path
    os.environ[COUNT_VARIABLE] = str(count)
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.environ.pop(DIR_VARIABLE, None)
        os.environ.pop(COUNT_VARIABLE, None)


def from_environment() -> Workers | None:
    """This worker's Workers under `realtime serve --workers N`; None in a single process."""
    directory = os.environ.get(DIR_VARIABLE)
    count = int(os.environ.get(COUNT_VARIABLE, "0") or 0)
    if not directory or count < 2 or not Path(directory).is_dir():
        return None
    return Workers(Path(directory), count)
