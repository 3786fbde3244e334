"""SMART Backend Services client auth for background work (re-evaluation, panels, Bulk export).

``load_fhir_servers(settings)`` reads ``settings.fhir_servers_file`` (YAML)::

    servers:
      "https://fhir.example.org/r4":
        client_id: rls-cds
        private_key_path: keys/rls-cds.pem     # PEM, relative to this file; or private_key_env: VAR
        kid: rls-cds-2026                      # default: RFC 7638 thumbprint of the public key
        alg: RS384                             # RS384 | ES384
        token_url: https://auth.example.org/token   # default: {base}/.well-known/smart-configuration
        scopes: system/Patient.rs system/Observation.rs
        tenant: hospital-a
      "https://open.example.org/fhir": {}      # no credentials: requests carry no token

``session_for(base_url, settings)`` returns a ``requests.Session`` for that base: it adds a bearer
token obtained with the client_credentials grant and a signed JWT assertion (iss = sub = client_id,
aud = token URL, exp 4 minutes ahead, unique jti), caches the token until shortly before it expires
and fetches a new one once when the FHIR server answers 401. The token is only attached to requests
for the configured base's origin. The session never uses environment proxies, never follows a
redirect to another origin (the 3xx is returned to the caller) and refuses link-local and metadata
addresses (``ForbiddenDestination``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import jwt
import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from rls_cds.fhir.base_url import base_url_problem
from rls_cds.security.outbound import ForbiddenDestination, check_destination, same_origin

ALGS = ("RS384", "ES384")
DEFAULT_SCOPES = (
    "system/Patient.rs system/Group.rs system/Condition.rs system/Observation.rs system/MedicationRequest.rs"
)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 240  # seconds; SMART requires exp no more than 5 minutes ahead
TOKEN_TIMEOUT = 10.0  # seconds for discovery and token requests
_KEYS = {"client_id", "private_key_path", "private_key_env", "kid", "alg", "token_url", "scopes", "tenant"}

__all__ = [
    "FhirServerConfig",
    "FhirServersError",
    "ForbiddenDestination",
    "GuardedSession",
    "SmartAuthError",
    "load_fhir_servers",
    "normalize_base",
    "session_for",
]


class FhirServersError(ValueError):
    """The FHIR servers file is invalid; the message names the file and the key."""


class SmartAuthError(requests.exceptions.RequestException):
    """No access token could be obtained (discovery or token request failed). Never holds a token."""


@dataclass(frozen=True)
class FhirServerConfig:
    base_url: str
    client_id: str | None = None
    private_key_path: Path | None = None
    private_key_env: str | None = None
    kid: str | None = None
    alg: str = "RS384"
    token_url: str | None = None
    scopes: str = DEFAULT_SCOPES
    tenant: str = "default"

    @property
    def has_credentials(self) -> bool:
        return self.client_id is not None

    def private_key(self) -> Any:
        return _load_key(self)


def normalize_base(url: str) -> str:
    """Scheme and host lower-cased, no trailing slash: the key servers are looked up by."""
    parts = urlsplit(url.strip())
    return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl().rstrip("/")


# --- configuration ------------------------------------------------------------------------------


def _key_error(where: str, msg: str) -> FhirServersError:
    return FhirServersError(f"{where}: {msg}")


def _read_pem(cfg: FhirServerConfig) -> bytes:
    if cfg.private_key_path is not None:
        return cfg.private_key_path.read_bytes()
    value = os.environ.get(cfg.private_key_env or "")
    if not value:
        raise FileNotFoundError(f"environment variable {cfg.private_key_env} is not set")
    return value.encode()


_key_cache: dict[tuple, Any] = {}


def _load_key(cfg: FhirServerConfig) -> Any:
    cache_key = (cfg.private_key_path, cfg.private_key_env, cfg.alg)
    key = _key_cache.get(cache_key)
    if key is None:
        key = serialization.load_pem_private_key(_read_pem(cfg), password=None)
        if cfg.alg == "RS384" and not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("alg RS384 needs an RSA private key")
        if cfg.alg == "ES384" and not (
            isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
        ):
            raise ValueError("alg ES384 needs an EC P-384 private key")
        _key_cache[cache_key] = key
    return key


def _str(where: str, entry: dict, name: str) -> str | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _key_error(f"{where}.{name}", "must be a non-empty string")
    return value.strip()


def _parse_entry(file: Path, base: str, entry: Any) -> FhirServerConfig:
    where = f"{file}: servers[{base!r}]"
    if entry is None:
        entry = {}
    if not isinstance(entry, dict):
        raise _key_error(where, "must be a mapping of settings")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise _key_error(where, f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
    problem = base_url_problem(base.strip())  # the check every fhirServer of a hook gets
    if problem:
        raise _key_error(where, f"the server key must be an http(s) FHIR base URL: it {problem}")
    scopes = entry.get("scopes", DEFAULT_SCOPES)
    if isinstance(scopes, list) and all(isinstance(s, str) for s in scopes):
        scopes = " ".join(scopes)
    if not isinstance(scopes, str) or not scopes.strip():
        raise _key_error(f"{where}.scopes", "must be a space-separated string or a list of scopes")
    alg = entry.get("alg", "RS384")
    if alg not in ALGS:
        raise _key_error(f"{where}.alg", f"must be one of {', '.join(ALGS)}, not {alg!r}")
    key_path = _str(where, entry, "private_key_path")
    cfg = FhirServerConfig(
        base_url=normalize_base(base),
        client_id=_str(where, entry, "client_id"),
        private_key_path=(file.parent / key_path) if key_path else None,
        private_key_env=_str(where, entry, "private_key_env"),
        kid=_str(where, entry, "kid"),
        alg=alg,
        token_url=_str(where, entry, "token_url"),
        scopes=scopes.strip(),
        tenant=_str(where, entry, "tenant") or "default",
    )
    _check_credentials(where, cfg)
    return cfg


def _check_credentials(where: str, cfg: FhirServerConfig) -> None:
    has_key = cfg.private_key_path is not None or cfg.private_key_env is not None
    if cfg.private_key_path is not None and cfg.private_key_env is not None:
        raise _key_error(where, "give private_key_path or private_key_env, not both")
    if cfg.client_id is None:
        if has_key or cfg.token_url or cfg.kid:
            raise _key_error(f"{where}.client_id", "is required when a key, kid or token_url is given")
        return
    if not has_key:
        raise _key_error(where, "client_id needs private_key_path (PEM file) or private_key_env")
    if cfg.token_url and urlsplit(cfg.token_url).scheme not in ("http", "https"):
        raise _key_error(f"{where}.token_url", "must be an http(s) URL")
    try:
        _load_key(cfg)
    except (OSError, ValueError, TypeError) as exc:
        name = "private_key_path" if cfg.private_key_path else "private_key_env"
        raise _key_error(f"{where}.{name}", f"cannot load the private key: {exc}") from None


_config_cache: dict[tuple, dict[str, FhirServerConfig]] = {}


def load_fhir_servers(settings: Any) -> dict[str, FhirServerConfig]:
    """Servers by normalized base URL; {} when ``settings.fhir_servers_file`` is unset."""
    file = getattr(settings, "fhir_servers_file", None)
    if file is None:
        return {}
    file = Path(file)
    try:
        stamp = (str(file.resolve()), file.stat().st_mtime_ns)
    except OSError as exc:
        raise FhirServersError(
            f"{file}: cannot read the FHIR servers file (RLS_FHIR_SERVERS_FILE): {exc}"
        ) from None
    cached = _config_cache.get(stamp)
    if cached is not None:
        return cached
    try:
        doc = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise FhirServersError(f"{file}: not valid YAML: {exc}") from None
    servers = doc.get("servers") if isinstance(doc, dict) else None
    if not isinstance(servers, dict):
        raise FhirServersError(
            f"{file}: expected a top-level 'servers:' mapping of FHIR base URL -> settings"
        )
    out: dict[str, FhirServerConfig] = {}
    for base, entry in servers.items():
        if not isinstance(base, str):
            raise FhirServersError(f"{file}: servers: key {base!r} must be a FHIR base URL string")
        cfg = _parse_entry(file, base, entry)
        if cfg.base_url in out:
            raise FhirServersError(f"{file}: servers[{base!r}]: listed twice")
        out[cfg.base_url] = cfg
    _config_cache.clear()
    _config_cache[stamp] = out
    return out


# --- HTTP ---------------------------------------------------------------------------------------


class GuardedSession(requests.Session):
    """No environment proxies, no link-local/metadata destinations, same-origin redirects only."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.max_redirects = 5

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        check_destination(request.url or "")
        return super().send(request, **kwargs)

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is None:
            return None
        # A redirect to another origin is not followed: the caller gets the 3xx response.
        return target if same_origin(urljoin(resp.url, target), resp.url) else None


