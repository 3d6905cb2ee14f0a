"""Bearer tokens: HS256 with the server's own secret, and RS256, ES256 or EdDSA signed by an
identity provider's key (REALTIME_JWKS_URL). Both can be on at once.

Which key checks a token is decided by the server, never by the token: an HS256 token is
checked with the secret only, any other with the provider's key named by its `kid`, and the
algorithm is the key's own. So `alg: none`, or an HS256 token "signed" with a provider's
public key, is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from realtime.errors import Unauthorized
from realtime.jwks import KeySet
from realtime.settings import Settings

MAX_SUB = 200


@dataclass(frozen=True)
class Principal:
    sub: str
    admin: bool
    expires_at: float | None = None


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class TokenVerifier:
    def __init__(self, settings: Settings, keys: KeySet | None = None) -> None:
        self.secret = settings.jwt_secret
        self.keys = keys if keys is not None else (
            KeySet(settings.jwks_url, settings.jwks_refetch_seconds) if settings.jwks_url else None)
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.role_path = settings.jwt_role_claim.split(".")

    async def verify(self, token: str) -> Principal:
        """Signature, expiry, issuer and audience; Unauthorized with a reason a client can act on."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the token is not valid") from None
        alg = header.get("alg")
        if alg == "HS256" and self.secret:
            key: Any = self.secret
        elif alg != "HS256" and self.keys is not None:
            found = await self.keys.key(header.get("kid") if isinstance(header.get("kid"), str) else None)
            key, alg = found.key, found.algorithm_name
        else:
            raise Unauthorized("the token is not valid")
        try:
            claims = jwt.decode(token, key, algorithms=[alg], options={"require": ["sub"]},
                                issuer=self.issuer, audience=self.audience)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError):
            raise Unauthorized("the token is for another issuer or audience") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token is not valid") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB:
            raise Unauthorized(f"the token's sub must be a string of 1 to {MAX_SUB} characters")
        exp = claims.get("exp")
        return Principal(sub=sub, admin=self._is_admin(claims),
                         expires_at=float(exp) if isinstance(exp, int | float) else None)

    def _is_admin(self, claims: dict[str, Any]) -> bool:
        """The role claim (a dotted path such as `realm_access.roles`) is "admin" or holds it."""
        value: Any = claims
        for part in self.role_path:
            value = value.get(part) if isinstance(value, dict) else None
        return value == "admin" or (isinstance(value, list) and "admin" in value)
