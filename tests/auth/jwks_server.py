"""A JWKS endpoint for tests: keys generated here, served over real HTTP, rotatable, and able
to go away; plus tokens signed by those keys."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ALGORITHMS = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}


class Key:
    """A private key with its kid; its public half as a JWK."""

    def __init__(self, alg: str, kid: str | None = None) -> None:
        self.alg = alg
        self.kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        if alg == "RS256":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()

    def jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(ALGORITHMS[self.alg].to_jwk(self.private.public_key()))
        data.update(kid=self.kid, use="sig")
        return data

    def sign(self, claims: dict[str, Any], kid: str | None = None, alg: str | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm=alg or self.alg,
                          headers={"kid": kid or self.kid})


def claims(sub: str = "ann", ttl: float = 300, **extra: Any) -> dict[str, Any]:
    return {"sub": sub, "exp": int(time.time() + ttl), **extra}


class JwksServer:
    """Serves {"keys": [...]} of the keys it holds; counts fetches; `down` refuses to answer."""

    def __init__(self, keys: list[Key]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": [k.jwk() for k in outer.keys]}).encode()
                self.send_response(outer.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def start(self) -> None:
        if self._thread is None:
            if self._httpd.socket.fileno() < 0:
                self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self._httpd.RequestHandlerClass)
            self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Go away: the port refuses connections until `start`."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._thread = None
