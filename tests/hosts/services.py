"""The processes of the host network: PostgreSQL, Redis, the balancers and `realtime serve`.

Every process is started in its own session (process group), inside its host's namespace, with
its output in a log file; `stop()` ends the whole group, so no backend or worker outlives a test.
The balancers' configurations are read from docs/deployment.md, so the tests run exactly what
the deployment doc tells operators to run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from tests.hosts.netns import Network, run

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"


def _pg_bin() -> Path:
    """The newest PostgreSQL server binaries Debian's packages installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
APP_PORT = 8000
LB_PORT = 80
# The addresses docs/deployment.md's configurations name for the two servers.
DOC_SERVERS = ("10.0.0.11", "10.0.0.12")


def wait_for(what: str, predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> float:
    """Polls `predicate` until true; returns the seconds it took; fails naming `what`."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)
    return time.monotonic() - start


class Process:
    """One process (and its children) in a host namespace."""

    def __init__(self, net: Network, host: str, argv: Sequence[str], log: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.net, self.host, self.argv, self.log_path = net, host, list(argv), log
        self.env, self.cwd = dict(env or os.environ), cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.net.exec_argv(self.host, self.argv), env=self.env,
                                         cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        """Signal the group, wait up to `timeout`, then SIGKILL it; returns the exit code."""
        if self.proc is None:
            return None
        self.send(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.proc.wait()
        self.send(signal.SIGKILL)  # children that outlived their parent
        code = self.proc.returncode
        self.proc = None
        return code

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""


def _as_postgres(argv: Sequence[str]) -> list[str]:
    # PostgreSQL refuses to run as root; setpriv execs in place, so the pid stays the server's.
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv]


class Postgres:
    """A PostgreSQL cluster of its own on the db host: initdb'd by the harness, deleted after.

    Its own cluster rather than the machine's: the machine's listens on loopback only, and a
    cluster inside the db namespace puts a real link (that tests can cut) between the servers
    and their database, without touching the machine's configuration.
    """

    def __init__(self, net: Network, logdir: Path) -> None:
        self.net = net
        self.dir = Path(tempfile.mkdtemp(prefix="rth-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.process = Process(net, "db", _as_postgres([
            str(PG_BIN / "postgres"), "-D", str(self.dir / "data"),
            "-c", f"listen_addresses={net.ip('db')}", "-c", "port=5432",
            "-c", f"unix_socket_directories={self.dir}", "-c", "max_connections=200",
            # A test database: durability is not what is under test, speed on 2 cores is.
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]), logdir / "postgres.log")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.net.ip('db')}:5432/{database}"

    def start(self) -> Postgres:
        run(*_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
                           "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"]))
        with open(self.dir / "data" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all 10.77.{self.net.subnet}.0/24 trust\n")
        self.process.start()
        wait_for("PostgreSQL on the db host", lambda: _up(self.process, self.net.ip("db"), 5432)
                 and run(str(PG_BIN / "pg_isready"), "-h", self.net.ip("db"), "-q",
                         check=False).returncode == 0, 30)
        return self

    def stop(self) -> None:
        self.process.stop(signal.SIGINT)  # fast shutdown: clients are not waited for
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    def __init__(self, net: Network, logdir: Path) -> None:
        self.net = net
        binary = shutil.which("redis-server") or "redis-server"
        self.process = Process(net, "redis", [binary, "--bind", net.ip("redis"), "--port", "6379",
                                              "--save", "", "--appendonly", "no",
                                              "--protected-mode", "no", "--dir", str(logdir)],
                               logdir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://{self.net.ip('redis')}:6379/0"

    def start(self) -> Redis:
        self.process.start()
        wait_for("Redis on the redis host", lambda: _up(self.process, self.net.ip("redis"), 6379), 15)
        return self

    def stop(self) -> None:
        self.process.stop()


def _up(process: Process, host: str, port: int) -> bool:
    """Whether `process` accepts on (host, port); fails at once, with its log, if it exited."""
    if not process.running:
        raise AssertionError(f"{process.argv[0]} exited:\n{process.log()}")
    return _accepts(host, port)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def doc_block(language: str) -> str:
    """The first fenced block of `language` in docs/deployment.md."""
    text = DEPLOYMENT_DOC.read_text()
    found = re.search(rf"^```{language}\n(.*?)^```", text, re.M | re.S)
    assert found, f"docs/deployment.md has no ```{language} block"
    return found.group(1)


def _with_servers(config: str, net: Network) -> str:
    for doc_ip, host in zip(DOC_SERVERS, ("app1", "app2"), strict=True):
        assert f"{doc_ip}:{APP_PORT}" in config, f"the documented config no longer names {doc_ip}"
        config = config.replace(f"{doc_ip}:{APP_PORT}", f"{net.ip(host)}:{APP_PORT}")
    return config


class HAProxy:
    """docs/deployment.md's HAProxy configuration on the lb host, with its stats socket."""

    def __init__(self, net: Network, logdir: Path) -> None:
        self.net = net
        self.socket_path = logdir / "haproxy.sock"
        config = _with_servers(doc_block("haproxy"), net)
        assert "/run/haproxy/admin.sock" in config
        config = config.replace("/run/haproxy/admin.sock", str(self.socket_path))
        self.config_path = logdir / "haproxy.cfg"
        self.config_path.write_text(config)
        self.process = Process(net, "lb", ["haproxy", "-db", "-f", str(self.config_path)],
                               logdir / "haproxy.log")

    @property
    def host(self) -> str:
        return self.net.ip("lb")

    def start(self) -> HAProxy:
        run("haproxy", "-c", "-q", "-f", str(self.config_path))  # the documented config is valid
        self.process.start()
        wait_for("HAProxy on the lb host", lambda: _up(self.process, self.host, LB_PORT)
                 and self.socket_path.exists(), 15)
        return self

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict[str, str]]:
        """The backend's servers as `show stat` reports them: name -> {status, stot, ...}."""
        text = self.command("show stat -1 4 -1").lstrip("# ")  # servers only
        rows = csv.DictReader(io.StringIO(text))
        return {r["svname"]: r for r in rows if r["pxname"] == "realtime" and r["svname"] not in
                ("FRONTEND", "BACKEND")}

    def status(self) -> dict[str, str]:
        return {name: row["status"] for name, row in self.servers().items()}

    def stop(self) -> None:
        self.process.stop()


