"""Tokens from an identity provider: keys from a JWKS by kid, rotation, and refusals."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization

from realtime.settings import Settings
from tests.auth.jwks_server import JwksServer, Key, claims
from tests.channels.conftest import Live, World, client, start_live, stop_live

SECRET = "an-hs256-secret-that-is-long-enough-for-the-test"
ISSUER = "https://id.example/"
AUDIENCE = "bookings-api"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def book(live: Live, slot: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=live.url) as http:
        return await http.post("/api/bookings", json={"slot_id": slot}, headers=bearer(token))


@pytest_asyncio.fixture(loop_scope="session")
async def provider(database_url: str) -> AsyncIterator[tuple[Live, JwksServer, list[Key]]]:
    keys = [Key("RS256"), Key("ES256"), Key("EdDSA")]
    jwks = JwksServer(keys)
    live = await start_live(database_url, jwt_secret=SECRET, jwks_url=jwks.url,
                            jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwks_refetch_seconds=1.0)
    yield live, jwks, keys
    await stop_live(live)
    jwks.stop()


def good(sub: str = "ann", **extra: object) -> dict[str, object]:
    return claims(sub, iss=ISSUER, aud=AUDIENCE, **extra)


async def test_each_algorithm_verifies_on_http_and_socket(provider, world: World) -> None:
    """RS256, ES256 and EdDSA tokens of the provider's keys book over HTTP and the socket;
    the secret's HS256 tokens keep working beside them."""
    live, _, keys = provider
    slot = world.slots[world.services[0]][0]["id"]
    for key in keys:
        response = await book(live, slot, key.sign(good(f"user-{key.alg}")))
        assert response.status_code == 201, (key.alg, response.text)
        assert response.json()["booking"]["customer_id"] == f"user-{key.alg}"
        async with client(f"{live.ws_url}?token={key.sign(good('sock'))}") as c:
            await c.send(type="book", id="b", slot_id=slot)
            result = await c.expect("result", id="b")
            assert result["ok"] is True and result["booking"]["customer_id"] == "sock", result
    hs = jwt.encode(good("hs-user"), SECRET, algorithm="HS256")
    assert (await book(live, slot, hs)).status_code == 201


async def test_forged_expired_and_confused_tokens_are_refused(provider, world: World) -> None:
    """Forged, expired, wrong-issuer, wrong-audience, `alg: none`, HS256 signed with the
    public key, and unknown-kid tokens get 401 over HTTP and 1008 on the socket."""
    live, _, keys = provider
    rsa_key = keys[0]
    slot = world.slots[world.services[0]][0]["id"]
    impostor = Key("RS256", kid=rsa_key.kid)  # same kid, another private key
    public_pem = rsa_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    unsigned = jwt.encode(good(), None, algorithm="none", headers={"kid": rsa_key.kid})
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    # HS256 with the provider's public key as the secret (the classic RS/HS confusion).
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}).encode())
    body = b64(json.dumps(good()).encode())
    mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    confused = f"{head}.{body}.{b64(mac)}"
    refused = {
        "forged": impostor.sign(good()),
        "expired": rsa_key.sign(good(exp=int(time.time()) - 10)),
        "wrong issuer": rsa_key.sign(claims("ann", iss="https://evil.example/", aud=AUDIENCE)),
        "wrong audience": rsa_key.sign(claims("ann", iss=ISSUER, aud="other-api")),
        "no audience": rsa_key.sign(claims("ann", iss=ISSUER)),
        "alg none": unsigned,
        "hs256 with the public key": confused,
        "unknown kid": Key("ES256").sign(good()),
        "algorithm not the key's": rsa_key.sign(good(), alg="RS512"),
        "garbage": "not.a.token",
    }
    for name, token in refused.items():
        response = await book(live, slot, token)
        assert response.status_code == 401, (name, response.text)
        assert response.json()["error"]["code"] == "UNAUTHORIZED", name
        assert response.headers["www-authenticate"].startswith("Bearer"), name
        async with client(f"{live.ws_url}?token={token}") as c:
            assert await c.closed() == 1008, name


async def test_rotation_needs_no_restart_and_refetches_are_spaced(provider, world: World) -> None:
    """A key added by the provider verifies once its tokens arrive (one refetch); a removed
    key stops verifying after the refetch; made-up kids cannot make it fetch more than once
    per spacing."""
    live, jwks, keys = provider
    slot = world.slots[world.services[0]][0]["id"]
    old = keys[1]
    assert (await book(live, slot, old.sign(good()))).status_code == 201
    new = Key("ES256")
    jwks.keys = [keys[0], new, keys[2]]  # ES256 rotated: new in, old out
    await asyncio.sleep(1.1)  # past the spacing since the last fetch
    fetches = jwks.fetches
    assert (await book(live, slot, new.sign(good()))).status_code == 201
    assert jwks.fetches == fetches + 1
    assert (await book(live, slot, old.sign(good()))).status_code == 401
    flood = [Key("EdDSA").sign(good()) for _ in range(3)]
    before = jwks.fetches
    started = time.monotonic()
    for token in flood * 5:
        assert (await book(live, slot, token)).status_code == 401
    allowed = 1 + int((time.monotonic() - started) / 1.0)
    assert jwks.fetches - before <= allowed


