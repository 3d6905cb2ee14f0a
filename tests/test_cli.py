"""The command line: the two-command quickstart on the embedded PostgreSQL, and --help."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from tests.support.server import free_port


def test_serve_demo_on_embedded_postgres_and_stop_cleanly(tmp_path):
    """Without DATABASE_URL: embedded PostgreSQL, migrations, demo data; SIGTERM stops both."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["REALTIME_DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.Popen([sys.executable, "-m", "realtime", "serve", "--demo", "--port",
                             str(port), "--host", "0.0.0.0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        while time.monotonic() - started < 30:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        demo = httpx.get(f"http://127.0.0.1:{port}/api/demo").json()
        vendor = httpx.get(f"http://127.0.0.1:{port}/api/vendors/{demo['vendor_id']}").json()
        availability = httpx.get(
            f"http://127.0.0.1:{port}/api/vendors/{demo['vendor_id']}/availability").json()
        pidfile = tmp_path / "data" / "pgdata" / "postmaster.pid"
        assert pidfile.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode == 0, output[-3000:]
    assert sorted(s["exclusive"] for s in vendor["services"]) == [False, False, True]
    capacities = {s["capacity"] for s in availability["slots"]}
    assert 1 in capacities and max(capacities) > 1
    assert len(availability["slots"]) > 50
    # auth off without --insecure: loopback only, and the log says so
    assert "binding to 127.0.0.1" in output
    assert not pidfile.exists(), "the embedded PostgreSQL is still running"


def test_help_explains_every_command():
    """`realtime --help` and each command's --help describe what they do."""
    top = subprocess.run([sys.executable, "-m", "realtime", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("serve", "migrate", "seed", "check", "loadtest"):
        assert command in top
        text = subprocess.run([sys.executable, "-m", "realtime", command, "--help"],
                              capture_output=True, text=True, check=True).stdout
        assert "usage: realtime " + command in text
    serve = subprocess.run([sys.executable, "-m", "realtime", "serve", "--help"],
                           capture_output=True, text=True, check=True).stdout
    for flag in ("--host", "--port", "--workers", "--demo", "--insecure"):
        assert flag in serve
