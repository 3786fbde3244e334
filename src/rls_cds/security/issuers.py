"""Trusted EHR issuers: who may call the hooks, with which keys, for which FHIR servers and tenant.

Read from ``settings.trusted_issuers_file`` (YAML or JSON) and/or ``settings.trusted_issuers_json``
(the same document inline); both may be given, an issuer may appear in only one. Format
(docs/security.md)::

    issuers:
      - iss: https://ehr.example.org               # the JWT's iss, exactly
        jwks_url: https://ehr.example.org/jwks     # and/or jwks: {keys: [...]} / jwks_file: keys.json
        allowed_jku: [https://ehr.example.org/jwks]   # jku header values accepted (never fetched otherwise)
        fhir_servers: [https://ehr.example.org/fhir/r4]   # fhirServer bases this EHR may send
        tenant: hospital-a                         # namespace for stored data (default: the iss)
        audience: https://cds.example.org/cds-services   # string or list (default: this service's URLs)
        algorithms: [ES384]                        # optional subset of the asymmetric algorithms

``issuers`` may also be a mapping ``iss -> settings``. Every error names the variable or file and
the issuer at fault. The public CDS Hooks sandbox key set is recognised (by issuer, host and key)
and refused unless development mode is on: its private key is published.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from rls_cds.fhir.smart import normalize_base

# CDS Hooks 2.0 allows asymmetric signatures only; HMAC and 'none' are never accepted.
ASYMMETRIC_ALGS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_HOST = "sandbox.cds-hooks.org"
# x coordinate of the sandbox's published ES384 key (its private key is public): a production config
# must not trust it under any issuer name.
SANDBOX_KEY_X = "dw_JGR8nB2I6XveNxUOl2qk699ZPLM2nYI5STSdiEl9avAkrm3CkfYMbrrjr8laB"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_KEYS = {
    "iss",
    "jwks_url",
    "jwks",
    "jwks_file",
    "allowed_jku",
    "fhir_servers",
    "tenant",
    "audience",
    "algorithms",
}
SETUP_HINT = (
    "set RLS_TRUSTED_ISSUERS_FILE (a YAML/JSON file) or RLS_TRUSTED_ISSUERS_JSON with the EHRs allowed to "
    "call this service (format: docs/security.md), or run `rls-cds serve --dev` for development"
)


class IssuerConfigError(ValueError):
    """The trusted-issuer configuration is invalid or missing; the message says where and what."""


@dataclass(frozen=True)
class Issuer:
    iss: str
    tenant: str
    jwks_url: str | None = None
    static_keys: tuple[dict, ...] = ()
    allowed_jku: frozenset[str] = frozenset()
    fhir_servers: frozenset[str] = frozenset()
    audience: tuple[str, ...] = ()  # empty: this service's own URLs (see auth.expected_audiences)
    algorithms: tuple[str, ...] = ASYMMETRIC_ALGS
    source: str = ""

    @property
    def is_sandbox(self) -> bool:
        hosts = {urlsplit(u).hostname for u in (self.iss, self.jwks_url or "", *self.allowed_jku)}
        return (
            self.iss.rstrip("/") == SANDBOX_ISSUER
            or SANDBOX_HOST in hosts
            or any(k.get("x") == SANDBOX_KEY_X for k in self.static_keys)
        )


@dataclass(frozen=True)
class TrustedIssuers:
    by_iss: dict[str, Issuer] = field(default_factory=dict)

    def get(self, iss: object) -> Issuer | None:
        return self.by_iss.get(iss) if isinstance(iss, str) else None

    def __bool__(self) -> bool:
        return bool(self.by_iss)

    @property
    def sandbox(self) -> list[str]:
        return [i.iss for i in self.by_iss.values() if i.is_sandbox]


# --- parsing ------------------------------------------------------------------------------------


def _url(where: str, value: Any, *, key_material: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise IssuerConfigError(f"{where}: must be a URL string")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise IssuerConfigError(f"{where}: {value!r} is not an absolute http(s) URL")
    if key_material and parts.scheme != "https" and parts.hostname not in _LOOPBACK:
        # Keys fetched over plain HTTP could be swapped in transit; loopback is for tests.
        raise IssuerConfigError(f"{where}: key URLs must use https (http only on loopback)")
    return value.strip()


def _url_list(where: str, value: Any, *, key_material: bool) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise IssuerConfigError(f"{where}: must be a list of URLs")
    return [_url(f"{where}[{i}]", v, key_material=key_material) for i, v in enumerate(value)]


def _check_jwk(where: str, jwk: Any) -> dict:
    if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC"):
        raise IssuerConfigError(f"{where}: each key must be an RSA or EC public JWK")
    if "d" in jwk:
        raise IssuerConfigError(f"{where}: is a PRIVATE key; configure the public key only")
    if jwk.get("alg") is not None and jwk["alg"] not in ASYMMETRIC_ALGS:
        raise IssuerConfigError(f"{where}: alg {jwk['alg']!r} is not an allowed asymmetric algorithm")
    import jwt

    try:
        jwt.PyJWK(jwk, algorithm=jwk.get("alg") or ("RS256" if jwk["kty"] == "RSA" else None))
    except jwt.PyJWTError as exc:
        raise IssuerConfigError(f"{where}: not a usable public key ({exc})") from None
    return jwk


def _static_keys(where: str, entry: dict, base_dir: Path) -> list[dict]:
    keys: list[dict] = []
    doc = entry.get("jwks")
    if entry.get("jwks_file") is not None:
        path = base_dir / str(entry["jwks_file"])
        try:
            doc_file = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise IssuerConfigError(f"{where}.jwks_file: cannot read JWKS {path}: {exc}") from None
        keys += _jwks_keys(f"{where}.jwks_file ({path})", doc_file)
    if doc is not None:
        keys += _jwks_keys(f"{where}.jwks", doc)
    return keys


def _jwks_keys(where: str, doc: Any) -> list[dict]:
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list) or not doc["keys"]:
        raise IssuerConfigError(f"{where}: must be a JWKS object {{'keys': [...]}} with at least one key")
    return [_check_jwk(f"{where}.keys[{i}]", k) for i, k in enumerate(doc["keys"])]


def _algorithms(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ASYMMETRIC_ALGS
    if isinstance(value, str):
        value = [value]
    bad = [a for a in value if a not in ASYMMETRIC_ALGS] if isinstance(value, list) else [value]
    if bad or not value:
        raise IssuerConfigError(f"{where}: only {', '.join(ASYMMETRIC_ALGS)} are allowed, not {bad}")
    return tuple(value)


def _parse_issuer(source: str, where: str, entry: Any, base_dir: Path) -> Issuer:
    if not isinstance(entry, dict):
        raise IssuerConfigError(f"{where}: must be an object")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise IssuerConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})"
        )
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss.strip():
        raise IssuerConfigError(f"{where}.iss: required (the issuer exactly as in the JWT's iss claim)")
    where = f"{where} (iss {iss!r})"
    jwks_url = (
        _url(f"{where}.jwks_url", entry["jwks_url"], key_material=True) if entry.get("jwks_url") else None
    )
    static = _static_keys(where, entry, base_dir)
    jku = _url_list(f"{where}.allowed_jku", entry.get("allowed_jku"), key_material=True)
    if not (jwks_url or static or jku):
        raise IssuerConfigError(f"{where}: give its keys: jwks_url, jwks, jwks_file or allowed_jku")
    tenant = entry.get("tenant", iss)
    if not isinstance(tenant, str) or not tenant.strip():
        raise IssuerConfigError(f"{where}.tenant: must be a non-empty string")
    audience = entry.get("audience")
    if isinstance(audience, str):
        audience = [audience]
    if audience is not None and (
        not isinstance(audience, list) or not audience or not all(isinstance(a, str) and a for a in audience)
    ):
        raise IssuerConfigError(f"{where}.audience: must be a string or a non-empty list of strings")
    servers = _url_list(f"{where}.fhir_servers", entry.get("fhir_servers"), key_material=False)
    return Issuer(
        iss=iss,
        tenant=tenant.strip(),
        jwks_url=jwks_url,
        static_keys=tuple(static),
        allowed_jku=frozenset(jku),
        fhir_servers=frozenset(normalize_base(s) for s in servers),
        audience=tuple(a.rstrip("/") for a in audience or ()),
        algorithms=_algorithms(f"{where}.algorithms", entry.get("algorithms")),
        source=source,
    )


def parse_document(source: str, doc: Any, base_dir: Path) -> list[Issuer]:
    """Issuers of one document; ``source`` names the file or variable in every error."""
    if not isinstance(doc, dict) or "issuers" not in doc:
        raise IssuerConfigError(f"{source}: expected an object with an 'issuers' list (see docs/security.md)")
    raw = doc["issuers"]
    if isinstance(raw, dict):
        raw = [{"iss": iss, **(v or {})} if isinstance(v, dict | None) else v for iss, v in raw.items()]
    if not isinstance(raw, list):
        raise IssuerConfigError(f"{source}: 'issuers' must be a list (or a mapping iss -> settings)")
    extra = sorted(set(doc) - {"issuers"})
    if extra:
        raise IssuerConfigError(f"{source}: unknown top-level key(s) {', '.join(extra)}")
    return [_parse_issuer(source, f"{source}: issuers[{i}]", e, base_dir) for i, e in enumerate(raw)]


def _read_file(path: Path) -> Any:
    where = f"RLS_TRUSTED_ISSUERS_FILE={path}"
    try:
        text = path.read_text()
    except OSError as exc:
        raise IssuerConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise IssuerConfigError(
            f"{where}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from None


def load_trusted_issuers(settings: Any) -> TrustedIssuers:
    """All configured issuers (possibly none). Raises ``IssuerConfigError`` on any invalid entry."""
    issuers: list[Issuer] = []
    file = getattr(settings, "trusted_issuers_file", None)
    if file is not None:
        path = Path(file)
        issuers += parse_document(f"RLS_TRUSTED_ISSUERS_FILE={path}", _read_file(path), path.parent)
    inline = getattr(settings, "trusted_issuers_json", None)
    if inline and inline.strip():
        try:
            doc = json.loads(inline)
        except ValueError as exc:
            raise IssuerConfigError(f"RLS_TRUSTED_ISSUERS_JSON: not valid JSON: {exc}") from None
        issuers += parse_document("RLS_TRUSTED_ISSUERS_JSON", doc, Path.cwd())
    out: dict[str, Issuer] = {}
    for issuer in issuers:
        if issuer.iss in out:
            raise IssuerConfigError(
                f"issuer {issuer.iss!r} is configured twice ({out[issuer.iss].source} and {issuer.source})"
            )
        out[issuer.iss] = issuer
    return TrustedIssuers(out)


def check_startup(settings: Any) -> TrustedIssuers:
    """What `rls-cds serve` checks before listening: a usable, production-safe issuer configuration."""
    trusted = load_trusted_issuers(settings)
    if getattr(settings, "dev_mode", False):
        return trusted
    if not trusted:
        raise IssuerConfigError(f"no trusted issuer is configured: {SETUP_HINT}")
    if trusted.sandbox:
        raise IssuerConfigError(
            f"the public CDS Hooks sandbox is trusted ({', '.join(trusted.sandbox)}) but its private key is "
            "published: anyone could sign tokens. Use that configuration only with `rls-cds serve --dev`."
        )
    return trusted
