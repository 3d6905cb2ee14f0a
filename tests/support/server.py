"""A real server process (`python -m realtime serve`) on a free port, for tests."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_answers(port: int) -> bool:
    """Whether a Redis on 127.0.0.1:`port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class ServerProcess:
    """Starts, stops and restarts `realtime serve` against one database, on one port."""

    def __init__(self, database_url: str, env: dict[str, str] | None = None,
                 port: int | None = None, log_dir: Path | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.database_url = database_url
        # (certificate, key): serve https/wss; clients trust that certificate (`ssl_context`).
        self.tls = tls
        self.ssl_context = ssl.create_default_context(cafile=str(tls[0])) if tls else None
        self.port = port or free_port()
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = (log_dir or Path(os.environ.get("TMPDIR", "/tmp"))) / f"realtime-{self.port}.log"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 30, wait_ready: bool = True) -> ServerProcess:
        env = {**os.environ, "DATABASE_URL": self.database_url, "REALTIME_RATE_LIMIT": "0",
               "LOG_LEVEL": "info", **self.extra_env}
        env.pop("REDIS_URL", None) if "REDIS_URL" not in self.extra_env else None
        log = open(self.log_path, "ab")
        args = [sys.executable, "-m", "realtime", "serve", "--port", str(self.port)]
        if self.tls:
            args += ["--ssl-certfile", str(self.tls[0]), "--ssl-keyfile", str(self.tls[1])]
        self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        path = "/readyz" if wait_ready else "/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + path, timeout=1,
                             verify=self.ssl_context or True).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not ready within {timeout}s:\n{self.log()}")

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
