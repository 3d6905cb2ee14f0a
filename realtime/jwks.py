"""An identity provider's signing keys (a JWKS), fetched over HTTPS and matched by `kid`.

Providers (Auth0, Keycloak, Supabase Auth, Clerk...) rotate their keys: a token signed by a key
this process has not seen makes it fetch the set again, at most once every `REFETCH_SPACING`
seconds, so a rotation needs no restart and a flood of made-up kids cannot turn this server
into a flood of requests to the provider. A background refresh keeps the set current anyway.

Fails closed: while the set cannot be fetched, a token whose key is not already known is
refused. Keys fetched earlier keep verifying until a fetch succeeds again (a provider's short
outage must not log everyone out), and `/readyz` reports the JWKS as degraded meanwhile; with
no key at all, it reports not ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import jwt
import orjson

from realtime.errors import Unauthorized
from realtime.httpclient import HttpError, HttpTimeout, connection_for

log = logging.getLogger("realtime.jwks")

# The algorithms a provider's key may carry; a key's algorithm comes from the key (its `alg`,
# or its type and curve), never from a token's header.
ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
REFETCH_SPACING = 30.0
REFRESH_INTERVAL = 300.0
FETCH_TIMEOUT = 5.0
MAX_KEYS = 100  # a JWKS holds a handful; more is a misconfigured or hostile endpoint
MAX_BYTES = 256 * 1024


class KeySet:
    def __init__(self, url: str, refetch_spacing: float = REFETCH_SPACING) -> None:
        self.url = url
        self.refetch_spacing = max(1.0, refetch_spacing)
        self.fetches = 0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0  # last attempt (monotonic), successful or not
        self._fetch: asyncio.Future[None] | None = None
        self.error: str | None = "the JWKS has not been fetched yet"

    @property
    def kids(self) -> list[str]:
        return list(self._keys)

    def ready(self) -> tuple[str | None, str | None]:
        """(why not ready, why degraded): not ready with no usable key; degraded while the
        last fetch failed but earlier keys still verify."""
        if self.error is None:
            return None, None
        if not self._keys:
            return f"the JWKS at {self.url} cannot be used: {self.error}", None
        return None, f"the JWKS at {self.url} cannot be fetched ({self.error}); using keys fetched earlier"

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key a token names; an unknown kid triggers a refetch (spaced), then refusal."""
        if kid is None:
            if len(self._keys) == 1:  # a provider with one key may leave kid out
                return next(iter(self._keys.values()))
            raise Unauthorized("the token names no key (kid)")
        found = self._keys.get(kid)
        if found is None and time.monotonic() - self._fetched_at >= self.refetch_spacing:
            await self.refresh()
            found = self._keys.get(kid)
        if found is None:
            if self.error is not None:
                raise Unauthorized("the identity provider's keys cannot be fetched")
            raise Unauthorized("the token is signed by a key this server does not know")
        return found

    async def refresh(self) -> None:
        """Fetch the set now (concurrent callers share one fetch)."""
        if self._fetch is None or self._fetch.done():
            self._fetch = asyncio.ensure_future(self._refresh())
        await asyncio.shield(self._fetch)

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        self.fetches += 1
        try:
            self._keys = _parse(await self._get())
            self.error = None
        except Exception as exc:  # any failure of the provider: keep what we had
            self.error = _describe(exc)
            log.warning("JWKS fetch failed", extra={"url": self.url, "error": self.error})

    async def _get(self) -> Any:
        conn, target = connection_for(self.url, FETCH_TIMEOUT)
        try:
            response = await conn.request("GET", target, headers={"Accept": "application/json"})
        finally:
            conn.close()
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}")
        if len(response.body) > MAX_BYTES:
            raise ValueError("the key set is too large")
        try:
            return orjson.loads(response.body)
        except orjson.JSONDecodeError:
            raise ValueError("the response is not JSON") from None

    async def run(self) -> None:
        """Keep the set fresh (a supervised background task; the first fetch is the app's)."""
        while True:
            await asyncio.sleep(REFRESH_INTERVAL if self.error is None else self.refetch_spacing)
            await self.refresh()


def _parse(document: Any) -> dict[str, jwt.PyJWK]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document (no keys list)")
    keys: dict[str, jwt.PyJWK] = {}
    for data in document["keys"][:MAX_KEYS]:
        if not isinstance(data, dict) or data.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(data)
        except jwt.PyJWTError:
            continue  # a key type we do not use (or a malformed one): skip it, keep the rest
        if key.algorithm_name not in ALGORITHMS:
            continue
        keys[str(data.get("kid", ""))] = key
    if not keys:
        raise ValueError("the key set holds no RS256, ES256 or EdDSA signing key")
    return keys


def _describe(exc: Exception) -> str:
    if isinstance(exc, HttpTimeout):
        return "timed out"
    if isinstance(exc, HttpError):
        return "unreachable"
    if isinstance(exc, OSError):
        return f"unreachable ({type(exc).__name__})"
    if isinstance(exc, ValueError):
        return str(exc)[:200]
    return type(exc).__name__
