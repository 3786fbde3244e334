"""Test fixture: real signing keys, their JWKS served over loopback HTTP, and CDS Hooks JWT minting.

`jwt_keys` (session): an RSA key (RS256/384/512, PS256/384/512) and EC keys on P-256, P-384 and
P-521 (ES256/384/512), generated per session; a tiny real HTTP server on 127.0.0.1 serves their
public JWKS at `jwks_url` and counts every request by path (`hits(path)`), so tests can prove that
a URL was (or was never) fetched. `mint(...)` signs a token like an EHR does; `issuer_config(...)`
is the trusted-issuer entry (RLS_TRUSTED_ISSUERS_JSON) for this issuer.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://ehr.test.example"
PUBLIC_URL = "https://rls-cds.test.example"
AUDIENCE = f"{PUBLIC_URL}/cds-services"
JWKS_PATH = "/.well-known/jwks.json"
ALL_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


@dataclass
class SigningKey:
    kid: str
    private_key: Any
    public_jwk: dict


def _rsa_key(kid: str) -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(
        kid, key, {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}
    )


def _ec_key(kid: str, curve: ec.EllipticCurve, alg: str) -> SigningKey:
    key = ec.generate_private_key(curve)
    jwk = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig", "alg": alg}
    return SigningKey(kid, key, jwk)


class JsonServer:
    """Serves JSON documents by path over loopback and counts requests per path."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                owner.hits[self.path] += 1
                body = owner.documents.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="jwks-server").start()

    def serve(self, path: str, document: Any) -> str:
        """Serve ``document`` as JSON at ``path``; returns its URL."""
        self.documents[path] = json.dumps(document).encode()
        return self.origin + path

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class JwtKeys:
    server: JsonServer
    keys: dict[str, SigningKey]  # by alg
    issuer: str = ISSUER
    audience: str = AUDIENCE
    public_url: str = PUBLIC_URL
    jwks_path: str = JWKS_PATH
    extra_keys: list[SigningKey] = field(default_factory=list)

    @property
    def jwks_url(self) -> str:
        return self.server.origin + self.jwks_path

    def url(self, path: str) -> str:
        return self.server.origin + path

    def hits(self, path: str) -> int:
        return self.server.hits[path]

    def serve(self, path: str, document: dict) -> str:
        """Serve another JSON document (for example a second key set); returns its URL."""
        return self.server.serve(path, document)

    def jwks(self) -> dict:
        by_kid = {k.kid: k.public_jwk for k in [*self.keys.values(), *self.extra_keys]}
        return {"keys": list(by_kid.values())}

    def publish(self, key: SigningKey) -> None:
        """Add a key to the served JWKS (key rotation at the EHR)."""
        self.extra_keys.append(key)
        self.server.documents[self.jwks_path] = json.dumps(self.jwks()).encode()

    def new_key(self, alg: str = "ES384", kid: str | None = None) -> SigningKey:
        kid = kid or f"k-{secrets.token_hex(4)}"
        if alg.startswith("ES"):
            curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
            return _ec_key(kid, curve, alg)
        return _rsa_key(kid)

    def issuer_config(self, **overrides) -> dict:
        entry = {"iss": self.issuer, "jwks_url": self.jwks_url, "tenant": "test-tenant"}
        return {**entry, **overrides}

    def mint(
        self,
        alg: str = "ES384",
        *,
        aud: str | list[str] | None = None,
        iss: str | None = None,
        lifetime: int = 300,
        iat_offset: int = 0,
        nbf_offset: int | None = None,
        jti: str | None = None,
        kid: str | None = None,
        jku: str | None = None,
        key: Any = None,
        claims: dict | None = None,
        omit: tuple[str, ...] = (),
        headers: dict | None = None,
    ) -> str:
        """A CDS Hooks 2.0 JWT. ``key`` overrides the signing key (forgeries); ``kid`` the header kid."""
        now = int(time.time()) + iat_offset
        signing = self.keys.get(alg)
        body = {
            "iss": iss or self.issuer,
            "sub": "ehr-client",
            "aud": aud or self.audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": jti or secrets.token_urlsafe(16),
            **({"nbf": now + nbf_offset} if nbf_offset is not None else {}),
            **(claims or {}),
        }
        for name in omit:
            body.pop(name, None)
        hdr = {"typ": "JWT", "kid": kid if kid is not None else (signing.kid if signing else None)}
        if jku:
            hdr["jku"] = jku
        hdr.update(headers or {})
        hdr = {k: v for k, v in hdr.items() if v is not None}
        return jwt.encode(body, key if key is not None else signing.private_key, algorithm=alg, headers=hdr)


def make_jwt_keys() -> JwtKeys:
    rsa_key = _rsa_key("rsa-1")
    keys = {alg: rsa_key for alg in ALL_ALGS if alg[:2] in ("RS", "PS")}
    keys["ES256"] = _ec_key("ec-p256", ec.SECP256R1(), "ES256")
    keys["ES384"] = _ec_key("ec-p384", ec.SECP384R1(), "ES384")
    keys["ES512"] = _ec_key("ec-p521", ec.SECP521R1(), "ES512")
    server = JsonServer()
    out = JwtKeys(server, keys)
    server.documents[JWKS_PATH] = json.dumps(out.jwks()).encode()
    return out


@pytest.fixture(scope="session")
def jwt_keys() -> JwtKeys:
    keys = make_jwt_keys()
    yield keys
    keys.server.stop()
