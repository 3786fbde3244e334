"""CDS Hooks 2.0 bearer JWT verification: who is calling, for which tenant and FHIR servers.

``build_authenticator(settings, store)`` returns ``async authenticate(request) -> Caller`` (wired by
``api/runtime.py`` for every service and feedback call). A token is accepted only when all hold:

- ``alg`` is asymmetric (RS*/ES*/PS*; never ``none`` or HMAC) and allowed for the issuer;
- ``iss`` is a configured trusted issuer; a ``jku`` header is on that issuer's allowlist (else it is
  rejected before anything is fetched);
- the key is found by ``kid`` among the issuer's static keys or key-set URLs (one rate-limited
  refresh on an unknown kid) and matches ``alg``; the signature verifies;
- ``aud`` is one of the issuer's configured audiences, or by default ``<public_url>/cds-services``
  or the exact service URL; ``exp`` not passed, ``iat`` and ``nbf`` not in the future (both with
  ``clock_skew_seconds``), ``exp - iat`` within ``max_token_lifetime_seconds``;
- ``jti`` was never seen before (shared replay cache).

Any failure raises ``AuthError`` (the API answers a generic 401 with
``WWW-Authenticate: Bearer error="invalid_token"``); the precise reason goes to the operator log
with the issuer, never the token or key material.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from starlette.concurrency import run_in_threadpool

from rls_cds.fhir.smart import normalize_base
from rls_cds.security.issuers import (
    ASYMMETRIC_ALGS,
    Issuer,
    TrustedIssuers,
    check_startup,
)
from rls_cds.security.jwks import JwksCache
from rls_cds.security.logs import route_of
from rls_cds.security.ratelimit import RateLimiter
from rls_cds.security.replay import ReplayCache

log = logging.getLogger("rls_cds.security")

_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_MAX_TOKEN_BYTES = 16 * 1024
_MAX_JTI = 256


class AuthError(Exception):
    """The call is not authenticated; ``reason`` is a short code for the operator log only."""

    def __init__(self, reason: str, issuer: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.issuer = issuer


@dataclass(frozen=True)
class Caller:
    issuer: str
    tenant: str
    subject: str | None = None
    allowed_fhir_servers: frozenset[str] = frozenset()
    dev: bool = False

    def allows_fhir_server(self, url: str) -> bool:
        if self.dev:
            return True
        try:
            return normalize_base(url) in self.allowed_fhir_servers
        except ValueError:
            return False


DEV_CALLER = Caller(issuer="dev", tenant="dev", dev=True)


def _key_fits(jwk: dict, alg: str, kid: str | None) -> bool:
    if kid is not None and jwk.get("kid") != kid:
        return False
    if jwk.get("alg") not in (None, alg) or jwk.get("use") not in (None, "sig"):
        return False
    if alg.startswith("ES"):
        return jwk.get("kty") == "EC" and jwk.get("crv") == _EC_CURVES[alg]
    return jwk.get("kty") == "RSA"


class TokenVerifier:
    def __init__(
        self,
        settings: Any,
        trusted: TrustedIssuers,
        replay: ReplayCache,
        jwks: JwksCache | None = None,
    ):
        self.settings = settings
        self.trusted = trusted
        self.replay = replay
        self.jwks = jwks or JwksCache()
        self.skew = int(settings.clock_skew_seconds)
        self.max_lifetime = int(settings.max_token_lifetime_seconds)
        self.public_url = str(settings.public_url).rstrip("/")
        self._key_objects: dict[tuple[bytes, str], Any] = {}

    # --- keys ---------------------------------------------------------------------------------
    def _key_object(self, jwk: dict, alg: str) -> Any:
        cache_key = (orjson.dumps(jwk, option=orjson.OPT_SORT_KEYS), alg)
        key = self._key_objects.get(cache_key)
        if key is None:
            key = jwt.PyJWK(jwk, algorithm=alg).key
            if len(self._key_objects) > 1000:
                self._key_objects.clear()
            self._key_objects[cache_key] = key
        return key

    def _find_key(self, issuer: Issuer, alg: str, kid: str | None, jku: str | None) -> Any:
        urls = ([jku] if jku else []) + ([issuer.jwks_url] if issuer.jwks_url else [])
        held = list(issuer.static_keys) + [k for url in urls for k in self.jwks.cached(url)]
        found = [k for k in held if _key_fits(k, alg, kid)]
        if not found:
            for url in urls:  # fetch (first use, stale, or one rate-limited refresh for an unknown kid)
                found = [k for k in self.jwks.keys(url, want_kid=kid) if _key_fits(k, alg, kid)]
                if found:
                    break
        if not found:
            raise AuthError("unknown_kid" if kid else "no_matching_key", issuer.iss)
        if kid is None and len(found) > 1:
            raise AuthError("kid_required", issuer.iss)  # several candidate keys: the token must say which
        try:
            return self._key_object(found[0], alg)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthError("unusable_key", issuer.iss) from None

    # --- claims -------------------------------------------------------------------------------
    def audiences(self, issuer: Issuer, path: str) -> set[str]:
        if issuer.audience:
            return set(issuer.audience)
        service_url = f"{self.public_url}{path.rstrip('/')}"
        return {
            f"{self.public_url}/cds-services",
            service_url,
            service_url.removesuffix("/feedback"),
        }

    def _decode(self, token: str, key: Any, alg: str, issuer: Issuer) -> dict:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=issuer.iss,
                leeway=self.skew,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired", issuer.iss) from None
        except jwt.ImmatureSignatureError as exc:
            raise AuthError("iat_in_future" if "iat" in str(exc) else "not_yet_valid", issuer.iss) from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad_signature", issuer.iss) from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"missing_claim_{exc.claim}", issuer.iss) from None
        except jwt.InvalidIssuerError:
            raise AuthError("wrong_issuer", issuer.iss) from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid_{type(exc).__name__}", issuer.iss) from None

    def _check_claims(self, claims: dict, issuer: Issuer, path: str) -> None:
        now = time.time()
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not {a.rstrip("/") for a in auds if isinstance(a, str)} & self.audiences(issuer, path):
            raise AuthError("wrong_audience", issuer.iss)
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            raise AuthError("invalid_time_claims", issuer.iss)
        if iat > now + self.skew:
            raise AuthError("iat_in_future", issuer.iss)
        if exp - iat > self.max_lifetime:
            raise AuthError("lifetime_too_long", issuer.iss)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > _MAX_JTI:
            raise AuthError("invalid_jti", issuer.iss)

    # --- entry point --------------------------------------------------------------------------
    def verify(self, token: str, path: str) -> Caller:
        if len(token) > _MAX_TOKEN_BYTES:
            raise AuthError("token_too_large")
        try:  # one unverified parse for both header and claims (the verified decode is the other)
            parts = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("malformed") from None
        header, unverified = parts["header"], parts["payload"]
        alg = header.get("alg")
        if alg not in ASYMMETRIC_ALGS:
            raise AuthError("alg_not_allowed")  # 'none', HS256 (public key as secret) and the like
        issuer = self.trusted.get(unverified.get("iss"))
        if issuer is None:
            raise AuthError("unknown_issuer")
        if alg not in issuer.algorithms:
            raise AuthError("alg_not_allowed", issuer.iss)
        jku, kid = header.get("jku"), header.get("kid")
        if not isinstance(jku, str | None) or not isinstance(kid, str | None):
            # A list or object is no URL or key id (and a list cannot even be looked up in the allowlist).
            raise AuthError("malformed", issuer.iss)
        if jku is not None and jku not in issuer.allowed_jku:
            raise AuthError("jku_not_allowed", issuer.iss)  # never fetched
        key = self._find_key(issuer, alg, kid, jku)
        claims = self._decode(token, key, alg, issuer)
        self._check_claims(claims, issuer, path)
        if self.replay.seen_before(issuer.iss, claims["jti"]):
            raise AuthError("replayed_jti", issuer.iss)
        sub = claims.get("sub")
        return Caller(
            issuer=issuer.iss,
            tenant=issuer.tenant,
            subject=sub if isinstance(sub, str) else None,
            allowed_fhir_servers=issuer.fhir_servers,
        )


def _bearer(header: str | None) -> str:
    if not header:
        raise AuthError("missing_token")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("not_bearer")
    return token.strip()


def _redis_client(settings: Any, store: Any) -> Any:
    from rls_cds.security.replay import REDIS_TIMEOUT

    url = getattr(settings, "redis_url", None)
    if url:
        import redis

        return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
    for name in ("redis", "client"):  # the store's client, when it exposes one
        client = getattr(store, name, None)
        if client is not None and hasattr(client, "set"):
            return client
    return None


def _prewarm(verifier: TokenVerifier) -> None:
    """Fetch the issuers' key sets in the background, so the first hook does not wait for them."""
    urls = [i.jwks_url for i in verifier.trusted.by_iss.values() if i.jwks_url]
    if urls:
        threading.Thread(
            target=lambda: [verifier.jwks.keys(u) for u in urls], name="jwks-prewarm", daemon=True
        ).start()


