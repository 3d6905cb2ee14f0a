"""A short `realtime loadtest` run against a real server and a real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _loadtest(url: str, *extra: str, timeout: float = 120) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "realtime", "loadtest", "--url", url, "--json", "--quiet",
         *extra],
        capture_output=True, text=True, timeout=timeout,
    )
    assert proc.stdout, f"no report; exit {proc.returncode}; stderr:\n{proc.stderr[-3000:]}"
    return proc.returncode, json.loads(proc.stdout)


def test_short_run_loses_nothing(server) -> None:
    """200 sockets, 40 bookings/s for 4 s: every update reaches every subscriber once, in order."""
    code, r = _loadtest(server.url, "--sockets", "200", "--channels", "4", "--rate", "40",
                        "--duration", "4")
    d, b, c = r["delivery"], r["bookings"], r["connect"]
    assert code == 0, r
    assert r["ok"] is True
    assert c["connected"] == 200 and c["failed"] == 0
    assert b["succeeded"] >= 100 and b["errors"] == {}
    assert (d["lost"], d["duplicated"], d["out_of_order"], d["state_mismatched"]) == (0, 0, 0, 0)
    # Each booking reaches the 50 subscribers of its slot's channel exactly once.
    assert d["delivered"] == b["succeeded"] * 50
    assert d["latency"]["count"] == d["delivered"]
    assert 0 < d["latency"]["p50_ms"] <= d["latency"]["p99_ms"] <= d["latency"]["max_ms"]
    assert d["unexpected_closes"] == 0 and d["error_frames"] == 0
    assert d["conflicts_seen"] == 0 and d["conflicts_missed"] == 0


def test_hot_slot_with_conflicts_and_reconnect_storm(server) -> None:
    """A hot slot that fills up and a mid-run reconnect storm: still no loss or disorder."""
    code, r = _loadtest(server.url, "--sockets", "100", "--channels", "2", "--rate", "50",
                        "--duration", "4", "--hot-slot", "--capacity", "60",
                        "--reconnect-at", "2")
    d, b = r["delivery"], r["bookings"]
    assert code == 0, r
    assert b["succeeded"] == 60 and b["conflicts"] > 0
    assert (d["lost"], d["duplicated"], d["out_of_order"], d["state_mismatched"]) == (0, 0, 0, 0)
    assert r["reconnect"]["latency"]["count"] == 100
    # Lost races reach the 50 subscribers of the hot slot's channel; the server may coalesce
    # a burst of conflicts on one slot, so not necessarily every one.
    assert 0 < d["conflicts_seen"] <= b["conflicts"] * 50
    assert d["conflicts_seen"] + d["conflicts_missed"] == b["conflicts"] * 50


def test_unreachable_server_exits_2() -> None:
    """A server that does not answer means the run could not be carried out: exit 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "realtime", "loadtest", "--url", "http://127.0.0.1:9",
         "--sockets", "1", "--duration", "1", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "cannot reach the server" in proc.stderr
