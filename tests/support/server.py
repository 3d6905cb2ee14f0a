"""A real server process (`python -m realtime serve`) on a port the kernel picks, for tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

# What `realtime serve` says, exiting 1 at once, when its port is taken (realtime/cli.py).
PORT_TAKEN = "already in use"


def free_port() -> int:
    """A port nothing listens on now. Only for a port nothing will listen on (an address that
    must refuse), or one a test must know before a server starts (then start on it with
    retries, as ServerProcess does): anything may take it before the server binds it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening_port(text: str) -> int | None:
    """The port in `realtime serve`'s start-up line {"event": "listening", "port": N, ...}
    among the log lines `text`, or None before it is written."""
    for line in text.splitlines():
        if '"listening"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "listening":
            return int(entry["port"])
    return None


def port_from_log(proc: subprocess.Popen[bytes], log: Path, within: float = 60) -> int:
    """The port a `realtime serve` started on port 0, writing to `log`, says it listens on;
    raises, with the log, if it exits or stays silent `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        text = log.read_text(errors="replace")
        port = listening_port(text)
        if port is not None:
            return port
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{text[-5000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not say its port within {within:g} s:\n"
                               f"{text[-5000:]}")
        time.sleep(0.02)


def redis_answers(port: int) -> bool:
    """Whether a Redis on 127.0.0.1:`port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(binary: str, port: int, directory: Path | str,
                within: float = 10) -> subprocess.Popen[bytes]:
    """redis-server on 127.0.0.1:`port`, once it answers PING. Redis cannot name a port the
    kernel chose (its `--port 0` turns TCP off), so its port is chosen first, or kept for a
    restart; another process may hold it meanwhile (even as a client's ephemeral port), so a
    redis-server that exits without answering is started again until `within` runs out."""
    deadline = time.monotonic() + within
    while True:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            if redis_answers(port) and proc.poll() is None:
                return proc
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"redis-server did not answer on port {port} in {within:g} s")
            time.sleep(0.05)
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server exited with {proc.returncode} on port {port}")
        time.sleep(0.2)


class ServerProcess:
    """Starts, stops and restarts `realtime serve` against one database.

    The first start is on port 0, and the port is read from the server's own start-up line,
    so no other process can take it in between. A restart reuses that port (clients keep
    their URL), as does a `port` the caller chose (e.g. to name it in the environment): a
    known port can be taken meanwhile, so such a start tries again while it is in use."""

    def __init__(self, database_url: str, env: dict[str, str] | None = None,
                 port: int | None = None, log_dir: Path | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.database_url = database_url
        # (certificate, key): serve https/wss; clients trust that certificate (`ssl_context`).
        self.tls = tls
        self.ssl_context = ssl.create_default_context(cafile=str(tls[0])) if tls else None
        self.port = port or 0
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        fd, name = tempfile.mkstemp(prefix="realtime-", suffix=".log",
                                    dir=log_dir or os.environ.get("TMPDIR", "/tmp"))
        os.close(fd)
        self.log_path = Path(name)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._known_port()}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self._known_port()}/ws"

    def _known_port(self) -> int:
        if not self.port:
            raise RuntimeError("the server's port is known once it has started")
        return self.port

    def start(self, timeout: float = 30, wait_ready: bool = True) -> ServerProcess:
        deadline = time.monotonic() + timeout
        port = None
        while port is None:
            port = self._launch(deadline)
        self.port = port
        path = "/readyz" if wait_ready else "/healthz"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(f"server exited with {code}:\n{self.log()}")
            try:
                if httpx.get(self.url + path, timeout=1,
                             verify=self.ssl_context or True).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not ready within {timeout}s:\n{self.log()}")

    def _launch(self, deadline: float) -> int | None:
        """Starts the process on self.port; the port it listens on, or None when that known
        port was taken (the process has exited: start again)."""
        env = {**os.environ, "DATABASE_URL": self.database_url, "REALTIME_RATE_LIMIT": "0",
               "LOG_LEVEL": "info", **self.extra_env}
        env.pop("REDIS_URL", None) if "REDIS_URL" not in self.extra_env else None
        args = [sys.executable, "-m", "realtime", "serve", "--port", str(self.port)]
        if self.tls:
            args += ["--ssl-certfile", str(self.tls[0]), "--ssl-keyfile", str(self.tls[1])]
        # The log is appended to across restarts: read only what this process writes.
        offset = self.log_path.stat().st_size
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        while True:
            text = self._log_since(offset)
            port = listening_port(text)
            if port is not None:
                return port
            exited = self.proc.poll() is not None
            if exited and self.port and PORT_TAKEN in text and time.monotonic() < deadline:
                # EADDRINUSE on a known port: something took it since it was free; it may be
                # a passing client's ephemeral port, so try again until the deadline.
                self.proc = None
                time.sleep(0.2)
                return None
            if exited:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not say its port in time:\n{self.log()}")
            time.sleep(0.02)

    def _log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""
