"""The `realtime` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Iterator
from typing import Any

from realtime import __version__, logs
from realtime.settings import Settings

log = logging.getLogger("realtime.cli")

DESCRIPTION = """\
realtime: a real-time availability server for booking systems.

Without DATABASE_URL, `serve` starts an embedded PostgreSQL under REALTIME_DATA_DIR
(default ./.realtime). Configuration comes from the environment: see docs/configuration.md.
"""

EPILOG = """\
examples:
  realtime serve --demo                 # embedded database, demo data, http://127.0.0.1:8000
  realtime serve --ssl-certfile cert.pem --ssl-keyfile key.pem   # https and wss
  DATABASE_URL=postgresql://postgres@127.0.0.1/app realtime migrate
  realtime check                        # verify invariants; exit 1 on any violation
  realtime loadtest --url http://127.0.0.1:8000 --sockets 1000 --rate 50 --duration 30
"""


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """DATABASE_URL when set; otherwise an embedded PostgreSQL for the duration."""
    if settings.database_url:
        yield settings.database_url
        return
    from realtime.db.embedded import EmbeddedPostgres, running_pid

    embedded = EmbeddedPostgres(settings.data_dir)
    pid = running_pid(embedded.pgdata)
    if pid is None:
        print(f"no DATABASE_URL: starting the embedded PostgreSQL in {embedded.pgdata}", file=sys.stderr)
    else:
        print(f"no DATABASE_URL: attaching to the embedded PostgreSQL already running in "
              f"{embedded.pgdata} (pid {pid}); it stops when its last user exits", file=sys.stderr)
    with embedded as uri:
        yield uri


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class CannotListen(Exception):
    """The host and port cannot be bound; the message says why, in words."""


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), not yet listening: held from the start so that
    nothing can take the port while PostgreSQL starts and migrations run, and so that
    `--port 0` knows its port before serving. The family and option are uvicorn's own, so
    that a port in TIME_WAIT counts as free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CannotListen("the address is already in use (pass another --port, or stop "
                               "what listens there)") from exc
        raise CannotListen(exc.strerror or str(exc)) from exc
    return sock


def listen(sock: socket.socket, backlog: int, *, tls: bool, workers: int) -> str:
    """Start accepting on `sock` and log the address it is bound to (with the port the kernel
    chose for `--port 0`); the URL. Connections made before the app is up wait in the
    backlog rather than being refused."""
    sock.listen(backlog)
    host, port = sock.getsockname()[:2]
    url = f"{'https' if tls else 'http'}://{_host_port(host, port)}"
    record = log.makeRecord(log.name, logging.INFO, __file__, 0, "listening on %s", (url,),
                            None, extra={"event": "listening", "url": url, "host": host,
                                         "port": port, "tls": tls, "workers": workers})
    # handle(), not info(): written at every LOG_LEVEL, since the address is what anyone
    # starting a server on port 0 (tests, supervisors) has to read.
    log.handle(record)
    return url


def tls_problem(certfile: str | None, keyfile: str | None) -> str | None:
    """What is wrong with the TLS options, in words naming them; None if they can serve."""
    if (certfile is None) != (keyfile is None):
        return "--ssl-certfile and --ssl-keyfile go together: give both, or neither"
    if certfile is None or keyfile is None:
        return None
    for option, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if not os.path.isfile(path):
            return f"{option}: no such file: {path}"
        if not os.access(path, os.R_OK):
            return f"{option}: cannot read {path}"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # A password callback that gives none: an encrypted key fails here instead of
        # prompting on the terminal.
        context.load_cert_chain(certfile, keyfile, password=lambda: b"")
    except (ssl.SSLError, OSError, ValueError):
        return (f"--ssl-certfile {certfile} and --ssl-keyfile {keyfile} are not a PEM "
                f"certificate (chain) and its unencrypted private key")
    return None


def raise_open_files() -> tuple[int, int]:
    """Raise this process's soft limit on open files to its hard limit; (before, after).

    Every socket is a file: the usual soft default, 1,024, refuses sockets long before memory
    runs out (an idle one costs about 12 KiB). Worker processes inherit the limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target


def _ws_protocol() -> Any:
    """`SocketProtocol`, or uvicorn's own choice where it cannot be built (uvicorn before
    0.35 has no Sans-I/O websockets protocol to build on): the same behaviour, more memory."""
    try:
        from realtime.channels.wsprotocol import SocketProtocol
    except ImportError as exc:
        log.info("WebSockets run on uvicorn's own protocol (%s)", exc)
        return "auto"
    return SocketProtocol


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    problem = tls_problem(args.ssl_certfile, args.ssl_keyfile)
    if problem is not None:
        print(f"realtime serve: {problem}", file=sys.stderr)
        return 2
    host = args.host
    insecure = args.insecure or settings.insecure
    off = "auth is off (neither REALTIME_JWT_SECRET nor REALTIME_JWKS_URL is set)"
    exposed = not settings.auth_enabled and (insecure or _is_loopback(host))
    if not settings.auth_enabled and not exposed:
        log.warning("%s: binding to 127.0.0.1 instead of %s; pass --insecure to expose an "
                    "unauthenticated server", off, host)
        host = "127.0.0.1"
    # Before any data directory, PostgreSQL or migration: a taken port should cost nothing.
    try:
        sock = bind(host, args.port)
    except CannotListen as exc:
        print(f"realtime serve: cannot listen on {_host_port(host, args.port)}: {exc}",
              file=sys.stderr)
        return 1
    if exposed:  # after binding, to name the port the kernel chose for --port 0
        log.warning("%s: anyone who can reach %s can book and administer", off,
                    _host_port(host, sock.getsockname()[1]))
    with sock:
        return _serve(args, settings, sock)


