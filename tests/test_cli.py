"""The command line: the two-command quickstart on the embedded PostgreSQL, --help, and the
port a server binds (port 0, or a known one taken meanwhile)."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.support.server import ServerProcess, listening_port, port_from_log
from tests.support.tls import self_signed


def test_serve_demo_on_embedded_postgres_and_stop_cleanly(tmp_path, data_dir):
    """Without DATABASE_URL: embedded PostgreSQL, migrations, demo data; SIGTERM stops both."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["REALTIME_DATA_DIR"] = str(data_dir)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "realtime", "serve", "--demo", "--port",
                                 "0", "--host", "0.0.0.0"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port_from_log(proc, log)}"
        started = time.monotonic()
        while time.monotonic() - started < 30:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        demo = httpx.get(f"{base}/api/demo").json()
        vendor = httpx.get(f"{base}/api/vendors/{demo['vendor_id']}").json()
        availability = httpx.get(f"{base}/api/vendors/{demo['vendor_id']}/availability").json()
        pidfile = data_dir / "pgdata" / "postmaster.pid"
        assert pidfile.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    output = log.read_text()
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


@pytest.mark.parametrize("mode", ["one process", "--workers 2", "tls"])
def test_serve_on_port_zero_says_the_port_it_bound(database_url, tmp_path, mode):
    """`--port 0`: the kernel picks the port and one JSON line names it, even at
    LOG_LEVEL=warning, with one process, with --workers 2 (bound in the parent) and with TLS
    (an https URL); the server answers on that port, and SIGTERM stops it cleanly."""
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "warning"}
    env.pop("REDIS_URL", None)
    args = [sys.executable, "-m", "realtime", "serve", "--port", "0"]
    verify: ssl.SSLContext | bool = True
    if mode == "--workers 2":
        args += ["--workers", "2"]
    if mode == "tls":
        cert, key = self_signed(tmp_path)
        args += ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
        verify = ssl.create_default_context(cafile=str(cert))
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        port = port_from_log(proc, log, within=30)
        lines = [json.loads(line) for line in log.read_text().splitlines()
                 if '"listening"' in line]
        scheme = "https" if mode == "tls" else "http"
        assert port != 0
        assert len(lines) == 1, lines
        assert lines[0]["url"] == f"{scheme}://127.0.0.1:{port}"
        assert (lines[0]["host"], lines[0]["tls"]) == ("127.0.0.1", mode == "tls")
        assert lines[0]["workers"] == (2 if mode == "--workers 2" else 1)
        deadline = time.monotonic() + 30
        while True:
            try:
                status = httpx.get(f"{scheme}://127.0.0.1:{port}/readyz", timeout=2,
                                   verify=verify).status_code
            except httpx.HTTPError:
                status = 0
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 200, log.read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, log.read_text()[-3000:]


def test_check_attaches_to_the_embedded_postgres_of_a_running_server(tmp_path, data_dir):
    """`check` beside a `serve` on the embedded PostgreSQL says it attaches, and leaves it up."""
    env = _without_database(tmp_path)
    env["REALTIME_DATA_DIR"] = str(data_dir)
    serve_log = tmp_path / "serve.log"
    with open(serve_log, "wb") as out:
        serve = subprocess.Popen([sys.executable, "-m", "realtime", "serve", "--demo", "--port",
                                  "0"], env=env, stdout=out, stderr=subprocess.STDOUT)
    pidfile = data_dir / "pgdata" / "postmaster.pid"
    try:
        port = port_from_log(serve, serve_log)
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


def test_a_known_port_taken_meanwhile_is_tried_again(database_url, tmp_path):
    """ServerProcess on a port it was given (as for a restart) that another process holds:
    `realtime serve` exits 1 naming it, and the helper starts it again until the port is
    free, then serves there; a start on port 0 learns its port from the listening line."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServerProcess(database_url, port=port, log_dir=tmp_path)
        starting = threading.Thread(target=server.start, kwargs={"timeout": 60})
        starting.start()
        deadline = time.monotonic() + 30
        while server.log().count("already in use") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = server.log().count("already in use")
    starting.join(60)
    try:
        assert refused >= 2, server.log()
        assert not starting.is_alive() and server.proc is not None, server.log()
        assert server.port == port
        assert httpx.get(server.url + "/readyz", timeout=5).status_code == 200
    finally:
        server.stop()
    fresh = ServerProcess(database_url, log_dir=tmp_path).start()
    try:
        assert fresh.port not in (0, port)
        assert listening_port(fresh.log()) == fresh.port
        assert httpx.get(fresh.url + "/healthz", timeout=5).status_code == 200
    finally:
        fresh.stop()
