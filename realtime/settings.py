"""Every setting the server reads, from the environment, in one place.

The table in docs/configuration.md documents each variable; keep the two in step.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# REALTIME_POOL: which connection pool the server uses (realtime/db/connect.py opens it).
POOL_IMPLEMENTATIONS = ("ours", "asyncpg")


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None


def _choice(env: dict[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise SystemExit(f"{name} must be one of {', '.join(choices)}; got {raw!r}")
    return raw


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def jwks_url_problem(url: str) -> str | None:
    """Why REALTIME_JWKS_URL cannot be used, or None. The keys it serves decide who is an
    admin: fetched in clear, anyone on the path could replace them and sign their own tokens,
    so only https is accepted, except on a loopback host (a provider or a TLS-terminating
    sidecar on the same machine: the keys never cross a network)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return None
    if parts.scheme == "http" and host and _is_loopback(host):
        return None
    return (f"REALTIME_JWKS_URL must be an https:// URL (http:// only on a loopback host such "
            f"as 127.0.0.1 or localhost): keys fetched in clear can be replaced by anyone on "
            f"the path; got {url!r}")


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    # A hot standby of database_url: the event reader, snapshots, resumes and HTTP availability
    # read there (realtime/eventlog/replica.py); everything else stays on the primary.
    database_read_url: str | None = None
    redis_url: str | None = None
    jwt_secret: str | None = None
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_role_claim: str = "role"
    jwks_refetch_seconds: float = 30.0
    allowed_origins: tuple[str, ...] = ()
    data_dir: Path = field(default_factory=lambda: Path(".realtime"))
    port: int = 8000
    log_level: str = "info"
    # Operational knobs beyond the contract's list (documented in docs/configuration.md).
    pool_size: int = 10
    pool_implementation: str = "ours"
    event_retention_seconds: int = 3600
    resume_events: int = 10_000
    sequencer_poll_seconds: float = 0.25
    sweep_interval_seconds: float = 0.5
    rate_limit_per_second: float = 1000.0
    rate_limit_burst: int = 2000
    ws_send_queue: int = 256
    ws_max_subscriptions: int = 100
    ws_messages_per_second: float = 50.0
    ws_ping_interval: float = 20.0
    # Open /ws sockets and /sse streams together per client address in this process; 0: no
    # cap (the default: see docs/configuration.md for why).
    max_sockets_per_address: int = 0
    insecure: bool = False
    webhooks_allow_private: bool = False

    def __post_init__(self) -> None:
        # Here rather than in from_env, so that an app built from Settings(...) is held to it.
        if self.jwks_url is not None and (problem := jwks_url_problem(self.jwks_url)):
            raise ValueError(problem)
        if self.max_sockets_per_address < 0:
            raise ValueError("REALTIME_MAX_SOCKETS_PER_ADDRESS must be 0 (no cap) or more")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.jwt_secret or self.jwks_url)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        try:
            return cls._from_env(dict(os.environ if env is None else env))
        except ValueError as exc:  # a value __post_init__ refuses: stop, naming the variable
            raise SystemExit(str(exc)) from None

    @classmethod
    def _from_env(cls, e: dict[str, str]) -> Settings:
        origins = tuple(o.strip().rstrip("/") for o in e.get("REALTIME_ALLOWED_ORIGINS", "").split(",") if o.strip())
        return cls(
            database_url=e.get("DATABASE_URL") or None,
            database_read_url=e.get("DATABASE_READ_URL") or None,
            redis_url=e.get("REDIS_URL") or None,
            jwt_secret=e.get("REALTIME_JWT_SECRET") or None,
            jwks_url=e.get("REALTIME_JWKS_URL") or None,
            jwt_issuer=e.get("REALTIME_JWT_ISSUER") or None,
            jwt_audience=e.get("REALTIME_JWT_AUDIENCE") or None,
            jwt_role_claim=(e.get("REALTIME_JWT_ROLE_CLAIM") or "role").strip(),
            jwks_refetch_seconds=_float(e, "REALTIME_JWKS_REFETCH_SECONDS", 30.0),
            allowed_origins=origins,
            data_dir=Path(e.get("REALTIME_DATA_DIR") or ".realtime"),
            port=_int(e, "PORT", 8000),
            log_level=(e.get("LOG_LEVEL") or "info").lower(),
            pool_size=_int(e, "REALTIME_POOL_SIZE", 10),
            pool_implementation=_choice(e, "REALTIME_POOL", POOL_IMPLEMENTATIONS, "ours"),
            event_retention_seconds=_int(e, "REALTIME_EVENT_RETENTION", 3600),
            resume_events=_int(e, "REALTIME_RESUME_EVENTS", 10_000),
            sequencer_poll_seconds=_float(e, "REALTIME_SEQUENCER_POLL", 0.25),
            sweep_interval_seconds=_float(e, "REALTIME_SWEEP_INTERVAL", 0.5),
            rate_limit_per_second=_float(e, "REALTIME_RATE_LIMIT", 1000.0),
            rate_limit_burst=_int(e, "REALTIME_RATE_BURST", 2000),
            ws_send_queue=_int(e, "REALTIME_WS_SEND_QUEUE", 256),
            ws_max_subscriptions=_int(e, "REALTIME_WS_MAX_SUBSCRIPTIONS", 100),
            ws_messages_per_second=_float(e, "REALTIME_WS_RATE", 50.0),
            ws_ping_interval=_float(e, "REALTIME_WS_PING_INTERVAL", 20.0),
            max_sockets_per_address=_int(e, "REALTIME_MAX_SOCKETS_PER_ADDRESS", 0),
            insecure=e.get("REALTIME_INSECURE", "") in ("1", "true", "yes"),
            webhooks_allow_private=e.get("REALTIME_WEBHOOKS_ALLOW_PRIVATE", "") in ("1", "true", "yes"),
        )