def _serve(args: argparse.Namespace, settings: Settings, sock: socket.socket) -> int:
    import uvicorn

    from realtime.db.migrate import migrate

    before, after = raise_open_files()
    if after != before:
        log.info("open files: soft limit raised from %d to %d", before, after)
    with database(settings) as dsn:
        os.environ["DATABASE_URL"] = dsn
        asyncio.run(migrate(dsn, echo=lambda line: log.info(line)))
        if args.demo:
            asyncio.run(_seed(dsn, settings.pool_implementation))
        config = uvicorn.Config(
            "realtime.app:create_app", factory=True, host=sock.getsockname()[0],
            port=sock.getsockname()[1],
            workers=args.workers, log_config=None, log_level=settings.log_level,
            # Compression costs ~36 KiB per socket and most of the fan-out rate
            # (docs/design-notes.md), and its frames differ per socket, so the direct frame
            # writer could not serve them.
            ws_per_message_deflate=False, ws_max_size=64 * 1024,
            # uvicorn's websockets Sans-I/O protocol, lighter per socket and freed on close.
            ws=_ws_protocol(),
            ws_ping_interval=settings.ws_ping_interval, ws_ping_timeout=settings.ws_ping_interval,
            timeout_graceful_shutdown=8, proxy_headers=False, server_header=False,
            # With both set, uvicorn serves https and wss itself: every byte through TLS
            # (the channels then write frames through ASGI send, never past the transport).
            ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
            # RequestContext logs each request (with its id); uvicorn's own line would be a
            # second one, and it builds its arguments even when its logger is off.
            access_log=False)
        server = uvicorn.Server(config)
        # uvicorn re-raises the SIGTERM it captured once it has shut down; with the default
        # handler that would kill us before the embedded PostgreSQL is stopped below.
        signal.signal(signal.SIGTERM, lambda *_: None)
        # The socket bound above, handed to uvicorn (which would otherwise bind its own only
        # now, after the database work, and log no port of ours for --workers N).
        listen(sock, config.backlog, tls=config.is_ssl, workers=args.workers)
        if args.workers > 1:
            from uvicorn.supervisors import Multiprocess

            from realtime.workers import directory_for_workers

            # As uvicorn's own bind does for its workers; only now, so that the embedded
            # PostgreSQL started above could not have inherited it.
            sock.set_inheritable(True)
            with directory_for_workers(args.workers):
                Multiprocess(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    return 0


async def _seed(dsn: str, pool_implementation: str) -> str:
    from realtime.booking.demo import seed_demo
    from realtime.booking.service import BookingService
    from realtime.db.connect import create_pool

    pool = await create_pool(dsn, 2, pool_implementation)
    try:
        return await seed_demo(BookingService(pool), echo=lambda line: log.info(line))
    finally:
        await pool.close()


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from realtime.db.migrate import migrate

    with database(settings) as dsn:
        asyncio.run(migrate(dsn, down=args.down))
    return 0


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    from realtime.db.migrate import migrate

    if not args.demo:
        print("nothing to seed: pass --demo", file=sys.stderr)
        return 2
    with database(settings) as dsn:
        asyncio.run(migrate(dsn))
        print(asyncio.run(_seed(dsn, settings.pool_implementation)))
    return 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from realtime.booking.check import render, run_checks

    with database(settings) as dsn:
        results = asyncio.run(run_checks(dsn))
    print(render(results))
    return 1 if any(rows for _, rows in results) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realtime", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"realtime {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve HTTP and WebSocket",
                           description="Serve the HTTP API, /ws and the demo widget (https and "
                                       "wss with --ssl-certfile and --ssl-keyfile). Applies "
                                       "pending migrations first.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000") or 8000),
                       help="port to bind (default $PORT or 8000); 0 lets the kernel pick a free "
                            "one, which the log line {\"event\": \"listening\", \"port\": "
                            "N, ...} names")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes sharing the port (default 1)")
    serve.add_argument("--demo", action="store_true",
                       help="add the demo vendor with a week of slots if there is none")
    serve.add_argument("--insecure", action="store_true",
                       help="with auth off, bind to a non-loopback address anyway")
    serve.add_argument("--ssl-certfile", metavar="F",
                       help="PEM certificate (chain) to serve https and wss; needs --ssl-keyfile")
    serve.add_argument("--ssl-keyfile", metavar="F",
                       help="PEM private key (unencrypted) of --ssl-certfile")
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", help="apply (or roll back) SQL migrations",
                         description="Apply pending SQL migrations under an advisory lock; safe "
                                     "to run from several processes at once.")
    mig.add_argument("--down", type=int, default=0, metavar="N",
                     help="roll back the last N migrations instead")
    mig.set_defaults(func=cmd_migrate)

    seed = sub.add_parser("seed", help="create demo data",
                          description="Create the demo vendor (three services, a week of "
                                      "slots) unless it exists.")
    seed.add_argument("--demo", action="store_true", help="the demo vendor (required)")
    seed.set_defaults(func=cmd_seed)

    check = sub.add_parser("check", help="verify the invariants in the database",
                           description="Check capacity, counts against rows, exclusive "
                                       "overlaps, events, and the audit trail (a row for every "
                                       "change, naming its actor and request); print a table; "
                                       "exit 1 on any violation.")
    check.set_defaults(func=cmd_check)

    lt = sub.add_parser("loadtest", help="open many sockets, book, and measure delivery",
                        description="Open N sockets across C channels, book at R per second "
                                    "and report delivery latency, loss, duplication and order.")
    from realtime import loadtest

    if hasattr(loadtest, "add_arguments"):
        loadtest.add_arguments(lt)
        lt.set_defaults(func=lambda a, s: loadtest.run(a))
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    logs.setup(settings.log_level)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