# --- tokens ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint_kid(private_key: Any) -> str:
    """RFC 7638 JWK thumbprint of the public key (what `sekmet keys` and many servers use as kid)."""
    pub = private_key.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(pub))
        members = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(pub))
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return _b64(hashlib.sha256(canonical).digest())


class _TokenSource:
    """One client's access token for one base: fetched on demand, shared by every session."""

    def __init__(self, cfg: FhirServerConfig):
        self.cfg = cfg
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._token_url = cfg.token_url

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._refresh_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self, used: str) -> None:
        with self._lock:
            if self._token == used:  # another thread may already hold a fresh one
                self._token = None

    def _discover(self, http: requests.Session) -> str:
        if self._token_url:
            return self._token_url
        url = f"{self.cfg.base_url}/.well-known/smart-configuration"
        try:
            resp = http.get(url, headers={"Accept": "application/json"}, timeout=TOKEN_TIMEOUT)
            endpoint = resp.json().get("token_endpoint") if resp.status_code == 200 else None
        except (requests.RequestException, ValueError, AttributeError) as exc:
            raise SmartAuthError(
                f"SMART discovery failed for {self.cfg.base_url}: {type(exc).__name__}"
            ) from None
        if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("http", "https"):
            raise SmartAuthError(
                f"SMART discovery for {self.cfg.base_url} gave no token_endpoint (HTTP {resp.status_code}); "
                "set token_url in the FHIR servers file"
            )
        self._token_url = endpoint
        return endpoint

    def assertion(self, token_url: str) -> str:
        key = self.cfg.private_key()
        now = int(time.time())
        claims = {
            "iss": self.cfg.client_id,
            "sub": self.cfg.client_id,
            "aud": token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": secrets.token_urlsafe(24),
        }
        headers = {"kid": self.cfg.kid or thumbprint_kid(key), "typ": "JWT"}
        return jwt.encode(claims, key, algorithm=self.cfg.alg, headers=headers)

    def _fetch(self) -> None:
        with GuardedSession() as http:
            token_url = self._discover(http)
            form = {
                "grant_type": "client_credentials",
                "scope": self.cfg.scopes,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(token_url),
            }
            try:
                resp = http.post(
                    token_url,
                    data=form,
                    headers={"Accept": "application/json"},
                    timeout=TOKEN_TIMEOUT,
                    allow_redirects=False,
                )
                body = resp.json() if resp.content else {}
            except (requests.RequestException, ValueError) as exc:
                raise SmartAuthError(
                    f"token request for {self.cfg.base_url} failed: {type(exc).__name__}"
                ) from None
        token = body.get("access_token") if isinstance(body, dict) and resp.status_code == 200 else None
        if not isinstance(token, str) or not token:
            oauth_error = body.get("error") if isinstance(body, dict) else None
            reason = f"HTTP {resp.status_code} {oauth_error or ''}".strip()
            raise SmartAuthError(f"token request for {self.cfg.base_url} refused: {reason}")
        try:
            expires_in = max(int(body.get("expires_in", 300)), 1)
        except (TypeError, ValueError):
            expires_in = 300
        # Renew a little early (a tenth of the lifetime, at most a minute) so no request carries a
        # token that expires in flight.
        self._token = token
        self._refresh_at = time.monotonic() + expires_in - min(60.0, expires_in / 10)