async def test_an_unreachable_jwks_fails_closed_and_readyz_names_it(database_url: str,
                                                                   world: World) -> None:
    """With the provider away at start, /readyz is 503 naming the JWKS and tokens are refused;
    once it answers, all recovers by itself; away again, known keys still verify, unknown
    ones are refused, and /readyz stays 200 with the JWKS under `degraded`."""
    key = Key("RS256")
    jwks = JwksServer([key])
    jwks.stop()
    live = await start_live(database_url, jwks_url=jwks.url, jwks_refetch_seconds=1.0)
    slot = world.slots[world.services[0]][0]["id"]
    try:
        async with httpx.AsyncClient(base_url=live.url) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and "jwks" in ready.json()["error"]["down"]
            assert (await book(live, slot, key.sign(claims()))).status_code == 401
            jwks.start()
            for _ in range(100):
                if (await http.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await http.get("/readyz")).json() == {"status": "ready"}
            assert (await book(live, slot, key.sign(claims()))).status_code == 201
            jwks.stop()
            await asyncio.sleep(1.1)
            assert (await book(live, slot, Key("RS256").sign(claims()))).status_code == 401
            degraded = await http.get("/readyz")
            assert degraded.status_code == 200 and "jwks" in degraded.json()["degraded"]
            assert (await book(live, slot, key.sign(claims()))).status_code == 201
    finally:
        await stop_live(live)
        jwks.stop()


async def test_roles_come_from_the_configured_claim(database_url: str) -> None:
    """REALTIME_JWT_ROLE_CLAIM names a dotted path; a list holding "admin" makes an admin."""
    key = Key("RS256")
    jwks = JwksServer([key])
    live = await start_live(database_url, jwks_url=jwks.url, jwt_role_claim="realm_access.roles")
    try:
        async with httpx.AsyncClient(base_url=live.url) as http:
            admin = key.sign(claims("boss", realm_access={"roles": ["staff", "admin"]}))
            staff = key.sign(claims("sam", realm_access={"roles": ["staff"]}))
            flat = key.sign(claims("eve", role="admin"))  # the default claim is not read now
            made = await http.post("/api/vendors", json={"name": "Salon"}, headers=bearer(admin))
            refused = [await http.post("/api/vendors", json={"name": "x"}, headers=bearer(t))
                       for t in (staff, flat)]
    finally:
        await stop_live(live)
        jwks.stop()
    assert made.status_code == 201
    assert [r.status_code for r in refused] == [403, 403]


def test_a_jwks_url_in_clear_off_loopback_stops_the_server_at_start(tmp_path) -> None:
    """`realtime serve` with an http:// REALTIME_JWKS_URL on a network host exits 1 before
    anything starts, naming the variable; https, and http on loopback hosts, are accepted."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(REALTIME_JWKS_URL="http://id.example/.well-known/jwks.json",
               REALTIME_DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run([sys.executable, "-m", "realtime", "serve", "--port", "0"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "REALTIME_JWKS_URL must be an https:// URL" in result.stderr
    assert "http://id.example/.well-known/jwks.json" in result.stderr
    assert not (tmp_path / "data").exists()  # refused before any embedded PostgreSQL
    for refused in ("http://10.0.0.5/jwks.json", "http://127.0.0.1.nip.io/jwks.json",
                    "ftp://127.0.0.1/jwks.json", "https:///jwks.json", "id.example/jwks.json"):
        with pytest.raises(SystemExit, match="REALTIME_JWKS_URL"):
            Settings.from_env({"REALTIME_JWKS_URL": refused})
        with pytest.raises(ValueError, match="REALTIME_JWKS_URL"):
            Settings(jwks_url=refused)  # an app built without the environment is held to it too
    for accepted in ("https://id.example/.well-known/jwks.json", "HTTPS://ID.EXAMPLE/jwks",
                     "http://127.0.0.1:8080/jwks.json", "http://127.8.9.10/jwks.json",
                     "http://localhost/jwks.json", "http://[::1]:9000/jwks.json"):
        assert Settings.from_env({"REALTIME_JWKS_URL": accepted}).jwks_url == accepted
