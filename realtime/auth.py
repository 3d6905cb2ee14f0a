"""Bearer tokens: HS256 JWTs whose `sub` is the customer and `role: admin` marks admins."""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from realtime.errors import Unauthorized
from realtime.settings import Settings


@dataclass(frozen=True)
class Principal:
    sub: str
    admin: bool
    expires_at: float | None = None


def decode_token(token: str, settings: Settings) -> Principal:
    """Verifies signature and expiry; raises Unauthorized with a reason a client can act on."""
    if not settings.jwt_secret:
        raise Unauthorized("auth is not enabled on this server")
    try:
        claims = jwt.decode(token, settings.jwt_secret, algorithms=["HS256"],
                            options={"require": ["sub"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("the token is not valid") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 200:
        raise Unauthorized("the token's sub must be a non-empty string")
    exp = claims.get("exp")
    return Principal(sub=sub, admin=claims.get("role") == "admin",
                     expires_at=float(exp) if isinstance(exp, int | float) else None)


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