_sources: dict[tuple, _TokenSource] = {}
_sources_lock = threading.Lock()


def _source_for(cfg: FhirServerConfig) -> _TokenSource:
    key = (cfg.base_url, cfg.client_id, cfg.token_url, cfg.scopes, cfg.private_key_path, cfg.private_key_env)
    with _sources_lock:
        src = _sources.get(key)
        if src is None:
            src = _sources[key] = _TokenSource(cfg)
        return src


class SmartAuth(requests.auth.AuthBase):
    """Adds the bearer token to requests for the base's origin; one fresh token on a 401."""

    def __init__(self, source: _TokenSource):
        self.source = source

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if not same_origin(r.url or "", self.source.cfg.base_url):
            return r  # the token is for this FHIR server only
        r.headers["Authorization"] = f"Bearer {self.source.token()}"
        r.register_hook("response", self._retry_on_401)
        return r

    def _retry_on_401(self, resp: requests.Response, **kwargs: Any) -> requests.Response:
        request = resp.request
        if resp.status_code != 401 or getattr(request, "_smart_retried", False):
            return resp
        used = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        self.source.invalidate(used)
        resp.content  # noqa: B018 - drain so the connection can be reused
        resp.close()
        retry = request.copy()
        retry.headers["Authorization"] = f"Bearer {self.source.token()}"
        retry._smart_retried = True  # type: ignore[attr-defined]
        check_destination(retry.url or "")
        new = resp.connection.send(retry, **kwargs)
        new.history.append(resp)
        new.request = retry
        return new


def session_for(base_url: str, settings: Any) -> requests.Session:
    """A session for ``base_url``: SMART backend-services token when configured, guarded always."""
    session = GuardedSession()
    cfg = load_fhir_servers(settings).get(normalize_base(base_url))
    if cfg is not None and cfg.has_credentials:
        session.auth = SmartAuth(_source_for(cfg))
    return session
