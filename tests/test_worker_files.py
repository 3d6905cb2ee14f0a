"""realtime/workers.py on real files and real processes: indexes claimed by lock, published
files merged into one exposition, and the files of dead or foreign processes, or too large,
left out. (tests/scaleout/test_worker_metrics.py runs the same through `realtime serve`.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from realtime import workers
from realtime.workers import Workers


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A real process whose parent is this one, as a worker's parent is the supervisor."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def worker(directory: Path, bookings: float, pid: int | None = None) -> Workers:
    registry = CollectorRegistry()
    Counter("realtime_bookings_total", "Bookings", ["outcome"], registry=registry
            ).labels("ok").inc(bookings)
    w = Workers(directory, 2, parent=os.getpid(), registry=registry)
    if pid is not None:
        w.pid = pid  # published in the name of that (real) process
    assert w._try_claim()
    return w


def booked(text: bytes) -> dict[str, float]:
    return {s.labels["worker"]: s.value for f in text_string_to_metric_families(text.decode())
            for s in f.samples if s.name == "realtime_bookings_total"}


def test_indexes_are_claimed_once_and_freed_on_close(tmp_path: Path) -> None:
    """Two workers take 0 and 1, a third finds none; a closed worker's index is taken again."""
    first, second = worker(tmp_path, 0), worker(tmp_path, 0)
    assert (first.index, second.index) == (0, 1)
    third = Workers(tmp_path, 2, parent=os.getpid())
    assert not third._try_claim() and third.label == f"pid-{os.getpid()}"
    first.close()
    assert third._try_claim() and third.index == 0
    second.close()
    third.close()


def test_one_exposition_of_every_live_worker(tmp_path: Path,
                                             child: subprocess.Popen[bytes]) -> None:
    """The answering worker's series and the other's published ones, each labelled, one TYPE
    a family, and the pid behind each index; gone once the other's process has exited."""
    me, other = worker(tmp_path, 3), worker(tmp_path, 5, pid=child.pid)
    other.publish(({}, {}))
    text = me.exposition()
    assert booked(text) == {"0": 3.0, "1": 5.0}
    assert text.count(b"# TYPE realtime_bookings_total counter") == 1
    assert b'realtime_worker_info{pid="%d",worker="1"} 1.0' % child.pid in text
    child.kill()
    child.wait()
    assert booked(me.exposition()) == {"0": 3.0}


def test_files_of_foreign_processes_and_too_large_ones_are_left_out(
        tmp_path: Path, child: subprocess.Popen[bytes]) -> None:
    """A file naming a process of another parent (a reused pid) is skipped, and so is one over
    MOST_BYTES."""
    me = worker(tmp_path, 1)
    foreign = worker(tmp_path, 7, pid=1)
    foreign.publish(({}, {}))
    assert booked(me.exposition()) == {"0": 1.0}
    foreign.pid = child.pid
    foreign.publish(({}, {}))
    assert booked(me.exposition()) == {"0": 1.0, "1": 7.0}
    with open(tmp_path / "worker-1.json", "ab") as f:  # still valid JSON, if it were read
        f.write(b" " * workers.MOST_BYTES)
    assert booked(me.exposition()) == {"0": 1.0}


def test_readiness_names_the_other_workers(tmp_path: Path,
                                           child: subprocess.Popen[bytes]) -> None:
    """What another worker published as down or degraded is added, naming that worker."""
    me, other = worker(tmp_path, 0), worker(tmp_path, 0, pid=child.pid)
    other.publish(({"listener": "lost"}, {"redis": "away"}))
    down, degraded = me.conditions(({"listener": "gone"}, {}))
    assert down == {"listener": "gone; worker 1: lost"} and degraded == {"redis": "worker 1: away"}
    assert me.conditions(({}, {})) == ({"listener": "worker 1: lost"}, {"redis": "worker 1: away"})


def test_only_under_several_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No directory or one worker: None (one process answers for itself, unlabelled)."""
    monkeypatch.delenv(workers.DIR_VARIABLE, raising=False)
    assert workers.from_environment() is None
    monkeypatch.setenv(workers.DIR_VARIABLE, str(tmp_path))
    monkeypatch.setenv(workers.COUNT_VARIABLE, "1")
    assert workers.from_environment() is None
    monkeypatch.setenv(workers.COUNT_VARIABLE, "2")
    found = workers.from_environment()
    assert found is not None and found.count == 2 and found.directory == tmp_path


def test_a_scrape_publishes_what_it_showed(tmp_path: Path,
                                           child: subprocess.Popen[bytes]) -> None:
    """What a worker showed of itself in a scrape, a scrape through another worker right after
    shows too (not its older periodic file): no counter goes back between scrapes."""
    registry = CollectorRegistry()
    counter = Counter("realtime_bookings_total", "Bookings", ["outcome"], registry=registry)
    answering = Workers(tmp_path, 2, parent=os.getpid(), registry=registry)
    answering.pid = child.pid
    assert answering._try_claim()
    other = worker(tmp_path, 0)
    counter.labels("ok").inc(3)
    answering.publish(({}, {"redis": "away"}))
    counter.labels("ok").inc(2)
    assert booked(other.exposition()) == {"0": 3.0, "1": 0.0}
    assert booked(answering.exposition())["0"] == 5.0
    assert booked(other.exposition()) == {"0": 5.0, "1": 0.0}
    assert other.conditions(({}, {})) == ({}, {"redis": "worker 0: away"})


def test_leftovers_of_killed_servers_are_removed(tmp_path: Path) -> None:
    """A directory named for a pid that runs no more, unused for a minute, is removed when the
    next server starts; a running server's, or a recently used one, stays."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    old = time.time() - 2 * workers.LEFTOVER_AFTER
    dead = tmp_path / f"{workers.PREFIX}{gone.pid}-abc"
    recent = tmp_path / f"{workers.PREFIX}{gone.pid}-def"
    running = tmp_path / f"{workers.PREFIX}{os.getpid()}-ghi"
    for path in (dead, recent, running):
        path.mkdir()
        (path / "worker-0.json").write_text("{}")
    for path in (dead, running):
        os.utime(path, (old, old))
    with workers.directory_for_workers(2, base=tmp_path) as mine:
        assert os.environ[workers.DIR_VARIABLE] == str(mine) and mine.is_dir()
        assert os.environ[workers.COUNT_VARIABLE] == "2"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            p.name for p in (mine, recent, running))
    assert not mine.exists() and workers.DIR_VARIABLE not in os.environ