class Nginx:
    """docs/deployment.md's nginx configuration on its own balancer host."""

    def __init__(self, net: Network, logdir: Path) -> None:
        self.net = net
        self.config_path = logdir / "nginx.conf"
        self.config_path.write_text(_with_servers(doc_block("nginx"), net))
        self.logdir = logdir
        self.process = Process(net, "nginx", [
            "nginx", "-c", str(self.config_path), "-p", str(logdir),
            "-g", f"daemon off; pid {logdir / 'nginx.pid'}; error_log {logdir / 'nginx-error.log'};",
        ], logdir / "nginx.log")

    @property
    def host(self) -> str:
        return self.net.ip("nginx")

    def start(self) -> Nginx:
        run("nginx", "-t", "-q", "-c", str(self.config_path), "-p", str(self.logdir),
            "-g", f"pid {self.logdir / 'nginx-test.pid'}; error_log stderr;")
        self.process.start()
        wait_for("nginx on its balancer host", lambda: _up(self.process, self.host, LB_PORT), 15)
        return self

    def stop(self) -> None:
        self.process.stop(signal.SIGQUIT)  # graceful: workers finish, then the master exits


class Realtime:
    """`python -m realtime serve --host 0.0.0.0 --insecure` on a server host."""

    def __init__(self, net: Network, host: str, env: Mapping[str, str], logdir: Path) -> None:
        self.net, self.host = net, host
        self.process = Process(
            net, host,
            [sys.executable, "-m", "realtime", "serve", "--host", "0.0.0.0",
             "--port", str(APP_PORT), "--insecure"],
            logdir / f"{host}.log",
            env={**os.environ, "REALTIME_RATE_LIMIT": "0", "LOG_LEVEL": "warning", **env},
            cwd=logdir)

    @property
    def url(self) -> str:
        return f"http://{self.net.ip(self.host)}:{APP_PORT}"

    def start(self) -> Realtime:
        self.process.start()
        return self

    def readyz(self, timeout: float = 3) -> int:
        """/readyz's status, asked of this server directly (not through a balancer); 0: no answer."""
        try:
            return httpx.get(self.url + "/readyz", timeout=timeout).status_code
        except httpx.HTTPError:
            return 0

    def wait_ready(self, timeout: float = 30) -> float:
        def ready() -> bool:
            if not self.process.running:
                raise AssertionError(f"{self.host} exited:\n{self.process.log()}")
            return self.readyz(1) == 200

        return wait_for(f"{self.host} ready", ready, timeout)

    def connections(self) -> int:
        """Its open WebSockets, from its own /metrics."""
        text = httpx.get(self.url + "/metrics", timeout=5).text
        found = re.search(r"^realtime_ws_connections (\S+)$", text, re.M)
        return int(float(found.group(1))) if found else 0

    def kill(self) -> None:
        self.process.send(signal.SIGKILL)
        assert self.process.proc is not None
        self.process.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        return self.process.stop(sig, timeout)
