"""https and wss served by the server itself: every byte to a client goes through TLS.

The fan-out's direct writer puts bytes past the transport (and, for a dispatch to hundreds of
sockets, into the raw socket from threads); over TLS that would be plaintext in the TLS
stream. These tests open more subscribers on one channel than the bulk threshold, over wss.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from realtime.channels import writer
from tests.channels.conftest import World, start_live, stop_live
from tests.channels.crowd import assert_every_update_intact, book_over_http, crowd, snapshot_version
from tests.support.server import ServerProcess
from tests.support.tls import self_signed

BOOKINGS = 5


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.mark.slow
async def test_wss_fan_out_to_hundreds_in_process(database_url: str, world: World,
                                                  certificate: tuple[Path, Path]) -> None:
    """300 wss subscribers of one channel get every booking's update intact and none breaks;
    their frames go through ASGI send, never the direct or the threaded bulk writes."""
    cert, key = certificate
    live = await start_live(database_url, uvicorn_options={
        "ssl_certfile": str(cert), "ssl_keyfile": str(key)})
    trust = ssl.create_default_context(cafile=str(cert))
    svc = world.services[0]
    slot = world.slots[svc][0]["id"]
    channel = f"service:{svc}"
    try:
        async with crowd(f"wss://127.0.0.1:{live.port}/ws", channel, ssl_context=trust) as clients:
            start = snapshot_version(clients[0], channel, slot)
            await book_over_http(f"https://127.0.0.1:{live.port}", slot, BOOKINGS, verify=trust)
            await assert_every_update_intact(clients, channel, slot, start, BOOKINGS)
            conns = list(live.runtime.connections)
            assert len(conns) == len(clients)
            assert all(isinstance(conn.writer, writer.AsgiWriter) and conn.writer.reason == "TLS"
                       for conn in conns)
    finally:
        await stop_live(live)


@pytest.mark.slow
async def test_serve_with_tls_options(database_url: str, world: World,
                                      certificate: tuple[Path, Path], tmp_path: Path) -> None:
    """`realtime serve --ssl-certfile F --ssl-keyfile F` answers only TLS, and 300 wss
    subscribers get every update of bookings made over https, intact."""
    server = ServerProcess(database_url, log_dir=tmp_path, tls=certificate).start()
    svc = world.services[0]
    slot = world.slots[svc][0]["id"]
    channel = f"service:{svc}"
    try:
        async with httpx.AsyncClient(timeout=5) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{server.port}/healthz")
        async with crowd(server.ws_url, channel, ssl_context=server.ssl_context) as clients:
            start = snapshot_version(clients[0], channel, slot)
            await book_over_http(server.url, slot, BOOKINGS, verify=server.ssl_context or True)
            await assert_every_update_intact(clients, channel, slot, start, BOOKINGS)
        log = server.log_path.read_text()
        assert "WebSocket frames go through ASGI send (TLS;" in log, log[-3000:]
    finally:
        server.stop()


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/never-used"}
    return subprocess.run([sys.executable, "-m", "realtime", "serve", "--port", "0", *args],
                          env=env, capture_output=True, text=True, timeout=60)


def test_tls_options_that_cannot_serve_are_refused_by_name(certificate: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    """A missing partner option, a missing file, or files that are not a matching certificate
    and key: exit 2 with a message naming the options, no traceback, nothing started."""
    cert, key = certificate
    _, other_key = self_signed(tmp_path, "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cases = [
        (["--ssl-certfile", str(cert)], "--ssl-certfile and --ssl-keyfile go together"),
        (["--ssl-keyfile", str(key)], "--ssl-certfile and --ssl-keyfile go together"),
        (["--ssl-certfile", str(tmp_path / "nope.crt"), "--ssl-keyfile", str(key)],
         "--ssl-certfile: no such file"),
        (["--ssl-certfile", str(cert), "--ssl-keyfile", str(tmp_path / "nope.key")],
         "--ssl-keyfile: no such file"),
        (["--ssl-certfile", str(junk), "--ssl-keyfile", str(key)], "are not a PEM certificate"),
        (["--ssl-certfile", str(cert), "--ssl-keyfile", str(other_key)],
         "are not a PEM certificate"),
    ]
    for args, message in cases:
        done = _serve(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout, (args, done.stderr)


def test_serve_help_names_the_tls_options() -> None:
    """`realtime serve --help` documents both TLS options."""
    done = subprocess.run([sys.executable, "-m", "realtime", "serve", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "--ssl-certfile F" in done.stdout and "--ssl-keyfile F" in done.stdout
    assert "https" in done.stdout and "wss" in done.stdout
