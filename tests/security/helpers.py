"""Hook calls with bearer tokens and log reading for the security tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import requests

from tests.api import data
from tests.support.cds_server import CdsServer

GENERIC_401 = {"error": "unauthorized", "detail": "a valid bearer token is required"}


def log_records(server: CdsServer) -> list[dict]:
    out = []
    for line in server.log_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def rejection_reasons(server: CdsServer) -> list[str]:
    return [r.get("reason") for r in log_records(server) if r.get("msg") == "token rejected"]


def wait_for_reason(server: CdsServer, before: int, reason: str, timeout: float = 3.0) -> None:
    """The operator log gains exactly this rejection reason (logs are flushed asynchronously)."""
    end = time.monotonic() + timeout
    while True:
        reasons = rejection_reasons(server)[before:]
        if reason in reasons or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert reason in reasons, f"expected rejection reason {reason!r}, log has {reasons}"


def patient_view_body(service: dict, pid: str = "sec-patient-1", **kwargs) -> dict:
    """A complete patient-view request: full prefetch, so no FHIR call is needed."""
    resources = data.patient_record(pid, ferritin_value=30)
    return data.hook_request("patient-view", pid, prefetch=data.full_prefetch(resources, service), **kwargs)


def call(
    server: CdsServer, service_id: str, body: dict, token: str | None, raw_auth: str | None = None
) -> requests.Response:
    headers = {}
    if raw_auth is not None:
        headers["Authorization"] = raw_auth
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return server.post(f"/cds-services/{service_id}", body, headers=headers)


def b64url(obj) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned_token(claims: dict, kid: str) -> str:
    """alg 'none': header.payload. with an empty signature."""
    return f"{b64url({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{b64url(claims)}."


def hs256_with_public_key(claims: dict, kid: str, public_pem: bytes) -> str:
    """The classic key-confusion forgery: HMAC-SHA256 keyed with the issuer's public key."""
    signing_input = f"{b64url({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{b64url(claims)}"
    sig = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"