def build_authenticator(settings: Any, store: Any = None):
    """The API's authenticator. Raises ``IssuerConfigError`` when the configuration is unusable."""
    trusted = check_startup(settings)
    client = _redis_client(settings, store)
    ttl = int(settings.max_token_lifetime_seconds) + 2 * int(settings.clock_skew_seconds)
    verifier = TokenVerifier(settings, trusted, ReplayCache(client, ttl))
    limiter = RateLimiter(client, int(getattr(settings, "rate_limit_per_minute", 0)))
    dev = bool(settings.dev_mode)
    _prewarm(verifier)

    def verify_and_count(token: str, path: str) -> tuple[Caller, int | None]:
        caller = verifier.verify(token, path)
        return caller, limiter.retry_after(caller.issuer)

    async def authenticate(request: Any) -> Caller:
        header = request.headers.get("authorization")
        if dev and (not header or not trusted):
            log.warning(
                "DEVELOPMENT MODE: request accepted without authentication",
                extra={"route": route_of(request.scope)},
            )
            return DEV_CALLER
        try:
            token = _bearer(header)
            # One thread-pool hop for both (each hop costs a thread switch on every hook call).
            caller, wait = await run_in_threadpool(verify_and_count, token, request.url.path)
        except AuthError as exc:
            log.warning(
                "token rejected",
                extra={"reason": exc.reason, "issuer": exc.issuer, "route": route_of(request.scope)},
            )
            raise
        if wait is not None:
            from rls_cds.api.errors import ApiError

            log.warning("rate limit exceeded", extra={"issuer": caller.issuer})
            raise ApiError(
                429, "rate_limited", "too many requests for this issuer", {"Retry-After": str(wait)}
            )
        return caller

    authenticate.verifier = verifier  # type: ignore[attr-defined] - for /readyz and tests
    return authenticate
