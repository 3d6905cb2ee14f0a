"""The command line: the two-command quickstart on the embedded PostgreSQL, and --help."""

from __future__ import annotations

import os
import re
import signal
import socket
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


def _without_database(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["REALTIME_DATA_DIR"] = str(tmp_path / "data")
    return env


def test_serve_on_a_taken_port_fails_fast_and_creates_nothing(tmp_path):
    """A taken port: exit 1 naming host:port, before any data directory or PostgreSQL exists."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "realtime", "serve", "--port", str(port)],
                                env=_without_database(tmp_path), capture_output=True, text=True,
                                timeout=60)
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"127.0.0.1:{port}" in result.stderr
    assert "already in use" in result.stderr
    assert not (tmp_path / "data").exists()
    assert "embedded PostgreSQL" not in result.stderr
    assert elapsed < 10


def test_serve_on_port_zero_picks_a_free_port(database_url):
    """`--port 0` still works: the server binds a free port, says which, and answers there."""
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "realtime", "serve", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            port = int(found.group(1)) if found else None
        assert port, "no 'running on' line"
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_check_attaches_to_the_embedded_postgres_of_a_running_server(tmp_path):
    """`check` beside a `serve` on the embedded PostgreSQL says it attaches, and leaves it up."""
    port = free_port()
    env = _without_database(tmp_path)
    serve_log = tmp_path / "serve.log"
    with open(serve_log, "wb") as out:
        serve = subprocess.Popen([sys.executable, "-m", "realtime", "serve", "--demo", "--port",
                                  str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    pidfile = tmp_path / "data" / "pgdata" / "postmaster.pid"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert serve.poll() is None, serve_log.read_text()[-3000:]
            time.sleep(0.1)
        postmaster = int(pidfile.read_text().split()[0])
        check = subprocess.run([sys.executable, "-m", "realtime", "check"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "attaching to the embedded PostgreSQL already running" in check.stderr
        assert f"(pid {postmaster})" in check.stderr
        assert "starting" not in check.stderr
        # check's exit must not have stopped the server's PostgreSQL.
        assert int(pidfile.read_text().split()[0]) == postmaster
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/api/demo", timeout=5).status_code == 200
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
    output = serve_log.read_text()
    assert serve.returncode == 0, output[-3000:]
    assert "no DATABASE_URL: starting the embedded PostgreSQL" in output
    assert not pidfile.exists(), "the last user's exit should stop the embedded PostgreSQL"


def test_serve_raises_the_soft_limit_on_open_files_to_the_hard_one():
    """A process started with a soft limit of 256 open files (a socket is one) has it raised
    to its hard limit by what `realtime serve` calls first; a second call changes nothing."""
    code = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "from realtime.cli import raise_open_files\n"
        "print(raise_open_files(), raise_open_files(), resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    raised = hard if hard != resource.RLIM_INFINITY else 1 << 20
    assert out.split("\n")[0] == f"(256, {raised}) ({raised}, {raised}) ({raised}, {hard})"
